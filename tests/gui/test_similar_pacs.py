"""Find-similar in the viewer reaches the PACS, against a real Orthanc: after a PACS query lists
its studies, the series most like the open one include PACS series (their middle slice, retrieved
once and cached), marked "(PACS)", with the user's labels; the caption says what was searched,
and clicking a PACS neighbour retrieves and opens that series."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from tests.orthanc import needs_orthanc, orthanc_with_samples

pytestmark = needs_orthanc()

DICOM = Path(__file__).resolve().parent.parent / "data" / "dicom"
CT_SERIES = DICOM / "series" / "CT_head_phantom_philips_1mm_20sl"


@pytest.fixture(scope="module")
def orthanc():
    yield from orthanc_with_samples()


def test_find_similar_includes_the_listed_pacs_series(qtbot, tmp_path, monkeypatch, orthanc):
    from healthfm_desktop.controllers.images import ImagesController
    from healthfm_desktop.controllers.pacs import PacsController
    from healthfm_desktop.core.imaging import pacs
    from healthfm_desktop.core.storage.studies import StudyDatabase
    from healthfm_desktop.views.image_viewer.workspace import ImagesWorkspace

    monkeypatch.setenv("HEALTHFM_HOME", str(tmp_path / "home"))
    images = ImagesController()
    view = ImagesWorkspace(images)
    qtbot.addWidget(view)
    view.resize(1400, 900)
    view.show()
    database = StudyDatabase(tmp_path / "studies.sqlite")
    controller = PacsController(images, database=database, store_dir=tmp_path / "store")
    with qtbot.waitSignal(images.import_finished, timeout=120_000):
        images.open_paths([CT_SERIES])  # the CT series is on the PACS too: it must not come back as a neighbour
    qtbot.waitUntil(lambda: not images.busy, timeout=120_000)
    opened = [s.key for s in images.series]
    panel = view.adaptation
    view.side_tabs.setCurrentIndex(view.side_tabs.count() - 1)

    # before any PACS query the caption says the PACS was not searched
    view.series_browser.select(opened[0])
    with qtbot.waitSignal(panel.controller.similar_found, timeout=60_000):
        qtbot.mouseClick(panel.similar_button, Qt.MouseButton.LeftButton)
    assert panel.neighbours.rowCount() == 0 and "PACS: none searched" in panel.similar_caption.text()

    peer = {"ae_title": orthanc.aet, "host": orthanc.host, "port": orthanc.dicom_port, "description": "test PACS"}
    with qtbot.waitSignal(controller.studies_found, timeout=15_000) as found:
        controller.find(peer, {})
    studies = found.args[0]
    assert len(studies) == 7
    listed = {s.series_uid: s for study in studies
              for s in pacs.find_series(pacs.DicomPeer.from_dict(peer), "HEALTHFM", study["study_uid"])}
    ct_uid = opened[0].split("#")[0]
    assert ct_uid in listed
    others = sorted(uid for uid in listed if uid != ct_uid)
    panel.controller.tag(others[:3], "seen on the PACS")  # labelled when the user had them open

    with qtbot.waitSignal(panel.controller.similar_found, timeout=120_000):
        qtbot.mouseClick(panel.similar_button, Qt.MouseButton.LeftButton)
    rows = [(panel.neighbours.item(r, 0).text(), panel.neighbours.item(r, 2).text())
            for r in range(panel.neighbours.rowCount())]
    assert len(rows) == 10 and all(shown.endswith(" (PACS)") for shown, _ in rows)
    uids = [shown[: -len(" (PACS)")] for shown, _ in rows]
    assert set(uids) <= set(others) and ct_uid not in uids  # the open series is not its own neighbour
    labels = dict(zip(uids, (label for _, label in rows)))
    assert all(labels[uid] == ("seen on the PACS" if uid in others[:3] else "") for uid in uids)
    caption = panel.similar_caption.text()
    assert f"searched 1 open, 0 stored, {len(others)} PACS images" in caption
    assert "middle slice of each image series of the 7 studies listed from ORTHANC" in caption
    assert len(list((tmp_path / "home" / "cache" / "pacs_similar").rglob("*.dcm"))) == len(others)
    qtbot.wait(100)  # the scroll area's relayout for the caption's lines
    view.grab().save(str(tmp_path / "images_similar_pacs.png"))

    # a second search reads the cached middle slices: the same neighbours
    with qtbot.waitSignal(panel.controller.similar_found, timeout=120_000):
        qtbot.mouseClick(panel.similar_button, Qt.MouseButton.LeftButton)
    assert [panel.neighbours.item(r, 0).text() for r in range(panel.neighbours.rowCount())] == [r[0] for r in rows]

    # clicking a PACS neighbour retrieves that series and opens it in the viewer
    target = uids[0]
    with qtbot.waitSignal(controller.retrieve_finished, timeout=60_000) as finished:
        panel.neighbours.cellClicked.emit(0, 0)
    assert finished.args[0] is True
    qtbot.waitUntil(lambda: any(s.key.split("#")[0] == target for s in images.series), timeout=60_000)
    database.close()
