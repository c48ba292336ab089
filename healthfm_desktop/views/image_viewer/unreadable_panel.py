"""The "files that could not be read" panel: each file with the reason, and notes about series
that were split (mixed sizes or orientations)."""

from __future__ import annotations

from pathlib import PurePath

from PySide6.QtCore import QRect, QSize, Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QStyledItemDelegate,
    QHeaderView,
    QLabel,
    QListWidget,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)


def short_name(path: str) -> str:
    """The file's name (a zip member: archive!member name); the full path is in the tooltip."""
    archive, _, member = path.partition("!")
    return f"{PurePath(archive).name}!{PurePath(member).name}" if member else PurePath(archive).name


class WrappingDelegate(QStyledItemDelegate):
    """Rows as tall as their text wrapped in the column's width (QTreeView's own size hint
    ignores the column width, so a long reason stayed on one clipped line)."""

    def sizeHint(self, option, index) -> QSize:  # noqa: N802 - Qt API
        view = self.parent()
        width = max(view.columnWidth(index.column()) - 10, 40)
        text = str(index.data() or "")
        bounds = option.fontMetrics.boundingRect(QRect(0, 0, width, 100_000), Qt.TextFlag.TextWordWrap, text)
        return QSize(width, bounds.height() + 6)


class UnreadableFilesPanel(QWidget):
    clear_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.summary = QLabel("All files were read.")
        self.summary.setWordWrap(True)
        self.tree = QTreeWidget()
        self.tree.setObjectName("unreadableFiles")
        self.tree.setHeaderLabels(["File", "Why"])
        self.tree.setRootIsDecorated(False)
        # whole reasons, wrapped: an elided "cannot read the DICOM da…" tells the user nothing
        self.tree.setWordWrap(True)
        self.tree.setUniformRowHeights(False)
        self.tree.setItemDelegate(WrappingDelegate(self.tree))
        self.tree.setTextElideMode(Qt.TextElideMode.ElideNone)
        self.tree.header().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.tree.header().resizeSection(0, 170)
        self.tree.header().setStretchLastSection(True)
        self.tree.header().sectionResized.connect(lambda *_: self.tree.doItemsLayout())
        self.notes_title = QLabel("Notes on the import:")
        self.notes = QListWidget()
        self.notes.setObjectName("importNotes")
        self.notes.setWordWrap(True)
        self.clear_button = QPushButton("Clear list")
        self.clear_button.clicked.connect(self.clear_requested)
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        header = QHBoxLayout()
        header.addWidget(self.summary, 1)
        header.addWidget(self.clear_button)
        top_layout.addLayout(header)
        top_layout.addWidget(self.tree, 1)
        bottom = QWidget()
        bottom_layout = QVBoxLayout(bottom)
        bottom_layout.setContentsMargins(0, 0, 0, 0)
        bottom_layout.addWidget(self.notes_title)
        bottom_layout.addWidget(self.notes, 1)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(top)
        splitter.addWidget(bottom)
        splitter.setSizes([400, 150])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self._rows: list[tuple[str, str]] = []
        self._notes: list[str] = []

    def set_files(self, rows: list[tuple[str, str]]) -> None:
        """``rows``: (path as text, reason)."""
        self._rows = list(rows)
        self.tree.clear()
        for path, reason in self._rows:
            item = QTreeWidgetItem([short_name(path), reason])  # the full path in the tooltip
            item.setToolTip(0, path)
            item.setToolTip(1, reason)
            self.tree.addTopLevelItem(item)
        count = len(self._rows)
        self.summary.setText("All files were read." if not count else f"{count} file(s) could not be read:")

    def set_notes(self, notes: list[str]) -> None:
        self._notes = list(notes)
        self.notes.clear()
        self.notes.addItems(self._notes)
        self.notes_title.setText(f"Notes on the import ({len(self._notes)}):" if self._notes else "Notes on the import: none")

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self.tree.doItemsLayout()  # wrapped rows take their new height

    def files(self) -> list[tuple[str, str]]:
        return list(self._rows)

    def notes_text(self) -> list[str]:
        return list(self._notes)
