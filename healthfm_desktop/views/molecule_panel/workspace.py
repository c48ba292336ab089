"""Molecules workspace: a virtualised compound table and a structure grid (depictions, the
file's ids, names and tags, sortable properties, rule flags, alerts, duplicates), filters,
searches shown as a filter or as a hit list beside the table ("Show all" one click away), a
scatter with any axes and colour, a histogram per column, a detail pane with alert atoms
highlighted and predictions with their applicability domain, a live SMILES editor and export.
Everything chemical comes from the controller; the state is its core session model."""

from __future__ import annotations

import html
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QRect, QSize, QSortFilterProxyModel, Qt
from PySide6.QtGui import QGuiApplication, QPixmap
from PySide6.QtWidgets import (
    QButtonGroup, QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFrame, QHBoxLayout, QHeaderView, QInputDialog,
    QLabel, QLineEdit, QListView, QProgressBar, QPushButton, QScrollArea, QSizePolicy, QSpinBox, QSplitter,
    QStackedWidget, QStyle, QStyledItemDelegate, QTableView, QTabWidget, QTextBrowser, QVBoxLayout, QWidget,
)

from healthfm_desktop.controllers.workers import Progress
from healthfm_desktop.core.chemistry.session import HITS, PROPERTY_COLUMNS, TABLE

STRUCTURE, ID, SMILES = 0, 1, 2
FIRST_PROPERTY = 3
LIPINSKI = FIRST_PROPERTY + len(PROPERTY_COLUMNS)
VEBER, ALERTS, SCORE, SOLUBILITY, STATUS = LIPINSKI + 1, LIPINSKI + 2, LIPINSKI + 3, LIPINSKI + 4, LIPINSKI + 5
DUPLICATES = LIPINSKI + 6  # how many rows of the table have this structure
ORIGIN = LIPINSKI + 7  # analogues only: where a proposal came from and its similarity to the seed
FIRST_FIELD = ORIGIN + 1  # then one column per field the file carried (name, chembl_id, SD tags)
HEADERS = ["Structure", "ID", "SMILES", *[c[0] for c in PROPERTY_COLUMNS], "Lipinski", "Veber", "Alerts", "Score",
           "logS (pred.)", "Status", "Duplicates", "Origin (sim.)"]
GRID_LABEL_ROLE = Qt.ItemDataRole.UserRole + 1  # "id" or "id · name", under a grid cell's structure
NAME_FIELDS = ("name", "pref_name", "title", "compound_name", "drug_name")
GRID_CELL = QSize(190, 132)
CATEGORY_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
MAX_CATEGORIES = len(CATEGORY_COLOURS)
ANALOGUE_SOURCES = {"model + mutations": "both", "model": "model", "mutations": "mutation"}
ROW_HEIGHT = 84


_PIXMAPS_KEPT = 600  # a few screens of rows, both ways
DEPICTION = QSize(160, 80)  # a table cell's structure, in logical pixels


def _pixel_ratio() -> float:
    app = QGuiApplication.instance()
    return app.devicePixelRatio() if app is not None else 1.0


class MoleculeTableModel(QAbstractTableModel):
    """The shown rows of the session (the table or the hit list beside it), with one column per
    field the file carried; depictions are asked for only when a row is painted."""

    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.session = controller.session
        self.fields: list[str] = []
        # the painted rows' pixmaps by row key, least recently painted dropped first: scrolling
        # through 100k rows must not keep 100k pixmaps (50 KB each)
        self._pixmaps: OrderedDict[int, QPixmap] = OrderedDict()
        controller.rows_changed.connect(self.reload)
        controller.rows_updated.connect(self.refresh)

    def reload(self) -> None:
        self.beginResetModel()
        self.fields = self.session.field_names()
        self._pixmaps.clear()
        self.endResetModel()

    def refresh(self) -> None:
        if self.rowCount():
            self.dataChanged.emit(self.index(0, 0), self.index(self.rowCount() - 1, self.columnCount() - 1))

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 (Qt API)
        return 0 if parent.isValid() else len(self.session.shown)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(HEADERS) + len(self.fields)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[section] if section < len(HEADERS) else self.fields[section - len(HEADERS)]
        return None

    def _value(self, row, column):
        item = self.session.shown[row]
        props = item.properties
        if column == ID:
            return item.id
        if column == SMILES:
            return item.smiles
        if FIRST_PROPERTY <= column < LIPINSKI:
            return props.get(PROPERTY_COLUMNS[column - FIRST_PROPERTY][1])
        if column == LIPINSKI:
            return None if not props else props["lipinski_pass"]
        if column == VEBER:
            return None if not props else props["veber_pass"]
        if column == ALERTS:
            return None if not props else len(props["alerts"])
        if column == SCORE:
            return self.session.score_of(item)
        if column == SOLUBILITY:
            if item.withheld("solubility_logS", self.session.show_withheld):
                return None  # withheld: sorted with the blanks, never plotted
            return item.predictions.get("solubility_logS")
        if column == STATUS:
            return item.error or ("standardised" if item.original else "ok")
        if column == DUPLICATES:
            count = self.session.duplicate_count(item)
            return count if count > 1 else None
        if column == ORIGIN and "origin" in item.fields:
            return float(item.fields.get("similarity to seed", 0.0))
        if column >= len(HEADERS):
            return self.session.column_value(item, self.fields[column - len(HEADERS)])
        return None

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        """Reorder the rows themselves by one column, in one Python sort (0.1 s for 100k rows).
        A sorting proxy would call data() twice a comparison: ~30 s for 100k rows. Selections
        follow their rows (persistent indexes); empty values sort first, stably; numbers before
        text in a column holding both."""
        rows = self.session.shown
        if column == STRUCTURE or len(rows) < 2:
            return
        self.layoutAboutToBeChanged.emit()
        values = [self._value(r, column) for r in range(len(rows))]
        keys = [(0, 0, 0) if v is None or v == "" else (1, 0, v) if isinstance(v, (int, float)) else (1, 1, str(v))
                for v in values]
        order_of = sorted(range(len(rows)), key=keys.__getitem__, reverse=order == Qt.SortOrder.DescendingOrder)
        new_row = [0] * len(rows)
        for new, old in enumerate(order_of):
            new_row[old] = new
        persistent = self.persistentIndexList()
        self.changePersistentIndexList(persistent, [self.index(new_row[i.row()], i.column()) for i in persistent])
        rows[:] = [rows[i] for i in order_of]
        self.layoutChanged.emit()

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row, column = index.row(), index.column()
        item = self.session.shown[row]
        if role == Qt.ItemDataRole.DecorationRole and column == STRUCTURE:
            pixmap = self._pixmaps.get(item.key)
            if pixmap is None:
                ratio = _pixel_ratio()  # drawn for the screen's pixels: sharp at 2x
                png = self.controller.depiction(row, round(DEPICTION.width() * ratio), round(DEPICTION.height() * ratio))
                pixmap = QPixmap()
                if png:
                    pixmap.loadFromData(png, "PNG")
                    pixmap.setDevicePixelRatio(ratio)
                self._pixmaps[item.key] = pixmap
                if len(self._pixmaps) > _PIXMAPS_KEPT:
                    self._pixmaps.popitem(last=False)
            else:
                self._pixmaps.move_to_end(item.key)
            return pixmap
        if role == GRID_LABEL_ROLE:
            name = next((item.fields[n] for n in item.fields if n.lower() in NAME_FIELDS and item.fields[n]), None)
            label = f"{item.id} · {name}" if name else item.id
            score = self.session.score_of(item)
            return label + (f"  ({score:.2f})" if score is not None else "")
        value = self._value(row, column)
        if role == Qt.ItemDataRole.DisplayRole:
            if column in (LIPINSKI, VEBER) and value is not None:
                return "pass" if value else "fail"
            if column == ALERTS and value is not None:
                return ", ".join(item.properties["alerts"]) if value else "none"
            if column == SOLUBILITY and item.withheld("solubility_logS", self.session.show_withheld):
                return "withheld"
            if column == SOLUBILITY and value is not None:
                return f"{value:.2f}" + ("" if item.in_domain.get("solubility_logS", True) else " (out of domain, run anyway)")
            if FIRST_PROPERTY <= column < LIPINSKI and value is not None:
                return f"{value:.{PROPERTY_COLUMNS[column - FIRST_PROPERTY][2]}f}"
            if column == SCORE and value is not None:
                return f"{value:.3f}"
            if column == DUPLICATES and value is not None:
                return self.session.duplicate_label(item)
            if column == ORIGIN and value is not None:
                return f"{item.fields['origin']} ({value:.2f})"
            if column >= len(HEADERS):
                raw = item.fields.get(self.fields[column - len(HEADERS)])
                return None if raw is None else str(raw)
            return None if value is None else str(value)
        if role == Qt.ItemDataRole.ToolTipRole and column == SOLUBILITY and not item.in_domain.get("solubility_logS", True):
            return item.domain_reasons.get("solubility_logS") or "outside the model's applicability domain"
        if role == Qt.ItemDataRole.ToolTipRole and column in (STATUS, ALERTS, SMILES):
            return item.error or (f"original: {item.original}" if item.original else item.smiles)
        if role == Qt.ItemDataRole.ToolTipRole and column == DUPLICATES and value is not None:
            return "Rows with the same structure (canonical SMILES after standardisation); Merge duplicates joins them"
        return None


class MoleculeFilter(QSortFilterProxyModel):
    """Rows the session accepts (filters, and the table search while one is shown)."""

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        """Header clicks sort the rows in the source model (MoleculeTableModel.sort); this
        proxy only filters and keeps the source order."""
        self.sourceModel().sort(column, order)

    def filterAcceptsRow(self, source_row, source_parent):  # noqa: N802
        return self.session.accepts(self.session.shown[source_row])


class StructureGridDelegate(QStyledItemDelegate):
    """A grid cell: the depiction, and the id (and name) under it."""

    def paint(self, painter, option, index) -> None:
        painter.save()
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(option.rect, option.palette.highlight())
        pixmap = index.data(Qt.ItemDataRole.DecorationRole)
        area = option.rect.adjusted(4, 4, -4, -22)
        if isinstance(pixmap, QPixmap) and not pixmap.isNull():
            ratio = pixmap.devicePixelRatio()
            scaled = pixmap.scaled(area.size() * ratio, Qt.AspectRatioMode.KeepAspectRatio,
                                   Qt.TransformationMode.SmoothTransformation)
            scaled.setDevicePixelRatio(ratio)
            shown = scaled.deviceIndependentSize().toSize()
            painter.drawPixmap(area.x() + (area.width() - shown.width()) // 2,
                               area.y() + (area.height() - shown.height()) // 2, scaled)
        painter.setPen(option.palette.highlightedText().color() if option.state & QStyle.StateFlag.State_Selected
                       else option.palette.text().color())
        text_rect = QRect(option.rect.x() + 2, option.rect.bottom() - 20, option.rect.width() - 4, 18)
        label = index.data(GRID_LABEL_ROLE) or ""
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignCenter,
                         option.fontMetrics.elidedText(label, Qt.TextElideMode.ElideRight, text_rect.width()))
        painter.setPen(option.palette.mid().color())
        painter.drawRect(option.rect.adjusted(0, 0, -1, -1))
        painter.restore()

    def sizeHint(self, option, index) -> QSize:  # noqa: N802
        return GRID_CELL


class MoleculesWorkspace(QWidget):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.session = controller.session
        self.setAcceptDrops(True)
        self.model = MoleculeTableModel(controller, self)
        self.proxy = MoleculeFilter(self.session, self)
        self.proxy.setSourceModel(self.model)

        # toolbar: filters, duplicates, table/grid, models, export
        self.filter_text = QLineEdit(placeholderText="Filter by ID, name, SMILES or any column")
        self.filter_text.setMinimumWidth(160)
        self.filter_text.textChanged.connect(lambda t: controller.set_filters(text=t))
        self.lipinski_only = QCheckBox("Lipinski pass")
        self.lipinski_only.toggled.connect(lambda on: controller.set_filters(lipinski_only=on))
        self.no_alerts = QCheckBox("No alerts")
        self.no_alerts.toggled.connect(lambda on: controller.set_filters(no_alerts=on))
        self.valid_only = QCheckBox("Valid only")
        self.valid_only.toggled.connect(lambda on: controller.set_filters(valid_only=on))
        self.duplicates_only = QCheckBox("Duplicates only")
        self.duplicates_only.setToolTip("Rows whose structure (canonical SMILES after standardisation) the table "
                                        "holds more than once")
        self.duplicates_only.toggled.connect(lambda on: controller.set_filters(duplicates_only=on))
        self.merge_button = QPushButton("Merge duplicates")
        self.merge_button.setToolTip("Join rows of the same structure into the first: ids and the file's values kept")
        self.merge_button.clicked.connect(controller.merge_duplicates)
        self.standardise = QCheckBox("Standardise on import")
        self.standardise.setChecked(controller.standardise)
        self.standardise.toggled.connect(lambda on: setattr(controller, "standardise", on))
        self.tautomer = QCheckBox("canonical tautomer")
        self.tautomer.toggled.connect(lambda on: setattr(controller, "canonical_tautomer", on))
        self.table_button = QPushButton("Table")
        self.grid_button = QPushButton("Grid")
        self.layout_buttons = QButtonGroup(self)
        for button in (self.table_button, self.grid_button):
            button.setCheckable(True)
            self.layout_buttons.addButton(button)
        self.table_button.setChecked(True)
        self.table_button.toggled.connect(lambda on: self.views.setCurrentIndex(0 if on else 1))
        self.predict_button = QPushButton("Predict")
        self.predict_button.clicked.connect(lambda: controller.predict())
        self.export_button = QPushButton("Export…")
        self.export_button.clicked.connect(self._export_dialog)
        self.show_withheld = QCheckBox("Run anyway")
        self.show_withheld.setToolTip("Show the predictions withheld because the molecule is outside the model's "
                                      "applicability domain (unlike its training molecules); they stay marked")
        self.show_withheld.toggled.connect(controller.set_show_withheld)

        # analogues
        self.analogues_button = QPushButton("Analogues")
        self.analogues_button.setToolTip("Propose analogues of the selected molecule, scored and ranked")
        self.analogues_button.clicked.connect(self._generate)
        self.analogue_source = QComboBox()
        self.analogue_source.addItems(list(ANALOGUE_SOURCES))
        self.analogue_source.setToolTip("SMILES model trained on ZINC/MOSES, RDKit mutation reactions, or both")
        self.analogue_count = QSpinBox(minimum=1, maximum=500, value=50)
        self.analogue_similarity = QDoubleSpinBox(minimum=0.0, maximum=1.0, singleStep=0.05, value=0.3)
        self.analogue_similarity.setToolTip("Keep proposals at least this similar to the seed (Tanimoto, Morgan r=2)")
        self._cancelling = False
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self._cancel)

        # search: over the whole table unless narrowed to the shown rows; a library beside it
        self.search_mode = QComboBox()
        self.search_mode.addItems(["similar", "substructure"])
        self.search_query = QLineEdit(placeholderText="query SMILES / SMARTS (empty: the selected molecule)")
        self.search_query.setMinimumWidth(160)
        self.search_threshold = QDoubleSpinBox(minimum=0.0, maximum=1.0, singleStep=0.05, value=0.0)
        self.search_only_shown = QCheckBox("only rows shown")
        self.search_only_shown.setToolTip("Search the rows the filters show instead of the whole table")
        self.hit_limit = QSpinBox(minimum=0, maximum=10_000_000, singleStep=100, value=self.session.hit_limit)
        self.hit_limit.setSpecialValueText("all")
        self.hit_limit.setToolTip("The most hits a search keeps (0: all of them); kept in Settings")
        self.hit_limit.valueChanged.connect(controller.set_hit_limit)
        self.search_button = QPushButton("Search table")
        self.search_button.clicked.connect(lambda: self.run_search(None))
        self.search_library_button = QPushButton("Search library…")
        self.search_library_button.setToolTip("Search a library file (indexed once, the index reused while the "
                                              "file is unchanged) or an index folder; hits shown beside the table")
        self.search_library_button.clicked.connect(self._search_library_dialog)

        # what is shown: the whole table, a table search (a filter), or the hit list beside it
        self.view_status = QLabel()
        self.show_all_button = QPushButton("Show all")
        self.show_all_button.setToolTip("Back to the whole table")
        self.show_all_button.clicked.connect(controller.show_all)
        self.hit_list_button = QPushButton("Hit list")
        self.hit_list_button.setToolTip("Back to the last library hits or analogues")
        self.hit_list_button.clicked.connect(controller.show_hit_list)
        self.add_hits_button = QPushButton("Add hits to table")
        self.add_hits_button.clicked.connect(controller.add_hits_to_table)
        self.index_status = QLabel("No library index in use.")
        self.index_status.setStyleSheet("color: #555")
        for label in (self.view_status, self.index_status):  # long texts are cut, not widening the window
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            label.setMinimumWidth(120)

        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setDefaultSectionSize(ROW_HEIGHT)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.setColumnWidth(STRUCTURE, 165)
        self.table.setColumnWidth(SMILES, 220)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        self.grid = QListView()
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setUniformItemSizes(True)
        self.grid.setGridSize(GRID_CELL)
        self.grid.setSelectionMode(QListView.SelectionMode.ExtendedSelection)
        self.grid.setItemDelegate(StructureGridDelegate(self.grid))
        self.grid.setModel(self.proxy)
        self.grid.setModelColumn(STRUCTURE)
        self.grid.setSelectionModel(self.table.selectionModel())  # one selection, two layouts
        self.views = QStackedWidget()
        self.views.addWidget(self.table)
        self.views.addWidget(self.grid)

        # detail pane
        self.detail_picture = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.detail_picture.setMinimumSize(280, 150)
        self.detail_picture.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.detail_text = QTextBrowser()
        self.detail_text.setPlaceholderText("Click a molecule to see its structure and properties.")
        self.smiles_editor = QLineEdit(placeholderText="Type a SMILES: live depiction and validation")
        self.smiles_status = QLabel()
        self.smiles_picture = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.smiles_editor.textChanged.connect(self._smiles_edited)
        self.add_button = QPushButton("Add to table")
        self.add_button.clicked.connect(self._add_smiles)

        # scatter: any two numeric columns, coloured by any column
        self.x_column, self.y_column, self.colour_column = QComboBox(), QComboBox(), QComboBox()
        self.plot = pg.PlotWidget(background="w")
        self.plot.setMinimumHeight(120)
        self.scatter = pg.ScatterPlotItem(size=6, brush=pg.mkBrush(70, 110, 200, 140), pen=None)
        self.selected_points = pg.ScatterPlotItem(size=11, brush=pg.mkBrush(230, 60, 40, 220), pen=pg.mkPen("k"))
        self.plot.addItem(self.scatter)
        self.plot.addItem(self.selected_points)
        self.scatter.sigClicked.connect(self._point_clicked)
        self.colour_legend = QLabel()
        self.colour_legend.setWordWrap(True)
        # histogram of any column (numbers binned, text counted)
        self.histogram_column = QComboBox()
        self.histogram = pg.PlotWidget(background="w")
        self.histogram.setMinimumHeight(120)
        self.histogram_bars = pg.BarGraphItem(x=[], height=[], width=1.0, brush=pg.mkBrush(70, 110, 200, 180))
        self.histogram.addItem(self.histogram_bars)
        for combo in (self.x_column, self.y_column, self.colour_column):
            combo.currentTextChanged.connect(self._redraw_scatter)
        self.histogram_column.currentTextChanged.connect(self._redraw_histogram)

        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("Drop SMILES, SDF, MOL or CSV/TSV files here (gzipped too).")
        self.status.setWordWrap(True)

        top = QHBoxLayout()
        for widget in (self.filter_text, self.lipinski_only, self.no_alerts, self.valid_only, self.duplicates_only,
                       self.merge_button, self.predict_button, self.show_withheld, self.export_button):
            top.addWidget(widget)
        search = QHBoxLayout()
        for widget in (self.search_mode, self.search_query, QLabel("min. Tanimoto"), self.search_threshold,
                       QLabel("max. hits"), self.hit_limit, self.search_only_shown, self.search_button,
                       self.search_library_button):
            search.addWidget(widget)
        analogues = QHBoxLayout()
        for widget in (self.standardise, self.tautomer, QLabel("   Analogues from"), self.analogue_source,
                       QLabel("count"), self.analogue_count, QLabel("min. similarity"), self.analogue_similarity,
                       self.analogues_button):
            analogues.addWidget(widget)
        analogues.addStretch(1)
        shown = QHBoxLayout()
        shown.addWidget(self.view_status, 1)
        for widget in (self.show_all_button, self.hit_list_button, self.add_hits_button, self.table_button,
                       self.grid_button):
            shown.addWidget(widget)

        scatter_tab = QWidget()
        scatter_layout = QVBoxLayout(scatter_tab)
        axes = QHBoxLayout()
        for widget in (QLabel("x"), self.x_column, QLabel("y"), self.y_column, QLabel("colour"), self.colour_column):
            axes.addWidget(widget)
        scatter_layout.addLayout(axes)
        scatter_layout.addWidget(self.plot, 1)
        scatter_layout.addWidget(self.colour_legend)
        histogram_tab = QWidget()
        histogram_layout = QVBoxLayout(histogram_tab)
        chooser = QHBoxLayout()
        chooser.addWidget(QLabel("column"))
        chooser.addWidget(self.histogram_column, 1)
        histogram_layout.addLayout(chooser)
        histogram_layout.addWidget(self.histogram, 1)
        self.plots = QTabWidget()
        self.plots.addTab(scatter_tab, "Scatter")
        self.plots.addTab(histogram_tab, "Histogram")
        from healthfm_desktop.views.adaptation_panel import AdaptationPanel, scrolling

        self.adaptation = AdaptationPanel(controller.adaptation, self.selected_ids, columns=self.session.field_names,
                                          open_item=self.open_molecule)
        self.plots.addTab(scrolling(self.adaptation), "Adapt")

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.addWidget(self.detail_picture)
        right_layout.addWidget(self.detail_text, 1)
        right_layout.addWidget(self.plots, 2)
        right_layout.addWidget(self.smiles_editor)
        editor_row = QHBoxLayout()
        editor_row.addWidget(self.smiles_picture, 1)
        editor_row.addWidget(self.add_button)
        right_layout.addLayout(editor_row)
        right_layout.addWidget(self.smiles_status)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addLayout(shown)
        left_layout.addWidget(self.views, 1)
        # the detail pane scrolls where the window is low (1280x800 with a dock open) instead of
        # setting the window's minimum height above the screen's
        right_area = QScrollArea()
        right_area.setWidgetResizable(True)
        right_area.setFrameShape(QFrame.Shape.NoFrame)
        right_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        right_area.setWidget(right)
        right_area.setMinimumWidth(right.minimumSizeHint().width() + right_area.verticalScrollBar().sizeHint().width())
        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(right_area)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([900, 600])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(search)
        layout.addLayout(analogues)
        layout.addWidget(splitter, 1)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel_button)
        progress_row.addWidget(self.index_status, 1)
        layout.addLayout(progress_row)
        layout.addWidget(self.status)

        controller.rows_changed.connect(self._rows_changed)
        controller.view_changed.connect(self._view_changed)
        self.model.layoutChanged.connect(self._rows_changed)  # sorted: the plot's row numbers change
        controller.rows_updated.connect(self._rows_updated)
        controller.index_changed.connect(self._index_changed)
        controller.message.connect(lambda level, text: self.status.setText(text))
        controller.progress.connect(self._progress)
        controller.busy_changed.connect(self._busy_changed)
        controller.column_choice_needed.connect(self._choose_column)
        self._view_changed()

    # ---- drag and drop -------------------------------------------------------------------
    def dragEnterEvent(self, event):  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event):  # noqa: N802
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.controller.open_paths(paths)
            event.acceptProposedAction()

    # ---- reactions -----------------------------------------------------------------------
    def _cancel(self) -> None:
        self._cancelling = True
        self.controller.cancel_jobs()
        self.status.setText("Cancelling…")

    def _busy_changed(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        if not busy and self._cancelling:
            # progress queued before the job stopped may have overwritten the status meanwhile
            self._cancelling = False
            self.status.setText("Cancelled.")

    def _progress(self, progress: Progress) -> None:
        if self._cancelling:
            return
        if progress.fraction is None:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(progress.fraction * 1000))
        if progress.message:
            self.status.setText(progress.message)

    def _rows_changed(self) -> None:
        self._fill_column_choices()
        self.adaptation.refresh_columns()
        self._view_changed()

    def _rows_updated(self) -> None:
        self._fill_column_choices()
        self._redraw_scatter()
        self._redraw_histogram()
        self._selection_changed()

    def _view_changed(self) -> None:
        """Filters, a table search or the table/hit-list switch changed: refilter and redraw."""
        self.proxy.invalidateFilter()
        session = self.session
        filtered = self.proxy.rowCount() != len(session.shown)
        self.view_status.setText(session.status() + (f" · {self.proxy.rowCount()} pass the filters" if filtered else ""))
        self.view_status.setToolTip(self.view_status.text())
        searching = session.view == HITS or session.table_search is not None
        self.show_all_button.setEnabled(searching)
        self.hit_list_button.setEnabled(session.hits is not None and session.view == TABLE)
        self.add_hits_button.setEnabled(session.view == HITS)
        self.search_button.setEnabled(session.view == TABLE)
        self.merge_button.setEnabled(session.view == TABLE)
        self._redraw_scatter()
        self._redraw_histogram()
        self._selection_changed()

    def _index_changed(self, state) -> None:
        self.index_status.setText(state.describe())
        self.index_status.setToolTip(f"{state.describe()}\nkept in {state.folder}")

    def _fill_column_choices(self) -> None:
        numeric = self.session.numeric_column_names()
        every = self.session.column_names()
        for combo, names, default in ((self.x_column, numeric, "MW"), (self.y_column, numeric, "cLogP"),
                                      (self.colour_column, ["none", *every], "none"),
                                      (self.histogram_column, every, "MW")):
            current = combo.currentText() or default
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            combo.setCurrentText(current if current in names else default)
            combo.blockSignals(False)

    def _visible_source_rows(self) -> list[int]:
        return [self.proxy.mapToSource(self.proxy.index(i, 0)).row() for i in range(self.proxy.rowCount())]

    def _redraw_scatter(self, *args) -> None:
        session, shown = self.session, self.session.shown
        x_name, y_name = self.x_column.currentText(), self.y_column.currentText()
        self.plot.setLabel("bottom", x_name)
        self.plot.setLabel("left", y_name)
        points = []
        for i in self._visible_source_rows():
            x, y = session.column_value(shown[i], x_name), session.column_value(shown[i], y_name)
            if isinstance(x, (int, float)) and isinstance(y, (int, float)):
                points.append((float(x), float(y), i))
        brushes, legend = self._colours([p[2] for p in points])
        self.scatter.setData([p[0] for p in points], [p[1] for p in points], data=[p[2] for p in points],
                             brush=brushes)
        self.colour_legend.setText(legend)
        self._selection_changed()

    def _colours(self, rows: list[int]):
        """Brushes for the points of ``rows`` by the colour column, and a legend (HTML)."""
        name = self.colour_column.currentText()
        default = pg.mkBrush(70, 110, 200, 140)
        if not rows or name in ("", "none"):
            return [default] * len(rows), ""
        values = [self.session.column_value(self.session.shown[i], name) for i in rows]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        grey = pg.mkBrush(190, 190, 190, 120)
        if numbers and len(numbers) == len([v for v in values if v not in (None, "")]):
            lo, hi = min(numbers), max(numbers)
            colormap = pg.colormap.get("viridis")
            span = (hi - lo) or 1.0
            brushes = [grey if not isinstance(v, (int, float)) else pg.mkBrush(colormap.map((v - lo) / span, "qcolor"))
                       for v in values]
            return brushes, f"colour: {name} from {lo:.3g} (purple) to {hi:.3g} (yellow); grey: no value"
        counts: dict[str, int] = {}
        for v in values:
            if v not in (None, ""):
                counts[str(v)] = counts.get(str(v), 0) + 1
        top = sorted(counts, key=lambda k: -counts[k])[:MAX_CATEGORIES]
        colour_of = {k: CATEGORY_COLOURS[i] for i, k in enumerate(top)}
        brushes = [pg.mkBrush(*colour_of[str(v)], 200) if str(v) in colour_of else grey for v in values]
        legend = " ".join(f"<span style='color:rgb{colour_of[k]}'>■</span> {k}" for k in top)
        if len(counts) > len(top):
            legend += f" <span style='color:#999'>■</span> {len(counts) - len(top)} other values"
        return brushes, f"colour: {name}: {legend}"

    def _redraw_histogram(self, *args) -> None:
        name = self.histogram_column.currentText()
        shown = self.session.shown
        values = [self.session.column_value(shown[i], name) for i in self._visible_source_rows()] if name else []
        values = [v for v in values if v not in (None, "")]
        axis = self.histogram.getAxis("bottom")
        self.histogram.setLabel("left", "rows")
        if not values:
            self.histogram_bars.setOpts(x=[], height=[], width=1.0)
            axis.setTicks(None)
            return
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            counts, edges = np.histogram(np.asarray(values, dtype=float), bins=min(30, max(5, len(set(values)))))
            self.histogram_bars.setOpts(x=(edges[:-1] + edges[1:]) / 2, height=counts, width=float(edges[1] - edges[0]) * 0.9)
            axis.setTicks(None)
            self.histogram.setLabel("bottom", name)
            return
        counted: dict[str, int] = {}
        for v in values:
            counted[str(v)] = counted.get(str(v), 0) + 1
        top = sorted(counted, key=lambda k: -counted[k])[:20]
        self.histogram_bars.setOpts(x=list(range(len(top))), height=[counted[k] for k in top], width=0.8)
        axis.setTicks([[(i, k[:14]) for i, k in enumerate(top)]])
        self.histogram.setLabel("bottom", name + (f" (20 most frequent of {len(counted)})" if len(counted) > 20 else ""))

    def histogram_counts(self) -> list[float]:
        """The bar heights drawn (what a user reads off the histogram)."""
        return [float(h) for h in self.histogram_bars.opts.get("height", [])]

    def selected_ids(self) -> list[str]:
        shown = self.session.shown
        return [shown[r].id for r in self.selected_rows()]

    def selected_rows(self) -> list[int]:
        rows = {self.proxy.mapToSource(i).row() for i in self.table.selectionModel().selectedRows()}
        return sorted(rows)

    def _selection_changed(self, *args) -> None:
        rows = self.selected_rows()
        shown = self.session.shown
        chosen = [shown[r] for r in rows if r < len(shown)]
        x_name, y_name = self.x_column.currentText(), self.y_column.currentText()
        pairs = [(self.session.column_value(r, x_name), self.session.column_value(r, y_name)) for r in chosen]
        pairs = [(x, y) for x, y in pairs if isinstance(x, (int, float)) and isinstance(y, (int, float))]
        self.selected_points.setData([p[0] for p in pairs], [p[1] for p in pairs])
        if not chosen:
            self.detail_picture.clear()
            self.detail_text.setHtml("")
            return
        row = rows[0]
        size, ratio = self.detail_picture.size(), _pixel_ratio()  # drawn at the size shown, never cut
        png = self.controller.depiction(row, round(max(size.width(), 200) * ratio), round(max(size.height(), 140) * ratio),
                                        highlight=True)
        pixmap = QPixmap()
        if png:
            pixmap.loadFromData(png, "PNG")
            pixmap.setDevicePixelRatio(ratio)
        self.detail_picture.setPixmap(pixmap)
        self.detail_text.setHtml(self._detail_html(chosen[0], self.session.duplicate_label(chosen[0]), self.session.show_withheld))

    @staticmethod
    def _detail_html(item, duplicates: str | None = None, show_withheld: bool = False) -> str:
        parts = [f"<b>{html.escape(item.id)}</b><br><tt>{html.escape(item.smiles)}</tt>"]
        if duplicates:
            parts.append(f"same structure in the table: {html.escape(duplicates)}")
        if item.original:
            parts.append(f"original: <tt>{item.original}</tt>")
        if item.error:
            parts.append(f"<span style='color:#b00'>unreadable: {item.error}</span>")
        p = item.properties
        if p:
            parts.append(
                f"MW {p['mw']:.1f} · cLogP {p['logp']:.2f} · TPSA {p['tpsa']:.1f} · HBD {p['hbd']} · HBA {p['hba']} · "
                f"RotB {p['rotb']} · rings {p['rings']} · Fsp3 {p['fsp3']:.2f} · QED {p['qed']:.2f}<br>"
                f"Lipinski {'pass' if p['lipinski_pass'] else 'fail'} ({p['lipinski_violations']} violations) · "
                f"Veber {'pass' if p['veber_pass'] else 'fail'}"
            )
            alerts = ", ".join(p["alerts"]) or "none"
            parts.append(f"Structural alerts (highlighted): {alerts}")
        if item.predictions:
            lines, withheld = [], {}
            for key, value in item.predictions.items():
                reason = html.escape(item.domain_reasons.get(key) or "outside the model's applicability domain")
                if item.withheld(key, show_withheld):
                    # one line per model ("tox21:NR-AR" ... share one domain and one reason)
                    withheld.setdefault((key.split(":")[0], reason), []).append(key)
                    continue
                flag = "in domain" if item.in_domain.get(key) else f"<span style='color:#b00'>run anyway, out of domain</span>: {reason}"
                spread = ""
                if key in item.intervals:
                    spread = f" · 90% interval {item.intervals[key][0]:.2f} to {item.intervals[key][1]:.2f}"
                elif key in item.prediction_sets:
                    spread = " · 90% set {" + ", ".join(item.prediction_sets[key]) + "}"
                lines.append(f"{key}: <b>{value:.3f}</b>{spread} ({flag})")
            for (model, reason), keys in withheld.items():
                name = keys[0] if len(keys) == 1 else f"{model} ({len(keys)} assays)"
                lines.append(f"{name}: <span style='color:#b00'>withheld</span>: {reason}")
            parts.append("<br>".join(lines))
            for model, near in item.neighbours.items():
                rows = "".join(
                    f"<li><tt>{n.smiles}</tt> sim {n.similarity:.2f}: "
                    + ", ".join(f"{k}={v:g}" for k, v in n.values.items() if v is not None) + "</li>"
                    for n in near
                )
                parts.append(f"Nearest training molecules ({model}):<ul>{rows}</ul>")
        if item.fields:
            parts.append("<br>".join(f"{html.escape(str(k))}: {html.escape(str(v))}"
                                     for k, v in list(item.fields.items())[:12]))
        return "<p>" + "</p><p>".join(parts) + "</p>"

    def _point_clicked(self, item, points, *args) -> None:
        if not points:
            return
        self.select_source_row(int(points[0].data()))

    def open_molecule(self, record: dict) -> None:
        """Select and show the row of a find-similar neighbour the user clicked."""
        row = next((r for r, item in enumerate(self.session.shown) if item.id == record["id"]), None)
        if row is not None:
            self.select_source_row(row)

    def select_source_row(self, row: int) -> None:
        index = self.proxy.mapFromSource(self.model.index(row, ID))
        if index.isValid():
            self.table.selectRow(index.row())
            self.table.scrollTo(index)

    def _smiles_edited(self, text: str) -> None:
        if not text.strip():
            self.smiles_status.setText("")
            self.smiles_picture.clear()
            return
        ok, message, png = self.controller.check_smiles(text)
        self.smiles_status.setText(message)
        self.smiles_status.setStyleSheet("" if ok else "color: #b00")
        pixmap = QPixmap()
        if png:
            pixmap.loadFromData(png, "PNG")
        self.smiles_picture.setPixmap(pixmap)

    def _add_smiles(self) -> None:
        try:
            self.controller.add_smiles(self.smiles_editor.text())
        except Exception as exc:  # a UserFacingError from core: shown, nothing added
            self.status.setText(str(exc))

    def run_search(self, library: Path | None) -> None:
        """Search the whole table (or only the rows shown, when asked), or a library."""
        query = self.search_query.text().strip()
        if not query:
            rows = self.selected_rows()
            if not rows:
                self.status.setText("Type a query or select a molecule first.")
                return
            query = self.session.shown[rows[0]].smiles
        mode = self.search_mode.currentText()
        threshold = self.search_threshold.value() if mode == "similar" else None
        narrowed = self._visible_source_rows() if library is None and self.search_only_shown.isChecked() else None
        self.controller.search(query, mode=mode, library=library, threshold=threshold, rows=narrowed)

    def _generate(self) -> None:
        rows = self.selected_rows()
        if not rows:
            self.status.setText("Select a molecule to generate analogues of.")
            return
        self.controller.generate(rows[0], count=self.analogue_count.value(),
                                 source=ANALOGUE_SOURCES[self.analogue_source.currentText()],
                                 min_similarity=self.analogue_similarity.value())

    def _search_library_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Library file (or index.json of an index)")
        if path:
            p = Path(path)
            self.run_search(p.parent if p.name == "index.json" else p)

    def _export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export molecules", "molecules.csv", "CSV (*.csv);;SD file (*.sdf)")
        if path:
            self.controller.export(Path(path), self._visible_source_rows())

    def _choose_column(self, path, candidates: list) -> None:
        column, ok = QInputDialog.getItem(self, "Which column holds the SMILES?", f"{Path(path).name}:", candidates, 0, False)
        if ok and column:
            self.controller.open_paths([path], smiles_column=column)
