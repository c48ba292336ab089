"""PACS in the GUI, against a real Orthanc: a peer added and tested in Settings, a study found,
expanded to its series and retrieved with per-instance progress while the event loop keeps
running, the retrieved study opened in Images and listed in the local study browser, Cancel."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer

from healthfm_desktop.app import build_main_window
from tests.orthanc import free_port, needs_orthanc, orthanc_with_samples

pytestmark = needs_orthanc()

DICOM = Path(__file__).resolve().parent.parent / "data" / "dicom"


@pytest.fixture(scope="module")
def orthanc():
    yield from orthanc_with_samples()


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    # a home of its own: settings, peers and the study database start empty in every test
    monkeypatch.setenv("HEALTHFM_HOME", str(tmp_path / "home"))
    window = build_main_window()
    if getattr(window, "pacs_controller", None) is None:  # until app.py installs it itself
        from healthfm_desktop.controllers.pacs import PacsController
        from healthfm_desktop.views.pacs.install import install_pacs

        install_pacs(window, PacsController(window.controllers["images"], parent=window))
    qtbot.addWidget(window)
    window.show()
    yield window
    window.close()


def _peer(orthanc) -> dict:
    return {"ae_title": orthanc.aet, "host": orthanc.host, "port": orthanc.dicom_port, "description": "test PACS"}


class StallMeter:
    """Largest gap between ticks of a 5 ms timer: how long the event loop was not running."""

    def __init__(self):
        self.timer = QTimer(interval=5)
        self.timer.timeout.connect(self._tick)
        self.last = None
        self.worst = 0.0

    def _tick(self) -> None:
        now = time.perf_counter()
        if self.last is not None:
            self.worst = max(self.worst, now - self.last)
        self.last = now

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.stop()


def test_peer_added_and_tested_in_settings(window, qtbot, orthanc):
    window.settings_requested.emit()
    dialog = window.settings_dialog
    page = dialog.pacs_page
    page.ae_title.setText(orthanc.aet)
    page.host.setText(orthanc.host)
    page.port.setValue(orthanc.dicom_port)
    page.description.setText("test PACS")
    page.add_button.click()
    assert page.table.rowCount() == 1 and page.table.item(0, 0).text() == orthanc.aet
    page.test_button.click()
    qtbot.waitUntil(lambda: page.test_result.text().startswith(("✔", "✘")), timeout=15_000)
    assert page.test_result.text().startswith("✔ Success: round trip") and "ms" in page.test_result.text()
    # a wrong AE title: the same button says why
    page.ae_title.setText("WRONG")
    page.test_button.click()
    qtbot.waitUntil(lambda: "WRONG" in page.test_result.text(), timeout=15_000)
    assert page.test_result.text().startswith("✘") and "called AE title" in page.test_result.text()
    dialog.reject()


def test_query_expand_retrieve_without_stalling_the_ui(window, qtbot, orthanc, tmp_path):
    controller = window.pacs_controller
    controller.store_dir = tmp_path / "store"
    assert controller.save_peers([_peer(orthanc)])
    window.show_workspace("notes")
    window.pacs_action.trigger()
    dialog = window.pacs_dialog
    assert dialog.peer_box.count() == 1
    dialog.patient_name.setText("HEAD*")
    with qtbot.waitSignal(controller.studies_found, timeout=15_000):
        dialog.search_button.click()
    assert dialog.results.topLevelItemCount() == 1
    study = dialog.results.topLevelItem(0)
    assert study.text(6) == "20"
    with qtbot.waitSignal(controller.series_found, timeout=15_000):
        study.setExpanded(True)
    assert study.childCount() == 1 and study.child(0).text(6) == "20"

    study.setSelected(True)
    updates = []
    controller.retrieve_progress.connect(lambda fraction, message: updates.append((fraction, message)))
    images = window.controllers["images"]
    with StallMeter() as meter:
        with qtbot.waitSignal(controller.retrieve_finished, timeout=60_000) as finished:
            dialog.retrieve_button.click()
    assert finished.args[0] is True, finished.args[1]
    assert "20 instances" in dialog.status.text()
    # the worker passes progress on at most every 20 ms; what arrives counts instances up
    fractions = [f for f, _ in updates if f is not None]
    assert fractions and fractions == sorted(fractions)
    assert all("instances received" in message for _, message in updates)
    print(f"worst event-loop gap during the retrieval: {meter.worst * 1000:.1f} ms")
    assert meter.worst < 0.050, f"event loop stalled {meter.worst * 1000:.0f} ms during the retrieval"
    # the study opens in Images and is in the local study browser
    qtbot.waitUntil(lambda: any(e["frames"] == 20 for e in images.series_entries()), timeout=30_000)
    assert window.current_workspace() == "images"
    browser = window.study_browser
    qtbot.waitUntil(lambda: browser.table.rowCount() >= 1, timeout=10_000)
    assert any(browser.table.item(r, 6).text() == "20" for r in range(browser.table.rowCount()))
    window.resize(1400, 900)
    dialog.grab().save(str(tmp_path / "pacs_dialog.png"))
    window.grab().save(str(tmp_path / "pacs_window.png"))


def test_cancel_keeps_what_arrived(window, qtbot, orthanc, tmp_path):
    controller = window.pacs_controller
    controller.store_dir = tmp_path / "store"
    controller.open_after_retrieve = False
    study_uid = orthanc.rest("GET", "/studies?expand")
    study_uid = next(s["MainDicomTags"]["StudyInstanceUID"] for s in study_uid
                     if s["PatientMainDicomTags"].get("PatientName") == "HEAD")
    received, endings = [], []
    controller.retrieve_progress.connect(lambda fraction, message: received.append(message))
    controller.retrieve_finished.connect(lambda ok, text: endings.append(text))
    controller.retrieve_progress.connect(lambda *_: controller.cancel_retrieve() if len(received) == 2 else None)
    with qtbot.waitSignal(controller.retrieve_finished, timeout=60_000) as finished:
        controller.retrieve(_peer(orthanc), study_uid)
    assert finished.args[0] is False and "cancelled" in finished.args[1]
    files = list((tmp_path / "store").rglob("*.dcm"))
    assert 1 <= len(files) < 20
    assert not list((tmp_path / "store").rglob("*.part"))
    qtbot.waitUntil(lambda: not controller.busy, timeout=10_000)
    assert len(endings) == 1  # one "cancelled", however the worker reports it
    assert controller.database().instance_count() >= len(files)


def test_study_browser_search_and_failed_query(window, qtbot, orthanc, tmp_path):
    controller = window.pacs_controller
    controller.store_dir = tmp_path / "store"
    controller.open_after_retrieve = False
    controller.index_paths([DICOM / "dicomdir"])
    browser = window.study_browser
    qtbot.waitUntil(lambda: browser.table.rowCount() >= 6, timeout=15_000)
    browser.search.setText("archibald")
    qtbot.waitUntil(lambda: browser.table.rowCount() == 2, timeout=5_000)
    assert {browser.table.item(r, 0).text() for r in range(2)} == {"Doe^Archibald"}
    # a peer that is down: the dialog says so, no crash
    window.pacs_action.trigger()
    dialog = window.pacs_dialog
    assert "No peers yet" in dialog.status.text()  # a first-time user is told where to add one
    dialog.set_peers([{"ae_title": "NOBODY", "host": "127.0.0.1", "port": free_port()}])
    dialog.search_button.click()
    qtbot.waitUntil(lambda: "connection refused" in dialog.status.text(), timeout=15_000)
    assert dialog.search_button.isEnabled()


def test_storage_scp_switched_on_in_settings_receives_a_push(window, qtbot, orthanc, tmp_path):
    controller = window.pacs_controller
    controller.store_dir = tmp_path / "store"
    port = free_port()
    window.app_controller.set_setting("dicom/storage_port", str(port))
    orthanc.add_modality("healthfm", "HEALTHFM", port)  # the one entry for our AE title
    window.settings_requested.emit()
    page = window.settings_dialog.pacs_page
    assert not page.scp_check.isChecked()  # off by default
    page.scp_check.setChecked(True)
    assert controller.scp_running and str(port) in page.scp_state.text()
    browser = window.study_browser
    browser.search.setText("HEAD")
    qtbot.waitUntil(lambda: browser.table.rowCount() == 0, timeout=5_000)
    study = next(s for s in orthanc.rest("GET", "/studies?expand") if s["PatientMainDicomTags"].get("PatientName") == "HEAD")
    answer = orthanc.rest("POST", "/modalities/healthfm/store", study["ID"].encode(), "text/plain")
    assert answer["FailedInstancesCount"] == 0
    qtbot.waitUntil(lambda: browser.table.rowCount() == 1, timeout=15_000)
    assert browser.table.item(0, 6).text() == "20"
    assert len(list((tmp_path / "store").rglob("*.dcm"))) == 20
    page.scp_check.setChecked(False)
    assert not controller.scp_running
    window.settings_dialog.reject()


def test_retrieve_by_c_move_to_the_apps_own_port(window, qtbot, orthanc, tmp_path):
    controller = window.pacs_controller
    controller.store_dir = tmp_path / "store"
    controller.open_after_retrieve = False
    port = free_port()
    window.app_controller.set_setting("dicom/storage_port", str(port))
    orthanc.add_modality("healthfm", "HEALTHFM", port)  # the one entry for our AE title
    controller.save_peers([_peer(orthanc)])
    window.pacs_action.trigger()
    dialog = window.pacs_dialog
    dialog.patient_name.setText("Doe^Archibald")
    dialog.modality.setCurrentText("CT")
    with qtbot.waitSignal(controller.studies_found, timeout=15_000):
        dialog.search_button.click()
    assert dialog.results.topLevelItemCount() == 1
    dialog.results.topLevelItem(0).setSelected(True)
    dialog.use_move.setChecked(True)
    with qtbot.waitSignal(controller.retrieve_finished, timeout=60_000) as finished:
        dialog.retrieve_button.click()
    assert finished.args[0] is True, finished.args[1]
    assert finished.args[1].startswith("C-MOVE") and "4 instances" in finished.args[1]
    assert len(list((tmp_path / "store").rglob("*.dcm"))) == 4
