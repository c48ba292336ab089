"""Settings page for DICOM peers (AE title, host, port, description, TLS), "Test connection"
(C-ECHO with round-trip time) and the storage SCP switch."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

COLUMNS = ["AE title", "Host", "Port", "Description", "TLS"]


class PeersPage(QWidget):
    """Edits the peer list; emits intents, the controller validates and saves."""

    save_requested = Signal(list)  # [peer dict]
    test_requested = Signal(dict)
    scp_toggled = Signal(bool)

    def __init__(self, peers: list[dict], own_ae: str, storage_port: int, scp_running: bool, parent=None):
        super().__init__(parent)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("peersTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.itemSelectionChanged.connect(self._show_selected)

        editor = QGroupBox("Peer")
        form = QFormLayout(editor)
        self.ae_title = QLineEdit()
        self.ae_title.setMaxLength(16)
        self.host = QLineEdit()
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(104)
        self.description = QLineEdit()
        self.tls = QCheckBox("Use TLS (DICOM over TLS)")
        self.tls_ca = QLineEdit()
        self.tls_ca.setPlaceholderText("CA certificate (PEM); empty: system store")
        ca_row = QHBoxLayout()
        ca_row.addWidget(self.tls_ca)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_ca)
        ca_row.addWidget(browse)
        self.tls_cert = QLineEdit()
        self.tls_cert.setPlaceholderText("client certificate (PEM), if the peer requires one")
        self.tls_key = QLineEdit()
        self.tls_key.setPlaceholderText("client private key (PEM)")
        form.addRow("AE title:", self.ae_title)
        form.addRow("Host:", self.host)
        form.addRow("Port:", self.port)
        form.addRow("Description:", self.description)
        form.addRow("", self.tls)
        form.addRow("CA file:", ca_row)
        form.addRow("Client certificate:", self.tls_cert)
        form.addRow("Client key:", self.tls_key)

        buttons = QHBoxLayout()
        self.add_button = QPushButton("Add")
        self.update_button = QPushButton("Update")
        self.remove_button = QPushButton("Remove")
        self.test_button = QPushButton("Test connection")
        self.test_button.setObjectName("testConnection")
        for button in (self.add_button, self.update_button, self.remove_button, self.test_button):
            buttons.addWidget(button)
        self.add_button.clicked.connect(self._add)
        self.update_button.clicked.connect(self._update)
        self.remove_button.clicked.connect(self._remove)
        self.test_button.clicked.connect(lambda: self.test_requested.emit(self.editor_peer()))
        self.test_result = QLabel("")
        self.test_result.setObjectName("testResult")
        self.test_result.setWordWrap(True)
        self.test_result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        scp_box = QGroupBox("Receiving (C-STORE SCP)")
        scp_layout = QVBoxLayout(scp_box)
        self.scp_check = QCheckBox(f"Accept images sent to {own_ae} on port {storage_port} while the app is open")
        self.scp_check.setObjectName("scpCheck")
        self.scp_check.setChecked(scp_running)
        self.scp_check.toggled.connect(self.scp_toggled)
        self.scp_state = QLabel("Receiving" if scp_running else "Not receiving (off by default)")
        scp_layout.addWidget(self.scp_check)
        scp_layout.addWidget(self.scp_state)
        note = QLabel("Own AE title and storage port are on the General page. Peers must know this "
                      "AE title, host and port to answer queries and to send by C-MOVE.")
        note.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(editor)
        layout.addLayout(buttons)
        layout.addWidget(self.test_result)
        layout.addWidget(scp_box)
        layout.addWidget(note)
        self.set_peers(peers)

    # --- state from the controller ------------------------------------------------------
    def set_peers(self, peers: list[dict]) -> None:
        self._peers = [dict(p) for p in peers]
        self.table.setRowCount(len(self._peers))
        for row, peer in enumerate(self._peers):
            values = [peer["ae_title"], peer["host"], str(peer["port"]), peer.get("description", ""),
                      "yes" if peer.get("tls") else ""]
            for column, value in enumerate(values):
                self.table.setItem(row, column, QTableWidgetItem(value))

    def show_test_result(self, ok: bool, text: str) -> None:
        self.test_button.setEnabled(True)
        self.test_result.setText(("✔ " if ok else "✘ ") + text)
        self.test_result.setStyleSheet("color: #1b7f3b;" if ok else "color: #b00020;")

    def show_scp_state(self, running: bool, text: str) -> None:
        self.scp_check.blockSignals(True)
        self.scp_check.setChecked(running)
        self.scp_check.blockSignals(False)
        self.scp_state.setText(text)

    # --- editing --------------------------------------------------------------------------
    def editor_peer(self) -> dict:
        return {
            "ae_title": self.ae_title.text().strip(),
            "host": self.host.text().strip(),
            "port": self.port.value(),
            "description": self.description.text().strip(),
            "tls": self.tls.isChecked(),
            "tls_ca_file": self.tls_ca.text().strip(),
            "tls_cert_file": self.tls_cert.text().strip(),
            "tls_key_file": self.tls_key.text().strip(),
        }

    def _selected_row(self) -> int:
        rows = self.table.selectionModel().selectedRows()
        return rows[0].row() if rows else -1

    def _show_selected(self) -> None:
        row = self._selected_row()
        if row < 0:
            return
        peer = self._peers[row]
        self.ae_title.setText(peer["ae_title"])
        self.host.setText(peer["host"])
        self.port.setValue(int(peer["port"]))
        self.description.setText(peer.get("description", ""))
        self.tls.setChecked(bool(peer.get("tls")))
        self.tls_ca.setText(peer.get("tls_ca_file", ""))
        self.tls_cert.setText(peer.get("tls_cert_file", ""))
        self.tls_key.setText(peer.get("tls_key_file", ""))

    def _add(self) -> None:
        self.save_requested.emit(self._peers + [self.editor_peer()])

    def _update(self) -> None:
        row = self._selected_row()
        if row >= 0:
            peers = list(self._peers)
            peers[row] = self.editor_peer()
            self.save_requested.emit(peers)

    def _remove(self) -> None:
        row = self._selected_row()
        if row >= 0:
            self.save_requested.emit(self._peers[:row] + self._peers[row + 1:])

    def _browse_ca(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "CA certificate", filter="PEM files (*.pem *.crt);;All files (*)")
        if path:
            self.tls_ca.setText(path)


def connect_peers_page(page: PeersPage, controller) -> None:
    """Wire the page to a PacsController (intents in, results out)."""
    page.save_requested.connect(controller.save_peers)
    controller.peers_changed.connect(page.set_peers)

    def test(peer: dict) -> None:
        page.test_button.setEnabled(False)
        page.test_result.setText("Testing…")
        controller.test_connection(peer)

    page.test_requested.connect(test)
    controller.echo_finished.connect(page.show_test_result)
    page.scp_toggled.connect(lambda on: controller.start_storage_scp() if on else controller.stop_storage_scp())
    controller.scp_state_changed.connect(page.show_scp_state)
