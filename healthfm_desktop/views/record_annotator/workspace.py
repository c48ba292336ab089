"""Notes workspace (minimal foundation version: a note list and the selected note's text)."""

from __future__ import annotations

from PySide6.QtWidgets import QListWidget, QPlainTextEdit, QSplitter, QVBoxLayout, QWidget


class NotesWorkspace(QWidget):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.note_list = QListWidget()
        self.text_view = QPlainTextEdit(readOnly=True)
        self._texts: list[str] = []
        splitter = QSplitter()
        splitter.addWidget(self.note_list)
        splitter.addWidget(self.text_view)
        splitter.setStretchFactor(1, 3)
        QVBoxLayout(self).addWidget(splitter)
        controller.notes_opened.connect(self._add_notes)
        self.note_list.currentRowChanged.connect(self._show_note)

    def _add_notes(self, notes) -> None:
        for name, text in notes:
            self._texts.append(text)
            self.note_list.addItem(name)
        if self.note_list.currentRow() < 0 and self._texts:
            self.note_list.setCurrentRow(0)

    def _show_note(self, row: int) -> None:
        if 0 <= row < len(self._texts):
            self.text_view.setPlainText(self._texts[row])
