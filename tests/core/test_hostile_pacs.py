"""Hostile peers (issue 18, cases 5, 8 and 10): a peer trickling random bytes, a second object
with a known SOP Instance UID under another study, calling/called AE checks, a flood of idle
connections from one host, and `healthfm pacs listen` to its contract. Loopback only."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from healthfm_desktop.core.imaging.pacs import (
    AssociationRejectedError,
    DicomPeer,
    PeerTimeoutError,
    StorageSCP,
    Timeouts,
    echo,
)
from healthfm_desktop.core.imaging.pacs.storage_scp import MAX_CONNECTIONS_PER_HOST, STATUS_DUPLICATE_SOP_INSTANCE
from healthfm_desktop.core.storage.studies import StudyDatabase
from tests.orthanc import free_port

REPO = Path(__file__).resolve().parents[2]
CT_SMALL = REPO / "tests" / "data" / "dicom" / "single" / "CT_small.dcm"
FAST = Timeouts(connect=1, acse=2, dimse=5, network=5)


class TricklingPeer:
    """Answers an association request with the header of a 2 GiB A-ASSOCIATE-AC PDU, then one
    random byte every 0.2 s, forever: every pynetdicom idle timer keeps being reset."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        self.server.settimeout(0.2)
        while not self.stop.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                continue
            threading.Thread(target=self._trickle, args=(client,), daemon=True).start()

    def _trickle(self, client):
        try:
            client.recv(65536)
            client.sendall(b"\x02\x00\x7f\xff\xff\xff")
            while not self.stop.is_set():
                client.sendall(os.urandom(1))
                time.sleep(0.2)
        except OSError:
            pass
        finally:
            client.close()

    def close(self):
        self.stop.set()
        self.server.close()


@pytest.mark.timeout(60)
def test_a_peer_trickling_random_bytes_times_out_with_a_clear_error():
    peer = TricklingPeer()
    try:
        started = time.monotonic()
        with pytest.raises(PeerTimeoutError, match="did not complete the association within 3 s"):
            echo(DicomPeer("PEER", "127.0.0.1", peer.port), "HEALTHFM", timeouts=FAST)
        assert time.monotonic() - started < 15  # hung past 200 s before: the idle timers never fired
    finally:
        peer.close()


def _store(port: int, data: bytes, calling: str = "MODALITY", called: str = "HEALTHFM") -> int | None:
    """C-STORE one encoded object with plain pynetdicom; the status, or None when not associated."""
    ds = pydicom.dcmread(io.BytesIO(data))
    ae = AE(ae_title=calling)
    ae.add_requested_context(CTImageStorage, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    try:
        if not assoc.is_established:
            return None
        status = assoc.send_c_store(ds)
        return int(status.Status) if "Status" in status else None
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


def _variant(**changes) -> bytes:
    ds = pydicom.dcmread(CT_SMALL)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture
def scp(tmp_path):
    database = StudyDatabase(tmp_path / "studies.sqlite")
    outcomes = []
    server = StorageSCP("HEALTHFM", free_port(), tmp_path / "store", database=database, on_outcome=outcomes.append,
                        allowed_calling_aets=["MODALITY", "PACS"])
    with server:
        yield server, database, outcomes
    database.close()


def test_duplicate_sop_under_another_study_is_refused_and_files_match_the_database(scp, tmp_path):
    server, database, outcomes = scp
    original = CT_SMALL.read_bytes()
    assert _store(server.port, original) == 0
    assert _store(server.port, original) == 0  # the same object again: harmless, one file
    hostile = _variant(StudyInstanceUID="1.2.826.0.1.3680043.8.498.1", PatientID="SOMEONE-ELSE")
    assert _store(server.port, hostile) == STATUS_DUPLICATE_SOP_INSTANCE
    orphan = _variant(StudyInstanceUID="1.2.826.0.1.3680043.8.498.2", SOPInstanceUID="1.2.826.0.1.3680043.8.498.3")
    assert _store(server.port, orphan) == STATUS_DUPLICATE_SOP_INSTANCE  # its series belongs to another study
    files = sorted((tmp_path / "store").rglob("*.dcm"))
    assert [Path(p) for p in database.instance_paths()] == files and len(files) == 1
    kept = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert kept.StudyInstanceUID == pydicom.dcmread(CT_SMALL, stop_before_pixels=True).StudyInstanceUID
    assert database._query("SELECT count(*) FROM studies")[0][0] == 1  # no orphan study row
    assert [o.status for o in outcomes] == [0, 0, 0x0111, 0x0111]
    assert "already filed under another study, patient" in outcomes[2].reason


def test_calling_aet_allow_list_and_called_aet_check(scp):
    server, _database, outcomes = scp
    own = DicomPeer("HEALTHFM", "127.0.0.1", server.port)
    assert echo(own, "PACS", timeouts=FAST)
    with pytest.raises(AssociationRejectedError, match="does not know our calling AE title 'INTRUDER'"):
        echo(own, "INTRUDER", timeouts=FAST)
    with pytest.raises(AssociationRejectedError, match="the peer's AE title is not 'SOMEONE'"):
        echo(DicomPeer("SOMEONE", "127.0.0.1", server.port), "PACS", timeouts=FAST)
    assert _store(server.port, CT_SMALL.read_bytes(), calling="INTRUDER") is None
    assert outcomes == []  # nothing was even offered


def test_the_storage_scp_binds_loopback_by_default(tmp_path):
    with StorageSCP("HEALTHFM", free_port(), tmp_path) as server:
        assert server._server.server_address[0] == "127.0.0.1"


@pytest.mark.timeout(120)
def test_idle_connection_flood_from_one_host_cannot_lock_others_out(scp):
    server, _database, _outcomes = scp
    flood = []
    for _ in range(10):  # what locked every peer out for ~30 s, again and again
        sock = socket.socket()
        sock.bind(("127.0.0.2", 0))
        sock.connect(("127.0.0.1", server.port))
        flood.append(sock)
    try:
        time.sleep(0.5)
        started = time.monotonic()
        assert echo(DicomPeer("HEALTHFM", "127.0.0.1", server.port), "PACS", timeouts=FAST)
        assert time.monotonic() - started < 3
        # beyond the per-host limit the flood's sockets were closed at once; the rest idle out
        closed_at = []
        deadline = time.monotonic() + 20
        for sock in flood:
            sock.settimeout(max(deadline - time.monotonic(), 0.1))
            try:
                closed = sock.recv(1) == b""
            except (ConnectionResetError, OSError):
                closed = True
            closed_at.append(closed)
        assert all(closed_at)
        assert MAX_CONNECTIONS_PER_HOST < 10
    finally:
        for sock in flood:
            sock.close()


@pytest.mark.timeout(180)
def test_cli_pacs_listen_to_contract(tmp_path):
    port = free_port()
    out = tmp_path / "received"
    env = dict(os.environ, HEALTHFM_HOME=str(tmp_path / "home"))
    listener = subprocess.Popen(
        [sys.executable, "-m", "healthfm_desktop", "pacs", "listen", "--port", str(port), "--aet", "HEALTHFM",
         "--allow-calling-aet", "MODALITY", "--out", str(out), "--json"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert "receiving as HEALTHFM on 127.0.0.1 port" in listener.stderr.readline()
        assert _store(port, CT_SMALL.read_bytes()) == 0
        assert _store(port, CT_SMALL.read_bytes(), calling="INTRUDER") is None
        assert _store(port, _variant(StudyInstanceUID="1.2.826.0.1.3680043.8.498.1")) == STATUS_DUPLICATE_SOP_INSTANCE
        first, second = json.loads(listener.stdout.readline()), json.loads(listener.stdout.readline())
        listener.send_signal(signal.SIGTERM)
        stdout, stderr = listener.communicate(timeout=60)
    finally:
        if listener.poll() is None:
            listener.kill()
    sop = str(pydicom.dcmread(CT_SMALL, stop_before_pixels=True).SOPInstanceUID)
    assert set(first) == {"sop_instance_uid", "calling_aet", "path", "status"}
    assert first["sop_instance_uid"] == sop and first["calling_aet"] == "MODALITY" and first["status"] == "0x0000"
    assert Path(first["path"]).is_file() and out in Path(first["path"]).parents
    assert second["status"] == "0x0111" and second["path"] is None
    assert listener.returncode == 1  # an object was refused
    assert f"{sop}: duplicate SOP Instance UID" in stderr and "1 stored, 1 refused" in stderr
    with StudyDatabase(tmp_path / "home" / "studies.sqlite") as database:
        assert database.instance_paths() == [Path(first["path"])]


def test_another_pynetdicom_version_gets_pynetdicoms_plain_association(scp, monkeypatch, caplog):
    """The private names of pynetdicom 3.0.4 are used only with that version: another one still
    associates (its own timeouts), with a warning that the hard deadline is off."""
    from pynetdicom.sop_class import Verification

    from healthfm_desktop.core.imaging.pacs import association

    server, _database, _outcomes = scp
    assert association.private_internals_supported()
    monkeypatch.setattr(association.pynetdicom, "__version__", "9.9.9")
    assert not association.private_internals_supported()
    with caplog.at_level("WARNING", logger=association.__name__):
        ae = association.make_ae("MODALITY", FAST)
    assert "no hard deadline" in caplog.text
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", server.port, ae_title="HEALTHFM")
    try:
        assert assoc.is_established
        default_delay = assoc.dul._run_loop_delay
        association.shorten_reactor_sleep(assoc)
        assert assoc.dul._run_loop_delay == default_delay != association.REACTOR_SLEEP_S
        assert ae.opened_sockets == []  # nothing kept: the override stepped aside
        assert int(assoc.send_c_echo().Status) == 0
    finally:
        assoc.release()
        ae.shutdown()
