"""Query/retrieve dialog: study-level search of a peer (patient id/name with wildcards,
modality, date range, accession), results that expand to their series, and retrieval of a
study or series by C-GET or C-MOVE with per-instance progress and Cancel."""

from __future__ import annotations

from PySide6.QtCore import QDate, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
)

MODALITIES = ["", "CT", "MR", "CR", "DX", "US", "NM", "PT", "XA", "MG", "OT", "SR", "SEG"]
COLUMNS = ["Patient", "Patient ID", "Date", "Modalities", "Description", "Series", "Instances"]
UID_ROLE = Qt.ItemDataRole.UserRole
KIND_ROLE = Qt.ItemDataRole.UserRole + 1


def _date(text: str) -> str:
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) == 8 and text.isdigit() else text


class QueryRetrieveDialog(QDialog):
    search_requested = Signal(dict, dict)  # peer, query
    series_requested = Signal(dict, str)  # peer, study uid
    retrieve_requested = Signal(dict, str, str, str)  # peer, study uid, series uid ("" = study), method
    cancel_requested = Signal()

    def __init__(self, peers: list[dict], parent=None):
        super().__init__(parent)
        self.setWindowTitle("PACS query/retrieve")
        self.resize(980, 620)
        self.peer_box = QComboBox()
        self.peer_box.setObjectName("peerBox")
        self.status = QLabel("Choose a peer and search.")
        self.status.setObjectName("status")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.set_peers(peers)

        self.patient_id = QLineEdit()
        self.patient_name = QLineEdit()
        self.patient_name.setPlaceholderText("e.g. DOE^J*  (* and ? are wildcards)")
        self.modality = QComboBox()
        self.modality.addItems(MODALITIES)
        self.accession = QLineEdit()
        self.use_dates = QCheckBox("Study date from")
        self.date_from = QDateEdit(QDate.currentDate().addYears(-1))
        self.date_to = QDateEdit(QDate.currentDate())
        for edit in (self.date_from, self.date_to):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd")
            edit.setEnabled(False)
        self.use_dates.toggled.connect(self.date_from.setEnabled)
        self.use_dates.toggled.connect(self.date_to.setEnabled)
        self.search_button = QPushButton("Search")
        self.search_button.setObjectName("searchButton")
        self.search_button.setDefault(True)
        self.search_button.clicked.connect(self._search)

        form = QFormLayout()
        form.addRow("Peer:", self.peer_box)
        row = QHBoxLayout()
        row.addWidget(QLabel("Patient ID:"))
        row.addWidget(self.patient_id)
        row.addWidget(QLabel("Name:"))
        row.addWidget(self.patient_name, 2)
        row.addWidget(QLabel("Modality:"))
        row.addWidget(self.modality)
        form.addRow(row)
        row = QHBoxLayout()
        row.addWidget(self.use_dates)
        row.addWidget(self.date_from)
        row.addWidget(QLabel("to"))
        row.addWidget(self.date_to)
        row.addWidget(QLabel("Accession:"))
        row.addWidget(self.accession)
        row.addStretch(1)
        row.addWidget(self.search_button)
        form.addRow(row)

        self.results = QTreeWidget()
        self.results.setObjectName("results")
        self.results.setHeaderLabels(COLUMNS)
        self.results.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.results.header().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.results.setColumnWidth(0, 180)
        self.results.setColumnWidth(4, 260)
        self.results.itemExpanded.connect(self._expanded)
        self.results.itemSelectionChanged.connect(self._selection_changed)
        self.results.itemDoubleClicked.connect(lambda *_: self._retrieve())

        self.use_get = QRadioButton("C-GET")
        self.use_get.setChecked(True)
        self.use_move = QRadioButton("C-MOVE to this app")
        self.retrieve_button = QPushButton("Retrieve")
        self.retrieve_button.setObjectName("retrieveButton")
        self.retrieve_button.setEnabled(False)
        self.retrieve_button.clicked.connect(self._retrieve)
        self.cancel_button = QPushButton("Cancel retrieval")
        self.cancel_button.setObjectName("cancelButton")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)

        actions = QHBoxLayout()
        actions.addWidget(self.use_get)
        actions.addWidget(self.use_move)
        actions.addStretch(1)
        actions.addWidget(self.retrieve_button)
        actions.addWidget(self.cancel_button)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.results, 1)
        layout.addLayout(actions)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)

    # --- from the controller --------------------------------------------------------------
    def set_peers(self, peers: list[dict]) -> None:
        current = self.peer_box.currentText()
        self.peer_box.clear()
        for peer in peers:
            label = f"{peer['ae_title']} @ {peer['host']}:{peer['port']}"
            if peer.get("description"):
                label += f" — {peer['description']}"
            self.peer_box.addItem(label, peer)
        index = self.peer_box.findText(current)
        if index >= 0:
            self.peer_box.setCurrentIndex(index)
        if not peers:
            self.status.setText("No peers yet: add one in Settings ▸ PACS.")

    def show_studies(self, studies: list[dict]) -> None:
        self.search_button.setEnabled(True)
        self.results.clear()
        for study in studies:
            item = QTreeWidgetItem([
                study["patient_name"], study["patient_id"], _date(study["study_date"]),
                ", ".join(study["modalities"]), study["description"],
                "" if study["series"] is None else str(study["series"]),
                "" if study["instances"] is None else str(study["instances"]),
            ])
            item.setData(0, UID_ROLE, study["study_uid"])
            item.setData(0, KIND_ROLE, "study")
            item.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.ShowIndicator)
            self.results.addTopLevelItem(item)
        self.status.setText(f"{len(studies)} {'study' if len(studies) == 1 else 'studies'} found.")

    def show_series(self, study_uid: str, series: list[dict]) -> None:
        for index in range(self.results.topLevelItemCount()):
            item = self.results.topLevelItem(index)
            if item.data(0, UID_ROLE) != study_uid:
                continue
            item.takeChildren()
            for entry in series:
                label = f"Series {entry['number']}" if entry["number"] is not None else "Series"
                child = QTreeWidgetItem([label, "", "", entry["modality"], entry["description"], "",
                                         "" if entry["instances"] is None else str(entry["instances"])])
                child.setData(0, UID_ROLE, entry["series_uid"])
                child.setData(0, KIND_ROLE, "series")
                item.addChild(child)
            item.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.DontShowIndicatorWhenChildless)

    def show_failure(self, text: str) -> None:
        self.search_button.setEnabled(True)
        self.status.setText(text)
        self.status.setStyleSheet("color: #b00020;")

    def show_progress(self, fraction, message: str) -> None:
        if fraction is None:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * fraction))
        self.status.setStyleSheet("")
        self.status.setText(message)

    def retrieval_finished(self, ok: bool, text: str) -> None:
        self.progress.setRange(0, 1000)
        self.progress.setValue(1000 if ok else self.progress.value())
        self.cancel_button.setEnabled(False)
        self.retrieve_button.setEnabled(bool(self.results.selectedItems()))
        self.status.setStyleSheet("" if ok else "color: #b00020;")
        self.status.setText(text + (" — opening in Images." if ok else ""))

    # --- intents --------------------------------------------------------------------------
    def current_peer(self) -> dict | None:
        return self.peer_box.currentData()

    def query(self) -> dict:
        dates = ""
        if self.use_dates.isChecked():
            dates = f"{self.date_from.date().toString('yyyyMMdd')}-{self.date_to.date().toString('yyyyMMdd')}"
        return {
            "patient_id": self.patient_id.text().strip(),
            "patient_name": self.patient_name.text().strip(),
            "modality": self.modality.currentText(),
            "study_date": dates,
            "accession_number": self.accession.text().strip(),
        }

    def _search(self) -> None:
        peer = self.current_peer()
        if peer is None:
            self.show_failure("No peer chosen: add one in Settings ▸ PACS.")
            return
        self.search_button.setEnabled(False)
        self.status.setStyleSheet("")
        self.status.setText("Searching…")
        self.search_requested.emit(peer, self.query())

    def _expanded(self, item: QTreeWidgetItem) -> None:
        if item.data(0, KIND_ROLE) == "study" and item.childCount() == 0 and self.current_peer():
            self.series_requested.emit(self.current_peer(), item.data(0, UID_ROLE))

    def _selection_changed(self) -> None:
        self.retrieve_button.setEnabled(bool(self.results.selectedItems()) and not self.cancel_button.isEnabled())

    def _retrieve(self) -> None:
        items = self.results.selectedItems()
        peer = self.current_peer()
        if not items or peer is None or self.cancel_button.isEnabled():
            return
        item = items[0]
        if item.data(0, KIND_ROLE) == "series":
            study_uid, series_uid = item.parent().data(0, UID_ROLE), item.data(0, UID_ROLE)
        else:
            study_uid, series_uid = item.data(0, UID_ROLE), ""
        self.retrieve_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.status.setStyleSheet("")
        self.status.setText("Retrieving…")
        self.retrieve_requested.emit(peer, study_uid, series_uid, "C-MOVE" if self.use_move.isChecked() else "C-GET")


def connect_query_dialog(dialog: QueryRetrieveDialog, controller) -> None:
    dialog.search_requested.connect(controller.find)
    dialog.series_requested.connect(controller.find_series)
    dialog.retrieve_requested.connect(controller.retrieve)
    dialog.cancel_requested.connect(controller.cancel_retrieve)
    controller.studies_found.connect(dialog.show_studies)
    controller.series_found.connect(dialog.show_series)
    controller.query_failed.connect(dialog.show_failure)
    controller.retrieve_progress.connect(dialog.show_progress)
    controller.retrieve_finished.connect(dialog.retrieval_finished)
    controller.peers_changed.connect(dialog.set_peers)
