"""The one adaptation panel every workspace docks: label the chosen items, train a model on the
labels (progress, cancel, cross-validated metrics with 95 % CIs, label counts, reliability plot),
run a user model on the chosen items, export/import it, and find similar items with their labels."""

from __future__ import annotations

from collections.abc import Callable

import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from healthfm_desktop.views.models.training import TrainingControls, summary_lines

OUT_OF_DOMAIN = "withheld: unlike the items it was trained on"
#: where a find-similar neighbour came from, as the caption counts it and as its row is marked
SOURCE_NAMES = {"open": "open", "stored": "stored", "pacs": "PACS"}
SOURCE_MARKS = {"stored": "stored", "pacs": "PACS"}
#: find-similar's metrics as the panel names them
METRIC_NAMES = {"cosine": "cosine on the encoder's embedding", "tanimoto": "Tanimoto on Morgan bits"}


def _short(item_id: str, keep: int = 28) -> str:
    """A long id (a DICOM UID) shortened to its end for a caption, which cannot wrap inside it."""
    return item_id if len(item_id) <= keep else "…" + item_id[-keep:]


def _table(headers: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    table.horizontalHeader().setStretchLastSection(True)
    table.verticalHeader().setVisible(False)
    return table


class AdaptationPanel(QWidget):
    """``controller`` is a WorkspaceAdaptation; ``selected_ids()`` the ids the user has chosen;
    ``open_item(record)`` shows a neighbour the user clicked in the workspace."""

    def __init__(self, controller, selected_ids: Callable[[], list[str]],
                 columns: Callable[[], list[str]] | None = None, open_item: Callable[[dict], None] | None = None,
                 parent=None):
        super().__init__(parent)
        self.controller = controller
        self.selected_ids = selected_ids
        self.columns = columns  # the opened file's columns a label can come from
        self.open_item = open_item
        self.records: list[dict] = []
        self.similar_records: list[dict] = []
        self._similar_metric = "cosine"
        self.run_anyway = False
        noun = controller.workspace

        self.label_edit = QComboBox()
        self.label_edit.setEditable(True)
        self.label_edit.lineEdit().setPlaceholderText("label, e.g. malignant or 7.2")
        self.tag_button = QPushButton("Tag selected")
        self.tag_button.setToolTip(f"Give the selected {noun} this label (saved on this computer only)")
        self.tag_button.clicked.connect(self._tag)
        self.untag_button = QPushButton("Untag")
        self.untag_button.clicked.connect(lambda: controller.untag(self.selected_ids()))
        self.counts = QLabel("")
        self.counts.setWordWrap(True)
        label_row = QHBoxLayout()
        label_row.addWidget(self.label_edit, 1)
        label_row.addWidget(self.tag_button)
        label_row.addWidget(self.untag_button)
        label_box = QGroupBox(f"Label {noun}")
        label_layout = QVBoxLayout(label_box)
        label_layout.addLayout(label_row)
        self.label_column = QComboBox()
        self.label_column.setToolTip("Label every item with its value in this column of the opened file")
        self.column_button = QPushButton("Labels from column")
        self.column_button.clicked.connect(self._labels_from_column)
        if columns is not None:
            column_row = QHBoxLayout()
            column_row.addWidget(self.label_column, 1)
            column_row.addWidget(self.column_button)
            label_layout.addLayout(column_row)
        label_layout.addWidget(self.counts)

        self.training = TrainingControls(self._train, controller.cancel,
                                         f"Train a model on the labelled {noun} with the shipped {controller.kind} encoder.")
        t = self.training
        self.task, self.name, self.train_button, self.cancel_button = t.task, t.name, t.train_button, t.cancel_button
        self.progress, self.step, self.metrics = t.progress, t.step, t.metrics
        self.reliability = pg.PlotWidget()
        self.reliability.setMinimumHeight(120)
        self.reliability.setLabel("bottom", "confidence")
        self.reliability.setLabel("left", "accuracy")
        self.reliability.setXRange(0, 1)
        self.reliability.setYRange(0, 1)
        self._follow_palette()
        train_row = QHBoxLayout()
        train_row.addWidget(self.task)
        train_row.addWidget(self.name, 1)
        train_row.addWidget(self.train_button)
        train_row.addWidget(self.cancel_button)
        train_box = QGroupBox("Train on my labels")
        train_layout = QVBoxLayout(train_box)
        train_layout.addLayout(train_row)
        train_layout.addWidget(self.progress)
        train_layout.addWidget(self.step)
        train_layout.addWidget(self.metrics)
        train_layout.addWidget(self.reliability)

        self.model = QComboBox()
        self.model.setToolTip("Your own models for this workspace")
        self.run_button = QPushButton("Run on selected")
        self.run_button.clicked.connect(self._run)
        self.anyway_button = QPushButton("Run anyway")
        self.anyway_button.setToolTip("Show the answers withheld because the items are unlike the training items")
        self.anyway_button.setEnabled(False)
        self.anyway_button.clicked.connect(self._show_anyway)
        self.results = _table(["Id", "Answer", "Set / interval", "In domain"])
        self.export_button = QPushButton("Export…")
        self.export_button.clicked.connect(self._export)
        self.import_button = QPushButton("Import…")
        self.import_button.clicked.connect(self._import)
        run_row = QHBoxLayout()
        run_row.addWidget(self.model, 1)
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.anyway_button)
        # export / import on a row of their own: on one row the five made the panel 504 px wide,
        # wider than the side panels at 1280 px (a horizontal scroll bar, buttons cut off)
        file_row = QHBoxLayout()
        file_row.addStretch(1)
        file_row.addWidget(self.export_button)
        file_row.addWidget(self.import_button)
        run_box = QGroupBox("My models (user)")
        run_layout = QVBoxLayout(run_box)
        run_layout.addLayout(run_row)
        run_layout.addLayout(file_row)
        run_layout.addWidget(self.results)

        self.similar_button = QPushButton("Find similar")
        self.similar_button.setToolTip(f"The {noun} most like the selected one (the caption says what was searched)")
        self.similar_button.clicked.connect(self._similar)
        self.similar_caption = QLabel("")
        self.similar_caption.setWordWrap(True)
        self.similar_metric = QComboBox()
        for metric in controller.similarity_metrics:
            self.similar_metric.addItem(METRIC_NAMES[metric], metric)
        self.similar_metric.setToolTip(f"How the {noun} are compared")
        self.neighbours = _table(["Id", "Similarity", "Label"])
        if open_item is not None:
            self.neighbours.setToolTip(f"Click a row to show that one in the {noun}")
            self.neighbours.cellClicked.connect(self._open_neighbour)
        self.similar_box = similar_box = QGroupBox("Similar")
        similar_layout = QVBoxLayout(similar_box)
        similar_row = QHBoxLayout()
        similar_row.addWidget(self.similar_button)
        if len(controller.similarity_metrics) > 1:
            similar_row.addWidget(self.similar_metric)
        similar_layout.addLayout(similar_row)
        similar_layout.addWidget(self.similar_caption)
        similar_layout.addWidget(self.neighbours)

        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        for box in (label_box, train_box, run_box, similar_box):
            layout.addWidget(box)
        layout.addWidget(self.status)

        controller.labels_changed.connect(self.show_counts)
        controller.models_changed.connect(self.show_models)
        controller.progress.connect(self._on_progress)
        controller.trained.connect(self.show_summary)
        controller.predicted.connect(self.show_results)
        controller.similar_found.connect(self.show_similar)
        controller.failed.connect(self.status.setText)
        controller.exported.connect(lambda path: self.status.setText(f"Exported to {path}"))
        controller.imported.connect(lambda name: self.status.setText(f"Imported {name}"))
        controller.busy_changed.connect(self._on_busy)
        if controller.labels.load_problem:
            self.status.setText(controller.labels.load_problem)
        self.show_counts()
        controller.refresh()

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt API
        if event.type() == QEvent.Type.PaletteChange and hasattr(self, "reliability"):
            self._follow_palette()
        super().changeEvent(event)

    def _follow_palette(self) -> None:
        """The reliability plot in the workspace's colours: pyqtgraph's black would be a black
        box in the light Notes and Molecules workspaces (the Images one is dark)."""
        palette = self.palette()
        text = palette.color(QPalette.ColorRole.Text)
        self.reliability.setBackground(palette.color(QPalette.ColorRole.Base))
        for name in ("left", "bottom"):
            axis = self.reliability.getAxis(name)
            axis.setPen(pg.mkPen(text))
            axis.setTextPen(pg.mkPen(text))
        self.reliability.setTitle("Reliability (cross-validated)", color=text)

    # --- actions -----------------------------------------------------------------------------
    def _chosen(self) -> list[str] | None:
        ids = self.selected_ids()
        if not ids:
            self.status.setText(f"Select {self.controller.workspace} first.")
        return ids or None

    def _tag(self) -> None:
        ids = self._chosen()
        label = self.label_edit.currentText().strip()
        if ids and not label:
            self.status.setText("Type a label first.")
        elif ids:
            self.controller.tag(ids, label)
            self.status.setText(f"{len(ids)} labelled {label!r}")

    def refresh_columns(self) -> None:
        if self.columns is not None:
            current = self.label_column.currentText()
            self.label_column.clear()
            self.label_column.addItems(self.columns())
            if current:
                self.label_column.setCurrentText(current)

    def _labels_from_column(self) -> None:
        column = self.label_column.currentText()
        if column:
            count = self.controller.tag_from_column(column)
            self.status.setText(f"{count} labelled from the column {column!r}")

    def _train(self) -> None:
        name = self.name.text().strip()
        if not name:
            self.status.setText("Give the new model a name.")
            return
        self.progress.setValue(0)
        self.controller.train_labelled(name, self.task.currentText())

    def _run(self) -> None:
        ids = self._chosen()
        if not self.model.currentText():
            self.status.setText("Train or import a model first.")
        elif ids:
            self.controller.run_model(self.model.currentText(), ids)

    def _similar(self) -> None:
        ids = self._chosen()
        if ids:
            self._similar_metric = self.similar_metric.currentData() or "cosine"
            self.controller.find_similar(ids[0], metric=self._similar_metric)

    def _open_neighbour(self, row: int, _column: int) -> None:
        if self.open_item is not None and 0 <= row < len(self.similar_records):
            self.open_item(self.similar_records[row])

    def _export(self) -> None:
        name = self.model.currentText()
        if not name:
            self.status.setText("Choose the model to export.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export model", f"{name}.healthfm-model", "Models (*.healthfm-model)")
        if path:
            self.controller.export(name, path)

    def _import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import model", "", "Models (*.healthfm-model)")
        if path:
            self.controller.import_model(path)

    def _show_anyway(self) -> None:
        self.run_anyway = True
        self._fill_results()

    # --- results -----------------------------------------------------------------------------
    def show_counts(self) -> None:
        counts = self.controller.labels.counts()
        self.counts.setText(", ".join(f"{label}: {n}" for label, n in counts.items()) or "No labels yet.")
        known = {self.label_edit.itemText(i) for i in range(self.label_edit.count())}
        self.label_edit.addItems([label for label in counts if label not in known])

    def show_models(self, entries: list) -> None:
        current = self.model.currentText()
        self.model.clear()
        self.model.addItems(self.controller.user_models(entries))
        if current:
            self.model.setCurrentText(current)

    def _on_progress(self, fraction: float, step: str) -> None:
        self.training.show_progress(fraction, step)

    def show_summary(self, summary) -> None:
        fit = summary.fit
        self.metrics.setText("<br>".join(summary_lines(summary)))
        self.reliability.clear()
        self.reliability.plot([0, 1], [0, 1], pen=pg.mkPen((150, 150, 150), style=Qt.PenStyle.DashLine))
        if fit.reliability:
            centres = [(r["low"] + r["high"]) / 2 for r in fit.reliability]
            colour = self.palette().color(QPalette.ColorRole.Highlight)
            self.reliability.plot(centres, [r["accuracy"] for r in fit.reliability], symbol="o",
                                  pen=pg.mkPen(colour, width=2), symbolBrush=colour, symbolPen=None)
        self.name.clear()
        self.model.setCurrentText(summary.name)

    def show_results(self, records: list) -> None:
        self.records = list(records)
        self.run_anyway = False
        self._fill_results()

    def answer_text(self, record: dict) -> str:
        if "error" in record:
            return f"cannot be read: {record['error']}"
        if not record["in_domain"] and not self.run_anyway:
            return OUT_OF_DOMAIN
        if "label" in record:
            text = f"{record['label']} (p = {record['probabilities'][record['label']]:.2f})"
        else:
            text = f"{record['value']:.4g}"
        return text if record["in_domain"] else f"{text} — outside its domain, run anyway"

    def _fill_results(self) -> None:
        self.results.setRowCount(len(self.records))
        for row, record in enumerate(self.records):
            shown = "error" not in record and (record["in_domain"] or self.run_anyway)
            if not shown:
                spread = ""
            elif "label" in record:
                spread = ", ".join(record["prediction_set"])
            else:
                spread = "{:.4g} – {:.4g}".format(*record["interval"])
            domain = "" if "error" in record else ("yes" if record["in_domain"] else "no")
            for column, text in enumerate([record["id"], self.answer_text(record), spread, domain]):
                self.results.setItem(row, column, QTableWidgetItem(str(text)))
        self.anyway_button.setEnabled(not self.run_anyway and any(not r.get("in_domain", True) for r in self.records))
        self.results.resizeColumnsToContents()

    def show_similar(self, query_id: str, records: list) -> None:
        how = ("Tanimoto on the Morgan fingerprints" if self._similar_metric == "tanimoto"
               else f"cosine similarity of the {self.controller.kind} encoder's embeddings")
        searched = ", ".join(f"{count} {SOURCE_NAMES.get(name, name)}" for name, count in self.controller.searched.items())
        self.similar_caption.setText(f"Most like {_short(query_id)} ({how}); searched {searched} {self.controller.workspace}"
                                     + "".join(f". {note}" for note in self.controller.similar_scope()))
        # a wrapped label in a scroll area is given one line unless asked for its height
        caption = self.similar_caption
        caption.setMinimumHeight(max(caption.heightForWidth(max(caption.width(), 200)), caption.fontMetrics().lineSpacing()))
        self.similar_records = list(records)
        self.neighbours.setRowCount(len(records))
        for row, record in enumerate(records):
            shown_id = f"{record['id']} ({SOURCE_MARKS.get(record['source'], record['source'])})" \
                if record.get("source") else record["id"]
            for column, text in enumerate([shown_id, f"{record['score']:.3f}", record.get("label", "")]):
                self.neighbours.setItem(row, column, QTableWidgetItem(text))
        self.neighbours.resizeColumnsToContents()
        area = self.parentWidget()
        while area is not None and not isinstance(area, QScrollArea):
            area = area.parentWidget()
        if area is not None:  # the neighbours are what the user asked for: scroll down to them
            bar = area.verticalScrollBar()
            bar.setValue(min(bar.maximum(), self.similar_box.mapTo(area.widget(), self.similar_box.rect().topLeft()).y()))

    def _on_busy(self, busy: bool) -> None:
        self.training.set_busy(busy)


def scrolling(panel: AdaptationPanel) -> QScrollArea:
    """The panel in a scroll area, so a workspace keeps its own minimum size."""
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setWidget(panel)
    return area
