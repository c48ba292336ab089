"""Images workspace controller: DICOM import and the state of the open studies."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal

from healthfm_desktop.controllers.base import WorkspaceController
from healthfm_desktop.core.routing import IMAGES, route_paths


def _accept_dicom(paths: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    routing = route_paths(paths)
    return routing.by_workspace.get(IMAGES, []), routing.rejected


class ImagesController(WorkspaceController):
    name = IMAGES
    title = "Images"

    files_opened = Signal(list)  # [Path]
    files_rejected = Signal(list)  # [(Path, reason)]

    def __init__(self, parent=None):
        super().__init__(parent)
        self.paths: list[Path] = []

    def open_paths(self, paths: list[Path]) -> None:
        self.start_job(_accept_dicom, [Path(p) for p in paths], on_result=self._on_routed)

    def _on_routed(self, result) -> None:
        accepted, rejected = result
        self.paths.extend(accepted)
        if accepted:
            self.files_opened.emit(accepted)
        if rejected:
            self.files_rejected.emit(rejected)
