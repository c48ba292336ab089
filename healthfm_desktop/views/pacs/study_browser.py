"""The local study browser: every study in the local database (imported, dropped, retrieved or
received), searchable; open in the viewer, send to a peer, check the files are still there."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

COLUMNS = ["Patient", "Patient ID", "Date", "Modalities", "Description", "Series", "Images"]
MODALITIES = ["", "CT", "MR", "CR", "DX", "US", "NM", "PT", "XA", "MG", "OT", "SR", "SEG"]
UID_ROLE = Qt.ItemDataRole.UserRole


class StudyBrowser(QWidget):
    search_requested = Signal(str, str)  # text, modality
    open_requested = Signal(str)  # study uid
    send_requested = Signal(dict, str)  # peer, study uid
    verify_requested = Signal(str)  # study uid ("" = all)
    remove_requested = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("studyBrowser")
        self._peers: list[dict] = []
        self.search = QLineEdit()
        self.search.setObjectName("studySearch")
        self.search.setPlaceholderText("Search patient, ID, description, accession…")
        self.search.setClearButtonEnabled(True)
        self.modality = QComboBox()
        self.modality.addItems(MODALITIES)
        # search as the user types, but once per pause rather than per key
        self._debounce = QTimer(self, singleShot=True, interval=250)
        self._debounce.timeout.connect(self._emit_search)
        self.search.textChanged.connect(lambda _: self._debounce.start())
        self.modality.currentTextChanged.connect(lambda _: self._debounce.start())

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("studyTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().hide()
        self.table.setSortingEnabled(True)
        self.table.itemDoubleClicked.connect(lambda *_: self._open())

        self.open_button = QPushButton("Open")
        self.send_button = QPushButton("Send to…")
        self.verify_button = QPushButton("Verify files")
        self.remove_button = QPushButton("Forget")
        self.open_button.clicked.connect(self._open)
        self.send_button.clicked.connect(self._send)
        self.verify_button.clicked.connect(lambda: self.verify_requested.emit(self.selected_study() or ""))
        self.remove_button.clicked.connect(self._remove)
        self.status = QLabel("")
        self.status.setObjectName("browserStatus")
        self.status.setWordWrap(True)

        top = QHBoxLayout()
        top.addWidget(self.search, 1)
        top.addWidget(self.modality)
        buttons = QHBoxLayout()
        for button in (self.open_button, self.send_button, self.verify_button, self.remove_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.status)

    def set_peers(self, peers: list[dict]) -> None:
        self._peers = list(peers)

    def show_studies(self, studies: list[dict]) -> None:
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(studies))
        for row, study in enumerate(studies):
            date = study["study_date"]
            values = [study["patient_name"], study["patient_id"],
                      f"{date[:4]}-{date[4:6]}-{date[6:8]}" if len(date) == 8 and date.isdigit() else date,
                      ", ".join(study["modalities"]), study["description"], str(study["series"]),
                      str(study["instances"])]
            for column, value in enumerate(values):
                item = QTableWidgetItem(value)
                item.setData(UID_ROLE, study["study_uid"])
                self.table.setItem(row, column, item)
        self.table.setSortingEnabled(True)
        self.status.setText(f"{len(studies)} {'study' if len(studies) == 1 else 'studies'} in the local database")

    def show_problems(self, problems: list) -> None:
        if not problems:
            self.status.setText("All files are present and readable.")
        else:
            lines = [f"{path}: {reason}" for path, reason in problems[:5]]
            more = f"\n… and {len(problems) - 5} more" if len(problems) > 5 else ""
            self.status.setText(f"{len(problems)} file problem(s):\n" + "\n".join(lines) + more)

    def selected_study(self) -> str | None:
        items = self.table.selectedItems()
        return items[0].data(UID_ROLE) if items else None

    def _emit_search(self) -> None:
        self.search_requested.emit(self.search.text(), self.modality.currentText())

    def _open(self) -> None:
        uid = self.selected_study()
        if uid:
            self.open_requested.emit(uid)

    def _send(self) -> None:
        uid = self.selected_study()
        if not uid:
            return
        if not self._peers:
            self.status.setText("No peers yet: add one in Settings ▸ PACS.")
            return
        labels = [f"{p['ae_title']} @ {p['host']}:{p['port']}" for p in self._peers]
        label, ok = QInputDialog.getItem(self, "Send study", "Send to:", labels, 0, False)
        if ok:
            self.send_requested.emit(self._peers[labels.index(label)], uid)

    def _remove(self) -> None:
        uid = self.selected_study()
        if uid:
            self.remove_requested.emit(uid)


def connect_study_browser(browser: StudyBrowser, controller) -> None:
    browser.search_requested.connect(controller.search_local)
    browser.open_requested.connect(controller.open_local_study)
    browser.send_requested.connect(controller.send_study)
    browser.verify_requested.connect(lambda uid: controller.verify_local(uid or None))
    browser.remove_requested.connect(controller.remove_local_study)
    controller.local_studies.connect(browser.show_studies)
    controller.local_problems.connect(browser.show_problems)
    controller.peers_changed.connect(browser.set_peers)
    controller.send_finished.connect(lambda ok, text: browser.status.setText(text))
    browser.set_peers(controller.peers())
