"""Molecules workspace (minimal foundation version: the compound files opened)."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QListWidget, QVBoxLayout, QWidget


class MoleculesWorkspace(QWidget):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.file_list = QListWidget()
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Drop SMILES, SDF, MOL or CSV files with a SMILES column here."))
        layout.addWidget(self.file_list)
        controller.files_opened.connect(lambda paths: [self.file_list.addItem(p.name) for p in paths])
