"""Models window: every model the registry sees (shipped and the user's, with its check), a
Train panel (kind, labelled file, label column, task, name -> progress, cancel, cross-validated
metrics with 95 % CIs, label counts, reliability), a Run panel for user models, Export/Import."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from healthfm_desktop.views.models.training import TrainingControls, summary_lines

MODEL_COLUMNS = ("name", "version", "task", "source", "valid")


class ModelsDialog(QDialog):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.setWindowTitle("Models")
        self.resize(900, 680)
        self.models = QTableWidget(0, len(MODEL_COLUMNS))
        self.models.setHorizontalHeaderLabels([c.capitalize() for c in MODEL_COLUMNS])
        self.models.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.models.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.models.horizontalHeader().setStretchLastSection(True)

        self.kind = QComboBox()
        self.kind.addItems(["image", "text", "molecule"])
        self.data = QLineEdit()
        self.data.setPlaceholderText("image CSV path,label · text JSONL id,text,label · molecule CSV smiles,label")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_data)
        data_row = QHBoxLayout()
        data_row.addWidget(self.data, 1)
        data_row.addWidget(browse)
        self.label_column = QLineEdit("label")
        self.training = TrainingControls(self._train, controller.cancel,
                                         "Train a head on the shipped encoder of a kind with your own labels.")
        tc = self.training
        self.task, self.name, self.train_button, self.cancel_button = tc.task, tc.name, tc.train_button, tc.cancel_button
        self.progress, self.step, self.metrics = tc.progress, tc.step, tc.metrics
        form = QFormLayout()
        form.addRow("Kind", self.kind)
        form.addRow("Labelled file", data_row)
        form.addRow("Label column", self.label_column)
        form.addRow("Task", self.task)
        form.addRow("Name", self.name)
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.progress, 1)
        train_box = QGroupBox("Train on my labels")
        train_layout = QVBoxLayout(train_box)
        train_layout.addLayout(form)
        train_layout.addLayout(buttons)
        train_layout.addWidget(self.step)
        train_layout.addWidget(self.metrics)

        self.run_paths = QLineEdit()
        self.run_paths.setPlaceholderText("files to run the selected user model on (separated by ';')")
        self.run_button = QPushButton("Run selected model")
        self.run_button.clicked.connect(self._run)
        self.results = QTableWidget(0, 4)
        self.results.setHorizontalHeaderLabels(["Id", "Answer", "Set / interval", "In domain"])
        self.results.horizontalHeader().setStretchLastSection(True)
        run_box = QGroupBox("Run")
        run_layout = QVBoxLayout(run_box)
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_paths, 1)
        run_row.addWidget(self.run_button)
        run_layout.addLayout(run_row)
        run_layout.addWidget(self.results)

        self.export_button = QPushButton("Export selected…")
        self.export_button.clicked.connect(self._export)
        self.import_button = QPushButton("Import…")
        self.import_button.clicked.connect(self._import)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        bottom = QHBoxLayout()
        bottom.addWidget(self.export_button)
        bottom.addWidget(self.import_button)
        bottom.addWidget(self.status, 1)

        layout = QVBoxLayout(self)
        layout.addWidget(self.models, 2)
        layout.addWidget(train_box)
        layout.addWidget(run_box, 2)
        layout.addLayout(bottom)

        controller.models_changed.connect(self.show_models)
        controller.progress.connect(self._on_progress)
        controller.trained.connect(self.show_summary)
        controller.predicted.connect(self.show_results)
        controller.failed.connect(self._on_failed)
        controller.exported.connect(lambda path: self.status.setText(f"Exported to {path}"))
        controller.imported.connect(lambda name: self.status.setText(f"Imported {name}"))
        controller.busy_changed.connect(self._on_busy)
        controller.refresh()

    # --- inputs ------------------------------------------------------------------------------
    def _browse_data(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Labelled file", "", "Label files (*.csv *.jsonl *.csv.gz);;All files (*)")
        if path:
            self.data.setText(path)

    def selected_model(self) -> str | None:
        rows = self.models.selectionModel().selectedRows()
        return self.models.item(rows[0].row(), 0).text() if rows else None

    def _train(self) -> None:
        if not self.data.text().strip() or not self.name.text().strip():
            self._on_failed("Choose a labelled file and a name for the new model.")
            return
        self.progress.setValue(0)
        self.controller.train(self.kind.currentText(), self.data.text().strip(), self.name.text().strip(),
                              self.task.currentText(), self.label_column.text().strip() or "label")
        self.cancel_button.setEnabled(True)

    def _run(self) -> None:
        name = self.selected_model()
        paths = [p.strip() for p in self.run_paths.text().split(";") if p.strip()]
        if not name or not paths:
            self._on_failed("Select a user model in the list and give files to run it on.")
            return
        self.controller.predict(name, paths)

    def _export(self) -> None:
        name = self.selected_model()
        if not name:
            self._on_failed("Select the model to export.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export model", f"{name}.healthfm-model", "Models (*.healthfm-model)")
        if path:
            self.controller.export(name, path)

    def _import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import model", "", "Models (*.healthfm-model)")
        if path:
            self.controller.import_model(path)

    # --- results -----------------------------------------------------------------------------
    def show_models(self, entries: list) -> None:
        self.models.setRowCount(len(entries))
        for row, entry in enumerate(entries):
            for column, key in enumerate(MODEL_COLUMNS):
                value = entry[key]
                text = ("ok" if value else "unusable") if key == "valid" else ("" if value is None else str(value))
                item = QTableWidgetItem(text)
                if entry["error"]:
                    item.setToolTip(entry["error"])
                self.models.setItem(row, column, item)
        self.models.resizeColumnsToContents()

    def _on_progress(self, fraction: float, step: str) -> None:
        self.training.show_progress(fraction, step)

    def show_summary(self, summary) -> None:
        reliability = " · ".join(f"{r['low']:.1f}–{r['high']:.1f}: {r['accuracy']:.2f} of {r['count']}"
                                 for r in summary.fit.reliability)
        lines = summary_lines(summary, f"{summary.kind} items")
        if reliability:
            lines.append(f"Reliability (confidence bin: accuracy of items): {reliability}")
        self.metrics.setText("<br>".join(lines))
        self.name.clear()

    def show_results(self, records: list) -> None:
        self.results.setRowCount(len(records))
        for row, record in enumerate(records):
            if "error" in record:
                cells = [record["id"], f"cannot be read: {record['error']}", "", ""]
            elif "label" in record:
                p = record["probabilities"][record["label"]]
                cells = [record["id"], f"{record['label']} (p = {p:.2f})", ", ".join(record["prediction_set"]),
                         "yes" if record["in_domain"] else "no — unlike the training items"]
            else:
                low, high = record["interval"]
                cells = [record["id"], f"{record['value']:.4g}", f"{low:.4g} – {high:.4g}",
                         "yes" if record["in_domain"] else "no — unlike the training items"]
            for column, text in enumerate(cells):
                self.results.setItem(row, column, QTableWidgetItem(str(text)))
        self.results.resizeColumnsToContents()

    def _on_failed(self, message: str) -> None:
        self.status.setText(message)

    def _on_busy(self, busy: bool) -> None:
        self.training.set_busy(busy)
