"""The "files that could not be read" panel: each file with the reason, and notes about series
that were split (mixed sizes or orientations)."""

from __future__ import annotations

from PySide6.QtWidgets import QHeaderView, QLabel, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget


class UnreadableFilesPanel(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.summary = QLabel("All files were read.")
        self.summary.setWordWrap(True)
        self.tree = QTreeWidget()
        self.tree.setObjectName("unreadableFiles")
        self.tree.setHeaderLabels(["File", "Why"])
        self.tree.setRootIsDecorated(False)
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.notes = QLabel("")
        self.notes.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.summary)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.notes)
        self._rows: list[tuple[str, str]] = []
        self._notes: list[str] = []

    def set_files(self, rows: list[tuple[str, str]]) -> None:
        """``rows``: (path as text, reason)."""
        self._rows = list(rows)
        self.tree.clear()
        for path, reason in self._rows:
            item = QTreeWidgetItem([path, reason])
            item.setToolTip(0, path)
            item.setToolTip(1, reason)
            self.tree.addTopLevelItem(item)
        count = len(self._rows)
        self.summary.setText("All files were read." if not count else f"{count} file(s) could not be read:")

    def set_notes(self, notes: list[str]) -> None:
        self._notes = list(notes)
        self.notes.setText("\n".join(f"• {note}" for note in self._notes))

    def files(self) -> list[tuple[str, str]]:
        return list(self._rows)

    def notes_text(self) -> list[str]:
        return list(self._notes)
