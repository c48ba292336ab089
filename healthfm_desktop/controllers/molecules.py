"""Molecules workspace controller: compound lists opened for the chemist."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal

from healthfm_desktop.controllers.base import WorkspaceController
from healthfm_desktop.core.routing import MOLECULES


class MoleculesController(WorkspaceController):
    name = MOLECULES
    title = "Molecules"

    files_opened = Signal(list)

    def open_paths(self, paths: list[Path]) -> None:
        self.files_opened.emit([Path(p) for p in paths])
