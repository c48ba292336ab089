"""Patients workspace: the list of open ICU stays (search, sort by risk), the selected stay's
timeline, and its risk panel; rows that could not be read are listed under the patients."""

from __future__ import annotations

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QProxyStyle,
    QSplitter,
    QStyle,
    QStyleOptionHeader,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from healthfm_desktop.views.patient_view.risk_panel import RiskPanel
from healthfm_desktop.views.patient_view.timeline import PatientTimeline

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
#: (header, its tooltip): short headers, so the columns but the file fit the list at 1280 px
COLUMNS = (("Patient", "Patient or stay id"), ("Risk %", "In-hospital mortality risk"),
           ("Obs.", "Observations read"), ("Excl.", "Observations excluded by the cleaning rules (out of range, "
                                                     "unreadable or duplicated)"),
           ("File", "The file the stay was read from"))
FILE_COLUMN = 4
RISK_COLUMN = 1


class SortArrowStyle(QProxyStyle):
    """Qt draws a descending sort as an up arrow (the macOS convention); users read the arrow
    as the way the values go, so highest risk first points down."""

    _SWAPPED = {QStyleOptionHeader.SortIndicator.SortUp: QStyleOptionHeader.SortIndicator.SortDown,
                QStyleOptionHeader.SortIndicator.SortDown: QStyleOptionHeader.SortIndicator.SortUp}

    def drawPrimitive(self, element, option, painter, widget=None) -> None:  # noqa: N802 - Qt API
        if element == QStyle.PrimitiveElement.PE_IndicatorHeaderArrow and isinstance(option, QStyleOptionHeader):
            option = QStyleOptionHeader(option)
            option.sortIndicator = self._SWAPPED.get(option.sortIndicator, option.sortIndicator)
        super().drawPrimitive(element, option, painter, widget)


class PatientsWorkspace(QWidget):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search patient id")
        self.search.setClearButtonEnabled(True)
        self.model = QStandardItemModel(0, len(COLUMNS))
        self.model.setHorizontalHeaderLabels([title for title, _tip in COLUMNS])
        for column, (_title, tip) in enumerate(COLUMNS):
            self.model.setHeaderData(column, Qt.Orientation.Horizontal, tip, Qt.ItemDataRole.ToolTipRole)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setFilterKeyColumn(0)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        # the file takes what is left of the list's width, its name elided (whole in the tooltip)
        self.table.horizontalHeader().setSectionResizeMode(FILE_COLUMN, QHeaderView.ResizeMode.Stretch)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.sort_arrow_style = SortArrowStyle(self.style().name())
        self.table.horizontalHeader().setStyle(self.sort_arrow_style)
        self.table.sortByColumn(RISK_COLUMN, Qt.SortOrder.DescendingOrder)
        self.hint = QLabel("Open or drop a patient CSV (patient_id,time,variable,value[,unit]), PhysioNet record "
                           "files or a FHIR Bundle.")
        self.hint.setWordWrap(True)
        self.problems = QListWidget()
        self.problems.setVisible(False)
        self.problems.setMaximumHeight(120)
        self.timeline = PatientTimeline()
        self.risk_panel = RiskPanel()

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.hint, self.search, self.table, self.problems):
            left_layout.addWidget(widget)
        left_layout.setStretch(2, 1)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(self.timeline)
        splitter.addWidget(self.risk_panel)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([330, 630, 340])  # 330: the list's columns whole at 1280 px, the file's name legible
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(splitter)

        self.search.textChanged.connect(self.proxy.setFilterFixedString)
        self.table.selectionModel().currentRowChanged.connect(self._on_current_changed)
        controller.patients_changed.connect(self.show_patients)
        controller.patient_shown.connect(self.show_detail)
        controller.problems_found.connect(self.show_problems)

    # --- list ----------------------------------------------------------------------------
    def show_patients(self, rows) -> None:
        self.model.setRowCount(0)
        for row in rows:
            risk = row.risk
            cells = [
                (row.patient_id, row.patient_id),
                (f"{risk * 100:.1f}" if risk is not None else "-", risk if risk is not None else -1.0),
                (str(row.n_observations), row.n_observations),
                (str(row.n_excluded), row.n_excluded),
                (row.source, row.source),
            ]
            items = []
            for text, key in cells:
                item = QStandardItem(text)
                item.setData(key, SORT_ROLE)
                items.append(item)
            items[0].setData(row.patient_id, Qt.ItemDataRole.UserRole)
            items[FILE_COLUMN].setToolTip(row.source)
            self.model.appendRow(items)
        self.table.resizeColumnsToContents()
        self.hint.setText(f"{len(rows)} stays. Click a column header to sort; the risk column sorts by risk.")
        if self.proxy.rowCount() and not self.table.currentIndex().isValid():
            self.table.selectRow(0)

    def _on_current_changed(self, current, _previous) -> None:
        if current.isValid():
            patient_id = self.proxy.index(current.row(), 0).data(Qt.ItemDataRole.UserRole)
            self.controller.select_patient(patient_id)

    def select_patient(self, patient_id: str) -> None:
        matches = self.model.findItems(patient_id, Qt.MatchFlag.MatchExactly, 0)
        if matches:
            index = self.proxy.mapFromSource(matches[0].index())
            self.table.selectRow(index.row())

    # --- detail --------------------------------------------------------------------------
    def show_detail(self, detail) -> None:
        self.timeline.show_record(detail.record, detail.notes)
        self.risk_panel.show_assessment(detail.assessment, detail.model_problem)

    def show_problems(self, problems: list[str]) -> None:
        self.problems.clear()
        self.problems.addItems(problems)
        self.problems.setVisible(bool(problems))
