"""Patients workspace controller: ICU stays opened for review and risk scoring."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal

from healthfm_desktop.controllers.base import WorkspaceController
from healthfm_desktop.core.routing import PATIENTS


class PatientsController(WorkspaceController):
    name = PATIENTS
    title = "Patients"

    files_opened = Signal(list)

    def open_paths(self, paths: list[Path]) -> None:
        self.files_opened.emit([Path(p) for p in paths])
