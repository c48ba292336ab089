"""Export > Series as de-identified DICOM: where to, the profile and its options (dates kept
shifted by default: blanked only when asked), and the folder layout."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

PROFILES = ("Basic profile (DICOM PS3.15 Annex E)",)
LAYOUTS = (("Patient / Study / Series folders", True), ("All files in one folder", False))


class DeidExportDialog(QDialog):
    def __init__(self, parent: QWidget | None = None, folder: str = ""):
        super().__init__(parent)
        self.setWindowTitle("Export de-identified DICOM")
        self.folder_edit = QLineEdit(folder)
        self.folder_edit.setObjectName("exportFolder")
        self.folder_edit.setPlaceholderText("Folder to write into")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(browse)
        self.profile = QComboBox()
        self.profile.addItems(PROFILES)
        self.shift_dates = QCheckBox("Keep dates, shifted back by one offset for the whole export")
        self.shift_dates.setChecked(True)
        self.shift_dates.setToolTip("PS3.15 Retain Longitudinal Temporal Information with Modified Dates Option: "
                                    "intervals between studies stay true; the birth date is removed. "
                                    "Off: dates are emptied or removed.")
        self.keep_descriptions = QCheckBox("Keep study and series descriptions as written")
        self.keep_descriptions.setToolTip("Descriptions can hold names or IDs typed by staff: check them before sharing.")
        self.layout_choice = QComboBox()
        for label, folders in LAYOUTS:
            self.layout_choice.addItem(label, folders)
        form = QFormLayout()
        form.addRow("Folder", folder_row)
        form.addRow("Profile", self.profile)
        form.addRow("Dates", self.shift_dates)
        form.addRow("Descriptions", self.keep_descriptions)
        form.addRow("Layout", self.layout_choice)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        self.buttons.accepted.connect(self._accept_if_ready)
        self.buttons.rejected.connect(self.reject)
        self.folder_edit.textChanged.connect(self._update_ok)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.buttons)
        self._update_ok()

    def choices(self) -> dict:
        """What the user chose, as plain values for the controller."""
        return {"folder": self.folder_edit.text().strip(), "shift_dates": self.shift_dates.isChecked(),
                "keep_descriptions": self.keep_descriptions.isChecked(),
                "folders": bool(self.layout_choice.currentData())}

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export de-identified DICOM to folder", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)

    def _update_ok(self) -> None:
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(bool(self.folder_edit.text().strip()))

    def _accept_if_ready(self) -> None:
        if self.folder_edit.text().strip():
            self.accept()
