"""Opening a series in the Images workspace with the decode worker processes: the first image
is on screen before the series has finished loading, every slice arrives with the values of the
file, the workers did the decoding, and with the workers disabled the same happens in-process."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

from healthfm_desktop.core.imaging import parallel_decode
from tests.gui.test_image_viewer import MR_SERIES, drop, shown_images_harness


@pytest.fixture
def viewer(qtbot, tmp_path, monkeypatch):
    yield from shown_images_harness(qtbot, tmp_path, monkeypatch)
    parallel_decode.set_decode_processes(None)


def _open_and_watch(viewer, qtbot):
    controller = viewer.controllers["images"]
    viewport = viewer.workspace.active_viewport
    seen = {"decoded": 0, "decoded_when_first_shown": None}

    def on_frame(key, index):
        seen["decoded"] += 1
        if seen["decoded_when_first_shown"] is None and viewport().frame() is not None:
            seen["decoded_when_first_shown"] = seen["decoded"]

    controller.frame_ready.connect(on_frame)
    with qtbot.waitSignal(controller.series_loaded, timeout=120_000):
        drop(viewer, [MR_SERIES])
    qtbot.waitUntil(lambda: not controller.busy, timeout=60_000)
    return controller, seen


def _check_all_slices(controller):
    series = controller.series[0]
    assert series.frame_count == 170 and controller.is_series_loaded(series.key)
    files = {str(f.instance.source.path): i for i, f in enumerate(series.frames)}
    for path, index in list(files.items())[::40]:
        ds = pydicom.dcmread(path)
        expected = apply_modality_lut(ds.pixel_array, ds)
        np.testing.assert_allclose(controller.cached_frame(series.key, index), expected, rtol=1e-6, atol=1e-3)


def test_first_image_early_and_every_slice_decoded_by_the_workers(viewer, qtbot, monkeypatch):
    parallel_decode.set_decode_processes(2)
    assert parallel_decode.warm_shared_pool()  # as after the first import of a session
    submitted = []
    real_submit = parallel_decode.DecodePool.submit_many
    monkeypatch.setattr(parallel_decode.DecodePool, "submit_many",
                        lambda self, requests: submitted.extend(requests) or real_submit(self, requests))
    controller, seen = _open_and_watch(viewer, qtbot)
    # the first image was on screen while most of the series was still to come
    assert seen["decoded_when_first_shown"] is not None and seen["decoded_when_first_shown"] < 170
    _check_all_slices(controller)
    assert len(submitted) >= 100, f"only {len(submitted)} of 170 files went to the decode workers"


def test_with_the_workers_disabled_the_series_loads_in_process(viewer, qtbot, monkeypatch):
    parallel_decode.set_decode_processes(0)
    started = []
    monkeypatch.setattr(parallel_decode.DecodePool, "start", lambda self: started.append(self) or False)
    controller, seen = _open_and_watch(viewer, qtbot)
    assert seen["decoded_when_first_shown"] is not None and seen["decoded_when_first_shown"] < 170
    _check_all_slices(controller)
    assert not started


def test_the_decode_workers_start_with_the_first_import_not_before(qtbot, tmp_path, monkeypatch):
    """A session that never opens an image never starts the decode processes (~50 MB each)."""
    from tests.gui.test_image_viewer import ImagesHarness

    parallel_decode.shutdown_shared_pool()
    parallel_decode.set_decode_processes(2)
    started = []
    monkeypatch.setattr(parallel_decode, "warm_shared_pool", lambda: started.append(True) or False)
    monkeypatch.setenv("HEALTHFM_HOME", str(tmp_path / "home"))
    harness = ImagesHarness()
    qtbot.addWidget(harness.workspace)
    harness.workspace.show()
    qtbot.wait(200)
    assert not started
    controller = harness.controllers["images"]
    with qtbot.waitSignal(controller.series_loaded, timeout=120_000):
        drop(harness, [MR_SERIES])
    qtbot.waitUntil(lambda: bool(started), timeout=10_000)
    controller.cancel_jobs()
    qtbot.waitUntil(lambda: not controller.busy, timeout=30_000)
    parallel_decode.set_decode_processes(None)


def test_with_the_workers_up_no_image_is_decoded_in_the_app_process(viewer, qtbot, monkeypatch):
    """The codecs hold the GIL while they decode, so an image decoded on a thread of the app's
    process (the import's preview, before) stalls the UI thread as long: with the workers up,
    the preview and every slice are decoded by them."""
    from healthfm_desktop.core.imaging import series as series_module

    parallel_decode.set_decode_processes(2)
    assert parallel_decode.warm_shared_pool()
    here = []
    real_decode = series_module.decode_stored
    monkeypatch.setattr(series_module, "decode_stored",
                        lambda instance, index=None: here.append(instance) or real_decode(instance, index))
    previews = []
    viewer.controllers["images"].preview_ready.connect(lambda pixels, info: previews.append(pixels))
    controller, seen = _open_and_watch(viewer, qtbot)
    assert previews, "no preview was shown while the series was indexed"
    _check_all_slices(controller)
    assert len(here) == 0, f"{len(here)} image(s) decoded in the app's process"
