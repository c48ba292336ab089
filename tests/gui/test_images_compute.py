"""The Compute setting in the Images workspace: with a Dask scheduler address, a de-identified
export of a series runs on that cluster (a 2-worker LocalCluster on loopback here), writes the same
files as on this computer (one session: the same new UIDs and date offset), and says where it ran."""

from __future__ import annotations

import pydicom
import pytest

from tests.gui.test_image_viewer import DICOM, open_and_wait, shown_images_harness

pytestmark = pytest.mark.slow
SERIES = DICOM / "series" / "CT_head_phantom_philips_1mm_20sl"


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    yield from shown_images_harness(qtbot, tmp_path, monkeypatch)


def _export(controller, qtbot, folder, **options) -> str:
    with qtbot.waitSignal(controller.status, timeout=120_000,
                          check_params_cb=lambda text: "De-identified" in text) as written:
        controller.export_deidentified(controller.series[0].key, folder, **options)
    return written.args[0]


def _files(folder) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*.dcm"))}


def test_series_export_on_the_cluster_equals_local(window, qtbot, tmp_path, dask_scheduler, compute):
    controller, _, _ = open_and_wait(window, qtbot, [SERIES])
    originals = {str(pydicom.dcmread(p).SOPInstanceUID) for p in SERIES.glob("*.dcm")}
    compute("")
    local_status = _export(controller, qtbot, tmp_path / "local", shift_dates=True, folders=True)
    compute(dask_scheduler)
    remote_status = _export(controller, qtbot, tmp_path / "remote", shift_dates=True, folders=True)
    local, remote = _files(tmp_path / "local"), _files(tmp_path / "remote")
    assert len(local) == len(originals) == 20
    assert remote == local  # same names in the same Patient/Study/Series folders, same bytes
    written = [pydicom.dcmread(tmp_path / "remote" / name) for name in remote]
    assert not {str(ds.SOPInstanceUID) for ds in written} & originals
    assert len({str(ds.StudyInstanceUID) for ds in written}) == 1  # two workers, one new study UID
    assert "Dask" not in local_status and "on the Dask cluster at" in remote_status, remote_status


def test_a_cluster_that_cannot_be_reached_is_a_message_not_a_crash(window, qtbot, tmp_path, compute):
    controller, _, _ = open_and_wait(window, qtbot, [SERIES])
    compute("tcp://127.0.0.1:9")  # discard port: nothing listens
    with qtbot.waitSignal(controller.message, timeout=120_000,
                          check_params_cb=lambda level, text: level == "error") as failed:
        controller.export_deidentified(controller.series[0].key, tmp_path / "out")
    assert "127.0.0.1:9" in failed.args[1]
    assert not list((tmp_path / "out").rglob("*.dcm"))


def test_analyse_series_on_the_cluster_equals_local(analysis_workspace, qtbot, tmp_path, dask_scheduler, compute):
    import json

    import numpy as np
    from PIL import Image
    from pydicom.uid import generate_uid

    from tests.core.test_image_ai_helpers import IMAGE_TEST_DATA, make_dicom
    from tests.gui.test_image_ai_panel import _open

    view, images, analysis, panel = analysis_workspace
    cases = json.loads((IMAGE_TEST_DATA / "cases.json").read_text())["hc18"]
    folder, uids = tmp_path / "series", (generate_uid(), generate_uid())
    folder.mkdir()
    for number, case in enumerate(cases, start=1):
        make_dicom(folder / f"{number}.dcm", np.asarray(Image.open(IMAGE_TEST_DATA / case["file"])), "US", 0.5,
                   series=uids, instance_number=number)
    _open(qtbot, view, images, folder)
    results, messages = [], []
    analysis.progress.connect(lambda progress: messages.append(progress.message or ""))
    for address in ("", dask_scheduler):
        compute(address)
        with qtbot.waitSignal(analysis.series_result, timeout=120_000) as done:
            panel.series_button.click()
        qtbot.waitUntil(lambda: not analysis.busy, timeout=10_000)
        results.append(done.args[0])
    local, remote = results
    assert len(local.per_image) == len(cases) and local.task == "segment"
    assert remote.per_image == local.per_image and remote.summary == local.summary
    assert any("on the Dask cluster at" in m for m in messages), messages[-3:]
    assert "ai-segmentation" in view.active_viewport().overlay_names()


@pytest.fixture
def analysis_workspace(qtbot):
    from tests.gui.test_image_ai_panel import analysis_harness

    yield from analysis_harness(qtbot)
