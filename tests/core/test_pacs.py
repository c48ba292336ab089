"""DICOM networking against a real PACS: Debian's Orthanc, started here on loopback ports with a
temporary configuration, loaded with real studies through its REST API, stopped at the end."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pydicom
import pytest

from healthfm_desktop.cli import main as cli_main
from healthfm_desktop.core.imaging.pacs import (
    AssociationRejectedError,
    DicomPeer,
    IncompleteRetrievalError,
    InvalidPeerError,
    InvalidQueryError,
    PeerAbortedError,
    PeerTimeoutError,
    PeerUnreachableError,
    StorageSCP,
    StudyQuery,
    Timeouts,
    echo,
    find_series,
    find_studies,
    parse_peer_address,
    retrieve,
    run_to_end,
    send,
)
from healthfm_desktop.core.imaging.pacs.retrieval import retrieve_into_database
from healthfm_desktop.core.storage.studies import StudyDatabase
from tests.orthanc import OrthancServer, free_port, needs_orthanc

pytestmark = needs_orthanc()

DICOM = Path(__file__).resolve().parent.parent / "data" / "dicom"
DICOMDIR_FILES = DICOM / "dicomdir"  # 2 patients, 6 studies (CR, CT, MR), 16x16 images
J2K_FILE = DICOM / "single" / "CT_jpeg2000_lossy_693.dcm"  # JPEG 2000: Orthanc 1.10 cannot transcode it
JPEGLS_FILE = DICOM / "single" / "MR_small_jpegls_lossless.dcm"
CT_SERIES = DICOM / "series" / "CT_head_phantom_philips_1mm_20sl"  # JPEG-LS lossless, 20 slices

OUR_AET = "HEALTHFM"
FAST = Timeouts(connect=3, acse=3, dimse=10, network=10)


def _uid(path: Path, keyword: str) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).get(keyword))


@pytest.fixture(scope="module")
def scp_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def orthanc(scp_port):
    with OrthancServer(modalities={"healthfm": (OUR_AET, scp_port)}) as server:
        server.upload_folder(DICOMDIR_FILES)
        server.upload([J2K_FILE, JPEGLS_FILE])
        yield server


@pytest.fixture
def peer(orthanc) -> DicomPeer:
    return DicomPeer(orthanc.aet, orthanc.host, orthanc.dicom_port)


# --- echo ---------------------------------------------------------------------------------
def test_echo_reports_round_trip(peer):
    result = echo(peer, OUR_AET, FAST)
    assert 0 < result.round_trip_ms < 5000
    assert "success" in result.summary()


def test_wrong_called_aet_is_rejected_with_advice(orthanc):
    wrong = DicomPeer("NOT-ORTHANC", orthanc.host, orthanc.dicom_port)
    with pytest.raises(AssociationRejectedError, match="called AE title"):
        echo(wrong, OUR_AET, FAST)


def test_peer_down_says_connection_refused():
    with pytest.raises(PeerUnreachableError, match="connection refused"):
        echo(DicomPeer("ORTHANC", "127.0.0.1", free_port()), OUR_AET, FAST)


def test_unregistered_calling_aet_is_reported(peer):
    with pytest.raises(PeerAbortedError, match="'STRANGER'"):
        find_studies(peer, "STRANGER", StudyQuery(), FAST)


# --- find ---------------------------------------------------------------------------------
def test_find_by_name_wildcard_modality_date_and_id(peer):
    everything = find_studies(peer, OUR_AET, StudyQuery(), FAST)
    assert len(everything) == 8  # 6 dicomdir studies + the two single files
    peter = find_studies(peer, OUR_AET, StudyQuery(patient_name="Doe^P*"), FAST)
    assert {m.patient_name for m in peter} == {"Doe^Peter"} and len(peter) == 4
    mr = find_studies(peer, OUR_AET, StudyQuery(modality="MR"), FAST)
    assert mr and all("MR" in m.modalities for m in mr)
    assert len(mr) == 4  # 3 of Peter's studies + the JPEG-LS MR
    dated = find_studies(peer, OUR_AET, StudyQuery(study_date="20010101-20031231"), FAST)
    assert dated and all("20010101" <= m.study_date <= "20031231" for m in dated)
    by_id = find_studies(peer, OUR_AET, StudyQuery(patient_id="77654033"), FAST)
    assert {m.patient_name for m in by_id} == {"Doe^Archibald"} and len(by_id) == 2
    archibald_ct = next(m for m in by_id if m.modalities == ["CT"])
    assert archibald_ct.series == 1 and archibald_ct.instances == 4
    assert find_studies(peer, OUR_AET, StudyQuery(patient_name="Nobody*"), FAST) == []


def test_find_series_of_a_study(peer):
    brain = next(m for m in find_studies(peer, OUR_AET, StudyQuery(patient_name="Doe^Peter"), FAST)
                 if m.description == "Brain-MRA")
    series = find_series(peer, OUR_AET, brain.study_uid, FAST)
    assert len(series) == brain.series == 3
    assert sum(s.instances for s in series) == brain.instances == 11
    assert all(s.modality == "MR" for s in series)


@pytest.mark.parametrize("bad", ["2020", "20201301", "20200102-20200101", "2020-01-01"])
def test_bad_date_is_refused_before_connecting(bad):
    with pytest.raises(InvalidQueryError):
        StudyQuery(study_date=bad).identifier()


# --- retrieve -----------------------------------------------------------------------------
def _pixel_digest(path: Path) -> tuple[str, str]:
    ds = pydicom.dcmread(path)
    return str(ds.file_meta.TransferSyntaxUID), hashlib.sha256(ds.PixelData).hexdigest()


@pytest.mark.parametrize("source", [J2K_FILE, JPEGLS_FILE], ids=["jpeg2000", "jpeg-ls"])
def test_get_receives_compressed_objects_untranscoded(peer, tmp_path, source):
    steps = retrieve(peer, OUR_AET, _uid(source, "StudyInstanceUID"), tmp_path, timeouts=FAST)
    progress = []
    while True:
        try:
            progress.append(next(steps))
        except StopIteration as stop:
            result = stop.value
            break
    assert result.complete and result.received == 1
    assert progress[-1].received == 1 and progress[-1].fraction == 1.0
    # the very bytes the PACS holds: same transfer syntax, same compressed pixel data
    assert _pixel_digest(result.paths[0]) == _pixel_digest(source)


def test_progress_has_one_step_per_instance(ct_orthanc, tmp_path):
    peer = DicomPeer(ct_orthanc.aet, ct_orthanc.host, ct_orthanc.dicom_port)
    steps = list(retrieve(peer, OUR_AET, _uid(next(CT_SERIES.iterdir()), "StudyInstanceUID"), tmp_path,
                          timeouts=FAST))
    assert [s.received for s in steps[:20]] == list(range(1, 21))
    assert all(s.expected == 20 for s in steps) and steps[-1].fraction == 1.0
    assert steps[-1].bytes == sum(p.stat().st_size for p in tmp_path.rglob("*.dcm"))


def test_get_one_series_of_a_study(peer, tmp_path):
    brain = next(m for m in find_studies(peer, OUR_AET, StudyQuery(patient_name="Doe^Peter"), FAST)
                 if m.description == "Brain-MRA")
    series = find_series(peer, OUR_AET, brain.study_uid, FAST)[0]
    result = run_to_end(retrieve(peer, OUR_AET, brain.study_uid, tmp_path, series_uid=series.series_uid,
                                 timeouts=FAST))
    assert result.received == series.instances
    assert {pydicom.dcmread(p).SeriesInstanceUID for p in result.paths} == {series.series_uid}


def test_move_to_our_own_storage_scp(peer, tmp_path, scp_port):
    study = find_studies(peer, OUR_AET, StudyQuery(patient_id="77654033", modality="CT"), FAST)[0]
    result = run_to_end(retrieve(peer, OUR_AET, study.study_uid, tmp_path, move_destination=OUR_AET,
                                 listen_port=scp_port, timeouts=FAST))
    assert result.method == "C-MOVE" and result.complete and result.received == 4
    assert all(pydicom.dcmread(p).StudyInstanceUID == study.study_uid for p in result.paths)


def test_move_to_unknown_destination_is_explained(peer, tmp_path, scp_port):
    study = find_studies(peer, OUR_AET, StudyQuery(patient_id="77654033", modality="CT"), FAST)[0]
    with pytest.raises(IncompleteRetrievalError, match="'ELSEWHERE'") as caught:
        run_to_end(retrieve(peer, OUR_AET, study.study_uid, tmp_path, move_destination="ELSEWHERE",
                            listen_port=scp_port, timeouts=FAST))
    assert caught.value.result.received == 0


def test_unknown_study_is_said_plainly(peer, tmp_path):
    with pytest.raises(IncompleteRetrievalError, match="has no study 1.2.3.4.5"):
        run_to_end(retrieve(peer, OUR_AET, "1.2.3.4.5", tmp_path, timeouts=FAST))


def test_retrieval_is_indexed_in_the_study_database(peer, tmp_path):
    database = StudyDatabase(tmp_path / "studies.sqlite")
    study = find_studies(peer, OUR_AET, StudyQuery(patient_name="Doe^Archibald", modality="CR"), FAST)[0]
    result = run_to_end(retrieve_into_database(database, peer, OUR_AET, study.study_uid, tmp_path / "store",
                                               timeouts=FAST))
    rows = database.search("archibald")
    assert [r.study_uid for r in rows if r.modalities == ["CR"]] == [study.study_uid]
    assert sorted(database.instance_paths(study.study_uid)) == sorted(result.paths)
    # the same study again: recognised by SOP Instance UID, nothing added twice
    run_to_end(retrieve_into_database(database, peer, OUR_AET, study.study_uid, tmp_path / "store", timeouts=FAST))
    assert database.instance_count() == 3


# --- send and receive ---------------------------------------------------------------------
def test_store_scu_sends_files_as_they_are(peer, orthanc, tmp_path):
    source = DICOM / "single" / "NM_jpeg2000_lossy_signed.dcm"
    before = orthanc.instance_count()
    result = run_to_end(send(peer, OUR_AET, [source], FAST))
    assert len(result.sent) == 1 and not result.failed
    assert orthanc.instance_count() == before + 1
    back = run_to_end(retrieve(peer, OUR_AET, _uid(source, "StudyInstanceUID"), tmp_path, timeouts=FAST))
    assert _pixel_digest(back.paths[0]) == _pixel_digest(source)


def test_storage_scp_files_what_the_pacs_pushes(orthanc, tmp_path, scp_port):
    database = StudyDatabase(tmp_path / "studies.sqlite")
    store = tmp_path / "incoming"
    scp = StorageSCP(OUR_AET, scp_port, store, bind_address="127.0.0.1",
                     on_filed=lambda filed: database.add_instances([filed.record]))
    instance = orthanc.upload([J2K_FILE])[0]["ID"]
    with scp:
        answer = orthanc.rest("POST", "/modalities/healthfm/store", instance.encode(), "text/plain")
    assert answer["FailedInstancesCount"] == 0
    files = list(store.rglob("*.dcm"))
    assert len(files) == 1 and _pixel_digest(files[0]) == _pixel_digest(J2K_FILE)
    assert database.instance_paths() == [files[0].resolve()]


def test_storage_port_in_use_is_reported(tmp_path, scp_port):
    with StorageSCP(OUR_AET, scp_port, tmp_path, bind_address="127.0.0.1"):
        with pytest.raises(Exception, match="already in use"):
            StorageSCP(OUR_AET, scp_port, tmp_path, bind_address="127.0.0.1").start()


# --- failures mid-way ---------------------------------------------------------------------
@pytest.fixture
def ct_orthanc():
    """A PACS of its own, for the tests that kill or freeze it."""
    with OrthancServer(modalities={"healthfm": (OUR_AET, 1)}) as server:
        server.upload_folder(CT_SERIES)
        yield server


def test_peer_killed_mid_transfer_keeps_whole_files_and_a_consistent_database(ct_orthanc, tmp_path):
    peer = DicomPeer(ct_orthanc.aet, ct_orthanc.host, ct_orthanc.dicom_port)
    study_uid = _uid(next(CT_SERIES.iterdir()), "StudyInstanceUID")
    database = StudyDatabase(tmp_path / "studies.sqlite")
    arrived = []

    def kill_after_three(filed):
        arrived.append(filed)
        if len(arrived) == 3:
            ct_orthanc.kill()

    with pytest.raises(IncompleteRetrievalError, match="of 20 instances received") as caught:
        run_to_end(retrieve_into_database(database, peer, OUR_AET, study_uid, tmp_path / "store",
                                          on_filed=kill_after_three, timeouts=FAST))
    result = caught.value.result
    assert 3 <= result.received < 20
    assert "aborted" in str(caught.value)
    files = sorted((tmp_path / "store").rglob("*"))
    assert not [f for f in files if f.name.endswith(".part")]
    dicom_files = [f for f in files if f.suffix == ".dcm"]
    assert len(dicom_files) == result.received
    for path in dicom_files:  # every file that is there is whole
        assert len(pydicom.dcmread(path).PixelData) > 0
    assert sorted(database.instance_paths()) == sorted(p.resolve() for p in dicom_files)
    assert database.verify() == []


def test_frozen_peer_times_out(ct_orthanc):
    peer = DicomPeer(ct_orthanc.aet, ct_orthanc.host, ct_orthanc.dicom_port)
    ct_orthanc.freeze()
    try:
        with pytest.raises(PeerTimeoutError, match="did not answer within 1.5 s"):
            echo(peer, OUR_AET, Timeouts(connect=2, acse=1.5, dimse=2, network=5))
    finally:
        ct_orthanc.resume()


def test_cancel_aborts_and_leaves_no_partial_file(ct_orthanc, tmp_path):
    peer = DicomPeer(ct_orthanc.aet, ct_orthanc.host, ct_orthanc.dicom_port)
    study_uid = _uid(next(CT_SERIES.iterdir()), "StudyInstanceUID")
    steps = retrieve(peer, OUR_AET, study_uid, tmp_path, timeouts=FAST)
    first = next(steps)
    second = next(steps)
    assert second.received >= first.received >= 1
    steps.close()  # what the worker does on Cancel
    files = list(tmp_path.rglob("*"))
    assert not [f for f in files if f.name.endswith(".part")]
    assert 1 <= len([f for f in files if f.suffix == ".dcm"]) < 20
    # the peer is fine afterwards
    assert echo(peer, OUR_AET, FAST).round_trip_ms > 0


# --- command line -------------------------------------------------------------------------
def _peer_args(orthanc, called="ORTHANC") -> list[str]:
    return ["--peer", f"{orthanc.host}:{orthanc.dicom_port}", "--called-aet", called, "--calling-aet", OUR_AET]


def test_cli_echo(orthanc, capsys):
    assert cli_main(["pacs", "echo", *_peer_args(orthanc)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "success" in out[0] and "ms" in out[0]


def test_cli_find_json(orthanc, capsys):
    import json

    assert cli_main(["pacs", "find", *_peer_args(orthanc), "--patient-name", "Doe*", "--modality", "CT",
                     "--study-date", "19900101-20301231", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert set(row) == {"study_uid", "patient_id", "patient_name", "study_date", "modalities",
                            "description", "series", "instances"}
        assert row["modalities"] == ["CT"] and row["patient_name"].startswith("Doe^")


def test_cli_get_and_move(orthanc, capsys, tmp_path, scp_port):
    study_uid = _uid(J2K_FILE, "StudyInstanceUID")
    assert cli_main(["pacs", "get", *_peer_args(orthanc), "--study-uid", study_uid, "--out", str(tmp_path / "g")]) == 0
    assert "C-GET" in capsys.readouterr().out
    assert len(list((tmp_path / "g").rglob("*.dcm"))) == 1
    assert cli_main(["pacs", "get", *_peer_args(orthanc), "--study-uid", study_uid, "--out", str(tmp_path / "m"),
                     "--move-dest", OUR_AET, "--listen-port", str(scp_port)]) == 0
    assert "C-MOVE" in capsys.readouterr().out
    assert len(list((tmp_path / "m").rglob("*.dcm"))) == 1


@pytest.mark.parametrize(
    "case, expected",
    [("wrong-aet", "rejected the association"), ("down", "connection refused"), ("bad-peer", "not HOST:PORT")],
)
def test_cli_failures_are_one_clear_line(orthanc, capsys, case, expected):
    if case == "wrong-aet":
        args = _peer_args(orthanc, called="WRONG")
    elif case == "down":
        args = ["--peer", f"127.0.0.1:{free_port()}", "--called-aet", "ORTHANC"]
    else:
        args = ["--peer", "localhost", "--called-aet", "ORTHANC"]
    code = cli_main(["pacs", "echo", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == (2 if case == "bad-peer" else 1)
    assert len(err) == 1 and expected in err[0] and "Traceback" not in err[0]


def test_cli_calling_aet_defaults_to_settings(orthanc, capsys, monkeypatch):
    from healthfm_desktop.core.paths import settings_path

    settings_path().write_text("[dicom]\nae_title=STRANGER\n", encoding="utf-8")
    try:
        code = cli_main(["pacs", "find", "--peer", f"{orthanc.host}:{orthanc.dicom_port}", "--called-aet", "ORTHANC",
                         "--json"])
        assert code == 1 and "'STRANGER'" in capsys.readouterr().err
    finally:
        settings_path().unlink()


def test_peer_address_parsing():
    assert parse_peer_address("127.0.0.1:4242") == ("127.0.0.1", 4242)
    assert parse_peer_address("[::1]:104") == ("::1", 104)
    for bad in ["", "host", "host:", "host:0", "host:70000", ":104", "a b:104"]:
        with pytest.raises(InvalidPeerError):
            parse_peer_address(bad)


# --- TLS ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls_orthanc(tmp_path_factory):
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (needed to make a test certificate)")
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(folder / "server.key"),
         "-out", str(folder / "server.crt"), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )
    config = {"DicomTlsEnabled": True, "DicomTlsCertificate": str(folder / "server.crt"),
              "DicomTlsPrivateKey": str(folder / "server.key"),
              "DicomTlsTrustedCertificates": str(folder / "server.crt"),
              "DicomTlsRemoteCertificateRequired": False}
    with OrthancServer(modalities={"healthfm": (OUR_AET, 1)}, extra_config=config) as server:
        server.upload([J2K_FILE])
        yield server, folder / "server.crt"


def test_tls_peer(tls_orthanc, tmp_path):
    server, ca_file = tls_orthanc
    peer = DicomPeer(server.aet, server.host, server.dicom_port, tls=True, tls_ca_file=str(ca_file))
    assert echo(peer, OUR_AET, FAST).round_trip_ms > 0
    result = run_to_end(retrieve(peer, OUR_AET, _uid(J2K_FILE, "StudyInstanceUID"), tmp_path, timeouts=FAST))
    assert result.complete and _pixel_digest(result.paths[0]) == _pixel_digest(J2K_FILE)
    # without our CA the certificate is refused, and the message says why
    untrusted = DicomPeer(server.aet, server.host, server.dicom_port, tls=True)
    with pytest.raises(PeerUnreachableError, match="certificate is not trusted"):
        echo(untrusted, OUR_AET, FAST)
    # TLS off against a TLS port: a timeout that suggests TLS
    plain = DicomPeer(server.aet, server.host, server.dicom_port)
    with pytest.raises(PeerTimeoutError, match="require TLS"):
        echo(plain, OUR_AET, Timeouts(connect=2, acse=1.5, dimse=2, network=5))


def test_logs_carry_no_patient_data(peer, tmp_path, caplog):
    import logging

    caplog.set_level(logging.DEBUG)  # every logger, pynetdicom's included, at its most verbose
    caplog.set_level(logging.DEBUG, logger="pynetdicom")
    matches = find_studies(peer, OUR_AET, StudyQuery(patient_name="Doe*"), FAST)
    run_to_end(retrieve(peer, OUR_AET, matches[0].study_uid, tmp_path, timeouts=FAST))
    assert any(r.name.startswith("pynetdicom") for r in caplog.records)  # real, verbose log output
    for secret in ("Doe", "Peter", "Archibald", "98890234", "77654033"):
        assert secret not in caplog.text


def test_cli_reports_a_partial_retrieval(ct_orthanc, tmp_path, capsys, monkeypatch):
    import importlib

    retrieve_module = importlib.import_module("healthfm_desktop.core.imaging.pacs.retrieval")

    real = retrieve_module.file_encoded_object
    count = []

    def file_then_kill(encoded, root):  # the peer dies after the third instance
        filed = real(encoded, root)
        count.append(filed)
        if len(count) == 3:
            ct_orthanc.kill()
        return filed

    monkeypatch.setattr(retrieve_module, "file_encoded_object", file_then_kill)
    study_uid = _uid(next(CT_SERIES.iterdir()), "StudyInstanceUID")
    code = cli_main(["pacs", "get", *_peer_args(ct_orthanc), "--study-uid", study_uid, "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 1
    assert "3 of 20 instances" in captured.out  # the summary says what did arrive
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "incomplete retrieval" in err[0] and "aborted" in err[0]
    assert len(list(tmp_path.rglob("*.dcm"))) == 3 and not list(tmp_path.rglob("*.part"))


def test_cli_uses_tls_settings_of_a_saved_peer(tls_orthanc, capsys):
    from healthfm_desktop.core.imaging.pacs import save_peers
    from healthfm_desktop.core.imaging.pacs.peers import peers_path

    server, ca_file = tls_orthanc
    args = ["pacs", "echo", "--peer", f"{server.host}:{server.dicom_port}", "--called-aet", server.aet,
            "--calling-aet", OUR_AET]
    save_peers([DicomPeer(server.aet, server.host, server.dicom_port, tls=True, tls_ca_file=str(ca_file))])
    try:
        assert cli_main(args) == 0
        assert "success" in capsys.readouterr().out
    finally:
        peers_path().unlink()


def test_offering_only_uncompressed_syntaxes_gets_nothing_for_jpeg2000(peer, tmp_path, monkeypatch):
    """Why every syntax gets its own context: Orthanc 1.10 cannot transcode JPEG 2000 during
    C-GET, so an SCU that offers only uncompressed syntaxes receives nothing (and we say so)."""
    from healthfm_desktop.core.imaging.pacs import contexts

    monkeypatch.setattr(contexts, "RETRIEVE_TRANSFER_SYNTAXES", list(contexts.UNCOMPRESSED))
    with pytest.raises(IncompleteRetrievalError, match="failed at the peer") as caught:
        run_to_end(retrieve(peer, OUR_AET, _uid(J2K_FILE, "StudyInstanceUID"), tmp_path, timeouts=FAST))
    assert caught.value.result.received == 0 and caught.value.result.failed == 1
