"""The tag browser: every element of the current image as a tree (sequences open into their
items), with a filter box that matches tag, keyword, VR or value and keeps the parents of a
match visible."""

from __future__ import annotations

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QHeaderView, QLabel, QLineEdit, QTreeView, QVBoxLayout, QWidget

COLUMNS = ("Tag", "Name", "VR", "Value", "Keyword")


class TagBrowser(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = QLabel("No image selected.")
        self.title.setWordWrap(True)
        self.filter_box = QLineEdit()
        self.filter_box.setObjectName("tagFilter")
        self.filter_box.setPlaceholderText("Filter tags (number, name, VR or value)…")
        self.filter_box.setClearButtonEnabled(True)
        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(COLUMNS)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setRecursiveFilteringEnabled(True)
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.tree = QTreeView()
        self.tree.setObjectName("tagTree")
        self.tree.setModel(self.proxy)
        self.tree.setUniformRowHeights(True)
        self.tree.header().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.tree.header().resizeSection(0, 112)
        self.tree.header().resizeSection(1, 150)
        self.tree.header().resizeSection(2, 34)
        self.tree.header().setStretchLastSection(False)
        self.tree.header().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.tree.setColumnHidden(4, True)  # the keyword: matched by the filter, not shown
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.filter_box)
        layout.addWidget(self.tree, 1)
        self.filter_box.textChanged.connect(self._filter)

    def set_elements(self, title: str, elements: list[dict]) -> None:
        """``elements``: dicts with tag, keyword, vr, value and, for sequences, ``items``: a list
        of lists of the same dicts (one list per sequence item)."""
        self.title.setText(title)
        self.model.removeRows(0, self.model.rowCount())
        root = self.model.invisibleRootItem()
        for element in elements:
            self._append(root, element)
        self._filter(self.filter_box.text())

    def _append(self, parent: QStandardItem, element: dict) -> None:
        name = element.get("name") or element.get("keyword") or ""
        row = [QStandardItem(str(value)) for value in
               (element.get("tag", ""), name, element.get("vr", ""), element.get("value", ""), element.get("keyword", ""))]
        for item in row:
            item.setEditable(False)
            item.setToolTip(str(element.get("value", "")))
        for number, item_elements in enumerate(element.get("items") or [], start=1):
            item_row = [QStandardItem(f"Item {number}"), QStandardItem(""), QStandardItem(""),
                        QStandardItem(f"{len(item_elements)} element(s)"), QStandardItem("")]
            for cell in item_row:
                cell.setEditable(False)
            for child in item_elements:
                self._append(item_row[0], child)
            row[0].appendRow(item_row)
        parent.appendRow(row)

    def _filter(self, text: str) -> None:
        self.proxy.setFilterFixedString(text.strip())
        if text.strip():
            self.tree.expandAll()

    def visible_top_level_rows(self) -> list[list[str]]:
        rows = []
        for row in range(self.proxy.rowCount()):
            rows.append([self.proxy.index(row, column).data() or "" for column in range(len(COLUMNS) - 1)])
        return rows
