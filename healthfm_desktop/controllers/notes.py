"""Notes workspace controller: clinical notes opened for annotation."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal

from healthfm_desktop.controllers.base import WorkspaceController
from healthfm_desktop.core.errors import UnreadableFileError
from healthfm_desktop.core.routing import NOTES


def _read_notes(paths: list[Path]) -> list[tuple[str, str]]:
    notes = []
    for path in paths:
        try:
            notes.append((path.name, path.read_bytes().decode("utf-8")))
        except UnicodeDecodeError as exc:
            raise UnreadableFileError(f"{path.name}: not UTF-8 text (byte {exc.start})") from exc
    return notes


class NotesController(WorkspaceController):
    name = NOTES
    title = "Notes"

    notes_opened = Signal(list)  # [(name, text)]

    def open_paths(self, paths: list[Path]) -> None:
        files = [p for p in map(Path, paths) if p.is_file()]
        self.start_job(_read_notes, files, on_result=self.notes_opened.emit)
