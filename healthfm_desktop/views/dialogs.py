"""Application dialogs: settings, self-test results, model cards, documents (licenses)."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QSpinBox,
    QTabWidget,
    QTextBrowser,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

PROVIDER_CHOICES = [
    ("Automatic (CUDA, then DirectML, then CPU)", "auto"),
    ("CPU", "CPUExecutionProvider"),
    ("CUDA (NVIDIA GPU)", "CUDAExecutionProvider"),
    ("DirectML (Windows GPU)", "DmlExecutionProvider"),
]


class SettingsDialog(QDialog):
    """Edits a dict of setting key -> string value. Extra pages can be added with add_page."""

    def __init__(self, values: dict[str, str], parent=None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.tabs = QTabWidget()

        general = QWidget()
        form = QFormLayout(general)
        self.provider = QComboBox()
        for text, key in PROVIDER_CHOICES:
            self.provider.addItem(text, key)
        index = self.provider.findData(values.get("inference/provider", "auto"))
        self.provider.setCurrentIndex(max(index, 0))
        form.addRow("Execution provider:", self.provider)
        self.quantized = QCheckBox("Use INT8-quantised models where shipped")
        self.quantized.setChecked(values.get("inference/quantized", "false") == "true")
        form.addRow("", self.quantized)
        self.ae_title = QLineEdit(values.get("dicom/ae_title", "HEALTHFM"))
        self.ae_title.setMaxLength(16)
        form.addRow("Own DICOM AE title:", self.ae_title)
        self.storage_port = QSpinBox()
        self.storage_port.setRange(1, 65535)
        self.storage_port.setValue(int(values.get("dicom/storage_port", "11112") or 11112))
        form.addRow("Own storage port:", self.storage_port)
        self.scp_bind = QLineEdit(values.get("dicom/scp_bind_address", "127.0.0.1") or "127.0.0.1")
        self.scp_bind.setToolTip("127.0.0.1: only this computer can send; 0.0.0.0: any network interface")
        form.addRow("Receive DICOM on address:", self.scp_bind)
        self.allowed_aets = QLineEdit(values.get("dicom/allowed_calling_aets", ""))
        self.allowed_aets.setPlaceholderText("any (e.g. MODALITY1, PACS)")
        self.allowed_aets.setToolTip("Only these calling AE titles may send images; empty: any")
        form.addRow("Accept images from AE titles:", self.allowed_aets)
        self.tabs.addTab(general, "General")

        compute = QWidget()
        compute_layout = QVBoxLayout(compute)
        compute_form = QFormLayout()
        self.scheduler = QLineEdit(values.get("compute/scheduler", ""))
        self.scheduler.setPlaceholderText("empty: this computer (e.g. tcp://10.0.0.1:8786)")
        compute_form.addRow("Dask scheduler:", self.scheduler)
        compute_layout.addLayout(compute_form)
        note = QLabel("With an address, the molecule panel's library searches and predictions run on that\n"
                      "Dask cluster's workers (same HealthFM version; index folders shared with them).\n"
                      "Empty: everything runs here, and nothing connects anywhere.")
        compute_layout.addWidget(note)
        compute_layout.addStretch(1)
        self.tabs.addTab(compute, "Compute")

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(buttons)

    def add_page(self, title: str, widget: QWidget) -> None:
        self.tabs.addTab(widget, title)

    def values(self) -> dict[str, str]:
        return {
            "inference/provider": self.provider.currentData(),
            "inference/quantized": "true" if self.quantized.isChecked() else "false",
            "dicom/ae_title": self.ae_title.text().strip() or "HEALTHFM",
            "dicom/storage_port": str(self.storage_port.value()),
            "dicom/scp_bind_address": self.scp_bind.text().strip() or "127.0.0.1",
            "dicom/allowed_calling_aets": ", ".join(t.strip().upper() for t in self.allowed_aets.text().replace(";", ",").split(",") if t.strip()),
            "compute/scheduler": self.scheduler.text().strip(),
        }


class SelfTestDialog(QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Self-test")
        self.resize(720, 420)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Result", "Check", "Detail"])
        self.tree.setRootIsDecorated(False)
        self.tree.addTopLevelItem(QTreeWidgetItem(["…", "running", "checks run on a worker"]))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tree)
        layout.addWidget(buttons)

    def show_results(self, results: list[tuple[bool, str, str]]) -> None:
        self.tree.clear()
        for ok, label, detail in results:
            self.tree.addTopLevelItem(QTreeWidgetItem(["ok" if ok else "FAIL", label, detail]))
        for column in range(2):
            self.tree.resizeColumnToContents(column)


class DocumentsDialog(QDialog):
    """A list of markdown documents (model cards, licenses) with the selected one shown."""

    def __init__(self, title: str, documents: list[tuple[str, str]], parent=None):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(900, 600)
        self.documents = documents
        self.names = QListWidget()
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(False)
        for name, _ in documents:
            self.names.addItem(name)
        self.names.currentRowChanged.connect(self._show)
        row = QHBoxLayout()
        row.addWidget(self.names, 1)
        row.addWidget(self.browser, 3)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(buttons)
        if documents:
            self.names.setCurrentRow(0)
        else:
            self.browser.setMarkdown("Nothing to show.")

    def _show(self, row: int) -> None:
        if 0 <= row < len(self.documents):
            self.browser.setMarkdown(self.documents[row][1])
