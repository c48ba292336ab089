"""The measurement list: every measurement of the open studies with its value; the label is
editable in place, Delete removes the selected ones, a click shows that slice."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

_ID_ROLE = Qt.ItemDataRole.UserRole
COLUMNS = ("Label", "Type", "Value", "Image")


class MeasurementList(QWidget):
    label_edited = Signal(str, str)  # id, new label
    delete_requested = Signal(list)  # [id]
    measurement_chosen = Signal(str)  # id

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("measurementTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        header.resizeSection(0, 100)
        header.resizeSection(1, 70)
        header.resizeSection(3, 90)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(True)
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(self._delete_selected)
        QShortcut(QKeySequence.StandardKey.Delete, self.table, activated=self._delete_selected)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.delete_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        self._filling = False
        self.table.itemChanged.connect(self._on_item_changed)
        self.table.cellClicked.connect(lambda row, _col: self.measurement_chosen.emit(self.table.item(row, 0).data(_ID_ROLE)))

    def set_measurements(self, rows: list[dict]) -> None:
        """``rows``: dicts with id, label, kind, value (text), image (text)."""
        self._filling = True
        self.table.setRowCount(len(rows))
        for row, measurement in enumerate(rows):
            for column, key in enumerate(("label", "kind", "value", "image")):
                item = QTableWidgetItem(str(measurement.get(key, "")))
                item.setData(_ID_ROLE, measurement["id"])
                if key != "label":
                    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                self.table.setItem(row, column, item)
        self.table.resizeRowsToContents()
        self._filling = False

    def row_count(self) -> int:
        return self.table.rowCount()

    def row_text(self, row: int) -> dict[str, str]:
        return {key: self.table.item(row, column).text() for column, key in enumerate(("label", "kind", "value", "image"))}

    def select_id(self, measurement_id: str) -> None:
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(_ID_ROLE) == measurement_id:
                self.table.selectRow(row)

    def _selected_ids(self) -> list[str]:
        rows = sorted({index.row() for index in self.table.selectedIndexes()})
        return [self.table.item(row, 0).data(_ID_ROLE) for row in rows]

    def _delete_selected(self) -> None:
        ids = self._selected_ids()
        if ids:
            self.delete_requested.emit(ids)

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if not self._filling and item.column() == 0:
            self.label_edited.emit(item.data(_ID_ROLE), item.text())
