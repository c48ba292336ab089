"""Molecules workspace: a virtualised compound grid (depictions, sortable properties, rule
flags, alerts), filters, a property scatter linked to the selection, a detail pane with the
alert atoms highlighted and predictions with their applicability domain, a live SMILES editor,
similarity/substructure search and export. Everything chemical comes from the controller."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QHBoxLayout, QHeaderView, QInputDialog, QLabel,
    QLineEdit, QProgressBar, QPushButton, QSpinBox, QSplitter, QTableView, QTextBrowser, QVBoxLayout, QWidget,
)

from healthfm_desktop.controllers.workers import Progress

PROPERTY_COLUMNS = [
    ("MW", "mw", 1), ("cLogP", "logp", 2), ("TPSA", "tpsa", 1), ("HBD", "hbd", 0), ("HBA", "hba", 0),
    ("RotB", "rotb", 0), ("Rings", "rings", 0), ("Fsp3", "fsp3", 2), ("QED", "qed", 2),
]
STRUCTURE, ID, SMILES = 0, 1, 2
FIRST_PROPERTY = 3
LIPINSKI = FIRST_PROPERTY + len(PROPERTY_COLUMNS)
VEBER, ALERTS, SCORE, SOLUBILITY, STATUS = LIPINSKI + 1, LIPINSKI + 2, LIPINSKI + 3, LIPINSKI + 4, LIPINSKI + 5
ORIGIN = LIPINSKI + 6  # analogues only: where a proposal came from and its similarity to the seed
HEADERS = ["Structure", "ID", "SMILES", *[c[0] for c in PROPERTY_COLUMNS], "Lipinski", "Veber", "Alerts", "Score",
           "logS (pred.)", "Status", "Origin (sim.)"]
ANALOGUE_SOURCES = {"model + mutations": "both", "model": "model", "mutations": "mutation"}
ROW_HEIGHT = 84


_PIXMAPS_KEPT = 600  # a few screens of rows, both ways


class MoleculeTableModel(QAbstractTableModel):
    """Rows come from the controller; depictions are asked for only when a row is painted."""

    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        # the painted rows' pixmaps, least recently painted dropped first: scrolling through
        # 100k rows must not keep 100k pixmaps (50 KB each)
        self._pixmaps: OrderedDict[int, QPixmap] = OrderedDict()
        controller.rows_changed.connect(self.reload)
        controller.rows_updated.connect(self.refresh)

    def reload(self) -> None:
        self.beginResetModel()
        self._pixmaps.clear()
        self.endResetModel()

    def refresh(self) -> None:
        if self.rowCount():
            self.dataChanged.emit(self.index(0, 0), self.index(self.rowCount() - 1, self.columnCount() - 1))

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 (Qt API)
        return 0 if parent.isValid() else len(self.controller.rows)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(HEADERS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[section]
        return None

    def _value(self, row, column):
        item = self.controller.rows[row]
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
            return item.score
        if column == SOLUBILITY:
            return item.predictions.get("solubility_logS")
        if column == STATUS:
            return item.error or ("standardised" if item.original else "ok")
        if column == ORIGIN and "origin" in item.fields:
            return float(item.fields.get("similarity to seed", 0.0))
        return None

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        """Reorder the rows themselves by one column, in one Python sort (0.1 s for 100k rows).
        A sorting proxy would call data() twice a comparison: ~30 s for 100k rows. Selections
        follow their rows (persistent indexes); empty values sort first, stably."""
        rows = self.controller.rows
        if column == STRUCTURE or len(rows) < 2:
            return
        self.layoutAboutToBeChanged.emit()
        values = [self._value(r, column) for r in range(len(rows))]
        keys = [(0, 0) if v is None else (1, v) for v in values]
        order_of = sorted(range(len(rows)), key=keys.__getitem__, reverse=order == Qt.SortOrder.DescendingOrder)
        new_row = [0] * len(rows)
        for new, old in enumerate(order_of):
            new_row[old] = new
        persistent = self.persistentIndexList()
        self.changePersistentIndexList(persistent, [self.index(new_row[i.row()], i.column()) for i in persistent])
        rows[:] = [rows[i] for i in order_of]
        self._pixmaps.clear()
        self.layoutChanged.emit()

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row, column = index.row(), index.column()
        item = self.controller.rows[row]
        if role == Qt.ItemDataRole.DecorationRole and column == STRUCTURE:
            pixmap = self._pixmaps.get(row)
            if pixmap is None:
                png = self.controller.depiction(row)
                pixmap = QPixmap()
                if png:
                    pixmap.loadFromData(png, "PNG")
                self._pixmaps[row] = pixmap
                if len(self._pixmaps) > _PIXMAPS_KEPT:
                    self._pixmaps.popitem(last=False)
            else:
                self._pixmaps.move_to_end(row)
            return pixmap
        value = self._value(row, column)
        if role == Qt.ItemDataRole.DisplayRole:
            if column in (LIPINSKI, VEBER) and value is not None:
                return "pass" if value else "fail"
            if column == ALERTS and value is not None:
                return ", ".join(item.properties["alerts"]) if value else "none"
            if column == SOLUBILITY and value is not None:
                return f"{value:.2f}" + ("" if item.in_domain.get("solubility_logS", True) else " (out of domain)")
            if FIRST_PROPERTY <= column < LIPINSKI and value is not None:
                return f"{value:.{PROPERTY_COLUMNS[column - FIRST_PROPERTY][2]}f}"
            if column == SCORE and value is not None:
                return f"{value:.3f}"
            if column == ORIGIN and value is not None:
                return f"{item.fields['origin']} ({value:.2f})"
            return None if value is None else str(value)
        if role == Qt.ItemDataRole.ToolTipRole and column in (STATUS, ALERTS, SMILES):
            return item.error or (f"original: {item.original}" if item.original else item.smiles)
        return None


class MoleculeFilter(QSortFilterProxyModel):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.text = ""
        self.lipinski_only = False
        self.no_alerts = False
        self.valid_only = False

    def update(self, text=None, lipinski_only=None, no_alerts=None, valid_only=None) -> None:
        if text is not None:
            self.text = text.strip().lower()
        if lipinski_only is not None:
            self.lipinski_only = lipinski_only
        if no_alerts is not None:
            self.no_alerts = no_alerts
        if valid_only is not None:
            self.valid_only = valid_only
        self.invalidateFilter()

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        """Header clicks sort the rows in the source model (MoleculeTableModel.sort); this
        proxy only filters and keeps the source order."""
        self.sourceModel().sort(column, order)

    def filterAcceptsRow(self, source_row, source_parent):  # noqa: N802
        item = self.sourceModel().controller.rows[source_row]
        if self.text and self.text not in item.id.lower() and self.text not in item.smiles.lower():
            return False
        if self.valid_only and item.error:
            return False
        if self.lipinski_only and not item.properties.get("lipinski_pass"):
            return False
        if self.no_alerts and item.properties.get("alerts"):
            return False
        return True


class MoleculesWorkspace(QWidget):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.setAcceptDrops(True)
        self.model = MoleculeTableModel(controller, self)
        self.proxy = MoleculeFilter(self)
        self.proxy.setSourceModel(self.model)

        # toolbar: filters, search, models, export
        self.filter_text = QLineEdit(placeholderText="Filter by ID or SMILES")
        self.filter_text.textChanged.connect(lambda t: self.proxy.update(text=t))
        self.lipinski_only = QCheckBox("Lipinski pass")
        self.lipinski_only.toggled.connect(lambda on: self.proxy.update(lipinski_only=on))
        self.no_alerts = QCheckBox("No alerts")
        self.no_alerts.toggled.connect(lambda on: self.proxy.update(no_alerts=on))
        self.valid_only = QCheckBox("Valid only")
        self.valid_only.toggled.connect(lambda on: self.proxy.update(valid_only=on))
        self.standardise = QCheckBox("Standardise on import")
        self.standardise.setChecked(controller.standardise)
        self.standardise.toggled.connect(lambda on: setattr(controller, "standardise", on))
        self.tautomer = QCheckBox("canonical tautomer")
        self.tautomer.toggled.connect(lambda on: setattr(controller, "canonical_tautomer", on))
        self.predict_button = QPushButton("Predict")
        self.predict_button.clicked.connect(lambda: controller.predict())
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
        self.export_button = QPushButton("Export…")
        self.export_button.clicked.connect(self._export_dialog)

        self.search_mode = QComboBox()
        self.search_mode.addItems(["similar", "substructure"])
        self.search_query = QLineEdit(placeholderText="query SMILES / SMARTS (empty: the selected molecule)")
        self.search_threshold = QDoubleSpinBox(minimum=0.0, maximum=1.0, singleStep=0.05, value=0.0)
        self.search_button = QPushButton("Search table")
        self.search_button.clicked.connect(lambda: self.run_search(None))
        self.search_library_button = QPushButton("Search library…")
        self.search_library_button.clicked.connect(self._search_library_dialog)

        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setDefaultSectionSize(ROW_HEIGHT)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.setColumnWidth(STRUCTURE, 165)
        self.table.setColumnWidth(SMILES, 220)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)

        # detail pane
        self.detail_picture = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.detail_picture.setMinimumSize(320, 220)
        self.detail_text = QTextBrowser()
        self.smiles_editor = QLineEdit(placeholderText="Type a SMILES: live depiction and validation")
        self.smiles_status = QLabel()
        self.smiles_picture = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.smiles_editor.textChanged.connect(self._smiles_edited)
        self.add_button = QPushButton("Add to table")
        self.add_button.clicked.connect(self._add_smiles)

        self.plot = pg.PlotWidget(background="w")
        self.plot.setLabel("bottom", "MW")
        self.plot.setLabel("left", "cLogP")
        self.plot.setMinimumHeight(200)
        self.scatter = pg.ScatterPlotItem(size=6, brush=pg.mkBrush(70, 110, 200, 140), pen=None)
        self.selected_points = pg.ScatterPlotItem(size=11, brush=pg.mkBrush(230, 60, 40, 220), pen=pg.mkPen("k"))
        self.plot.addItem(self.scatter)
        self.plot.addItem(self.selected_points)
        self.scatter.sigClicked.connect(self._point_clicked)

        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("Drop SMILES, SDF, MOL or CSV/TSV files here (gzipped too).")
        self.status.setWordWrap(True)

        top = QHBoxLayout()
        for widget in (self.filter_text, self.lipinski_only, self.no_alerts, self.valid_only, self.standardise,
                       self.tautomer, self.predict_button, self.export_button):
            top.addWidget(widget)
        search = QHBoxLayout()
        for widget in (self.search_mode, self.search_query, QLabel("min. Tanimoto"), self.search_threshold,
                       self.search_button, self.search_library_button, QLabel("  Analogues from"),
                       self.analogue_source, QLabel("count"), self.analogue_count, QLabel("min. similarity"),
                       self.analogue_similarity, self.analogues_button):
            search.addWidget(widget)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.addWidget(self.detail_picture)
        right_layout.addWidget(self.detail_text, 1)
        right_layout.addWidget(self.plot, 1)
        right_layout.addWidget(self.smiles_editor)
        editor_row = QHBoxLayout()
        editor_row.addWidget(self.smiles_picture, 1)
        editor_row.addWidget(self.add_button)
        right_layout.addLayout(editor_row)
        right_layout.addWidget(self.smiles_status)
        splitter = QSplitter()
        splitter.addWidget(self.table)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([900, 600])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(search)
        layout.addWidget(splitter, 1)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel_button)
        layout.addLayout(progress_row)
        layout.addWidget(self.status)

        controller.rows_changed.connect(self._rows_changed)
        self.model.layoutChanged.connect(self._rows_changed)  # sorted: the plot's row numbers change
        controller.rows_updated.connect(self._selection_changed)
        controller.message.connect(lambda level, text: self.status.setText(text))
        controller.progress.connect(self._progress)
        controller.busy_changed.connect(self._busy_changed)
        controller.column_choice_needed.connect(self._choose_column)

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
        points = [(r.properties["mw"], r.properties["logp"], i) for i, r in enumerate(self.controller.rows) if r.properties]
        self.scatter.setData([p[0] for p in points], [p[1] for p in points], data=[p[2] for p in points])
        self.selected_points.clear()
        self._selection_changed()

    def selected_rows(self) -> list[int]:
        rows = {self.proxy.mapToSource(i).row() for i in self.table.selectionModel().selectedRows()}
        return sorted(rows)

    def _selection_changed(self, *args) -> None:
        rows = self.selected_rows()
        chosen = [self.controller.rows[r] for r in rows if r < len(self.controller.rows)]
        self.selected_points.setData([r.properties["mw"] for r in chosen if r.properties],
                                     [r.properties["logp"] for r in chosen if r.properties])
        if not chosen:
            self.detail_picture.clear()
            self.detail_text.setHtml("")
            return
        row = rows[0]
        png = self.controller.depiction(row, 340, 240, highlight=True)
        pixmap = QPixmap()
        if png:
            pixmap.loadFromData(png, "PNG")
        self.detail_picture.setPixmap(pixmap)
        self.detail_text.setHtml(self._detail_html(chosen[0]))

    @staticmethod
    def _detail_html(item) -> str:
        parts = [f"<b>{item.id}</b><br><tt>{item.smiles}</tt>"]
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
            lines = []
            for key, value in item.predictions.items():
                flag = "in domain" if item.in_domain.get(key) else "<span style='color:#b00'>out of domain</span>"
                lines.append(f"{key}: <b>{value:.3f}</b> ({flag})")
            parts.append("<br>".join(lines))
            for model, near in item.neighbours.items():
                rows = "".join(
                    f"<li><tt>{n.smiles}</tt> sim {n.similarity:.2f}: "
                    + ", ".join(f"{k}={v:g}" for k, v in n.values.items() if v is not None) + "</li>"
                    for n in near
                )
                parts.append(f"Nearest training molecules ({model}):<ul>{rows}</ul>")
        if item.fields:
            parts.append("<br>".join(f"{k}: {v}" for k, v in list(item.fields.items())[:12]))
        return "<p>" + "</p><p>".join(parts) + "</p>"

    def _point_clicked(self, item, points, *args) -> None:
        if not points:
            return
        self.select_source_row(int(points[0].data()))

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
        query = self.search_query.text().strip()
        if not query:
            rows = self.selected_rows()
            if not rows:
                self.status.setText("Type a query or select a molecule first.")
                return
            query = self.controller.rows[rows[0]].smiles
        mode = self.search_mode.currentText()
        threshold = self.search_threshold.value() if mode == "similar" else None
        self.controller.search(query, mode=mode, library=library, threshold=threshold, top=100)

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
            rows = [self.proxy.mapToSource(self.proxy.index(i, 0)).row() for i in range(self.proxy.rowCount())]
            count = self.controller.export(Path(path), rows)
            self.status.setText(f"exported {count} molecules to {path}")

    def _choose_column(self, path, candidates: list) -> None:
        column, ok = QInputDialog.getItem(self, "Which column holds the SMILES?", f"{Path(path).name}:", candidates, 0, False)
        if ok and column:
            self.controller.open_paths([path], smiles_column=column)
