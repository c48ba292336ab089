"""Images workspace (minimal foundation version: lists the DICOM files it received)."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QListWidget, QVBoxLayout, QWidget


class ImagesWorkspace(QWidget):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.summary = QLabel("Drop DICOM files, folders, zip archives or a DICOMDIR here.")
        self.file_list = QListWidget()
        self.rejected_list = QListWidget()
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.file_list, 3)
        layout.addWidget(QLabel("Files that could not be read:"))
        layout.addWidget(self.rejected_list, 1)
        controller.files_opened.connect(self._show_files)
        controller.files_rejected.connect(self._show_rejected)

    def _show_files(self, paths) -> None:
        for path in paths:
            self.file_list.addItem(path.name)
        self.summary.setText(f"{self.file_list.count()} item(s) opened")

    def _show_rejected(self, rejected) -> None:
        for path, reason in rejected:
            self.rejected_list.addItem(f"{path.name}: {reason}")
