"""The Images workspace's session model without Qt, on real DICOM: series opened from a scan,
per-series display state, sync geometry, frames decoded into the cache, measurements saved with
their study and read back by a new session, and the events a controller relays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from healthfm_desktop.core.imaging.scanning import scan_paths
from healthfm_desktop.core.imaging.viewer_session import (
    DisplayState,
    ViewerSession,
    measurement_file,
    read_saved_measurements,
)
from tests.core.jobs import drain

DICOM = Path(__file__).resolve().parents[1] / "data" / "dicom"
CT_HEAD = DICOM / "series" / "CT_head_phantom_philips_1mm_20sl"
CT_SMALL = DICOM / "single" / "CT_small.dcm"


@pytest.fixture(scope="module")
def head_scan():
    return scan_paths([CT_HEAD])


def opened(tmp_path: Path, scan) -> tuple[ViewerSession, dict[str, list]]:
    session = ViewerSession(tmp_path / "measurements")
    heard: dict[str, list] = {"series": [], "measurements": 0, "display": [], "messages": []}
    session.events.series_added.connect(lambda added: heard["series"].extend(s.key for s in added))
    session.events.display_changed.connect(heard["display"].append)
    session.events.message.connect(lambda level, text: heard["messages"].append((level, text)))
    session.add_scan(scan)
    return session, heard


def test_a_scan_opens_its_series_once(tmp_path, head_scan):
    session, heard = opened(tmp_path, head_scan)
    key = session.series[0].key
    assert heard["series"] == [key] and session.frame_count(key) == 20
    added, already = session.add_scan(head_scan)
    assert added == [] and [s.key for s in already] == [key] and len(session.series) == 1
    entry = session.series_entries()[0]
    assert entry["frames"] == 20 and entry["modality"] == "CT"


def test_display_state_is_kept_per_series_and_announced(tmp_path, head_scan):
    session, heard = opened(tmp_path, head_scan)
    key = session.series[0].key
    assert session.display_state(key) == DisplayState(index=10)  # the 20-slice stack opens at its middle
    session.update_display(key, index=7, window=(40, 400), inverted=True, view={"zoom": 2.0})
    session.update_display(key, index=7)  # no change: no event
    state = session.display_state(key)
    assert (state.index, state.window, state.inverted, state.view) == (7, (40.0, 400.0), True, {"zoom": 2.0})
    assert heard["display"] == [key]


def test_frames_decode_into_the_cache_with_their_modality_values(tmp_path, head_scan):
    session, _ = opened(tmp_path, head_scan)
    series = session.series[0]
    assert session.display_frame(series.key, 3) is None
    values = session.modality(series, 3)
    pixels, scale, offset = session.display_frame(series.key, 3)
    np.testing.assert_allclose(pixels.astype(np.float64) * scale + offset, series.load_frame(3), atol=1e-3)
    assert values.shape == (series.rows, series.columns)
    info = session.frame_info(series.key, 3)
    assert info["units"] == "HU" and info["window"] is not None and set(info["edges"]) == {"left", "right", "top", "bottom"}
    assert info["bottom_left"][0] == "Image 4 / 20"


def test_a_series_syncs_with_itself_and_not_with_another_frame_of_reference(tmp_path, head_scan):
    session, _ = opened(tmp_path, head_scan)
    session.add_scan(scan_paths([CT_SMALL]))
    head, small = session.series[0].key, session.series[1].key
    assert session.matching_index(head, 5, head) == 5
    synced, why = session.sync_relation(head, small)
    assert not synced and why in ("other frame of reference", "no frame of reference")
    assert session.matching_index(head, 5, small) is None


def test_mpr_meta_carries_the_series_window_and_inversion(tmp_path, head_scan):
    session, _ = opened(tmp_path, head_scan)
    key = session.series[0].key
    volume = object()
    _, meta = session.keep_mpr_volume(key, volume)
    assert meta["window"] != (35.0, 80.0) and meta["invert"] is False and meta["inverted"] is False
    session.update_display(key, window=(35, 80), inverted=True)
    kept_volume, meta = session.mpr_volume(key)
    assert kept_volume is volume and meta["window"] == (35.0, 80.0) and meta["inverted"] is True
    assert session.mpr_volume("another series") is None


def test_measurements_are_saved_with_the_study_and_read_back(tmp_path, head_scan):
    session, _ = opened(tmp_path, head_scan)
    series = session.series[0]
    spacing = series.frames[2].pixel_spacing
    measurement_id = session.add_measurement(series.key, 2, "distance", [(10.0, 10.0), (110.0, 10.0)])
    assert measurement_id is not None
    assert session.flush_saves()  # autosaved on a worker thread
    saved = json.loads(measurement_file(tmp_path / "measurements", series.study_uid).read_text())
    assert len(saved["measurements"]) == 1
    assert saved["measurements"][0]["values"]["length"] == pytest.approx(100 * spacing[1], rel=1e-6)
    # a new session (the app started again) reads the file, as the scan worker does
    again, _ = opened(tmp_path, head_scan)
    assert again.studies_to_read(again.series) == [series.study_uid]
    again.merge_saved(read_saved_measurements(again.measurement_folder, again.studies_to_read(again.series)))
    assert again.studies_to_read(again.series) == []
    [row] = again.measurement_rows()
    assert row["label"] == "Distance 1" and row["image"].endswith("#3")
    [drawn] = again.measurements_for(series.key, 2)
    again.rename_measurement(drawn["id"], "Skull width")
    again.delete_measurements([drawn["id"]])
    assert again.flush_saves()
    assert json.loads(measurement_file(tmp_path / "measurements", series.study_uid).read_text())["measurements"] == []


def test_a_damaged_measurement_file_is_reported_and_the_study_starts_empty(tmp_path, head_scan):
    session, heard = opened(tmp_path, head_scan)
    study = session.series[0].study_uid
    path = measurement_file(tmp_path / "measurements", study)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xff\xfe not json")
    session.merge_saved(read_saved_measurements(session.measurement_folder, [study]))
    assert session.measurement_rows() == []
    assert heard["messages"] and heard["messages"][0][0] == "warning"


def test_decoding_a_series_fills_the_cache_and_announces_each_frame(tmp_path, head_scan):
    session, _ = opened(tmp_path, head_scan)
    key = session.series[0].key
    decoded, failed = [], []
    steps, failures = drain(session.decode_series(key, lambda: False, lambda k, i: decoded.append(i),
                                                   lambda k, i, reason: failed.append(i)))
    assert failures == {} and failed == [] and sorted(decoded) == list(range(20))
    assert steps[-1].fraction == pytest.approx(1.0)
    series = session.series[0]
    first = session.cache.get(key, 0)
    assert first is not None and first.shape == (series.rows, series.columns)
    assert session.mark_loaded_if_complete(key)


def test_a_cancelled_decode_stops_and_the_mpr_volume_reads_what_is_missing(tmp_path, head_scan):
    session, _ = opened(tmp_path, head_scan)
    key = session.series[0].key
    _, failures = drain(session.decode_series(key, lambda: True, lambda k, i: None, lambda k, i, r: None))
    assert failures == {} and session.cache.get(key, 5) is None  # nothing decoded after a cancel
    steps, volume = drain(session.build_mpr_volume(key, lambda: False))
    series = session.series[0]
    assert steps[-1].message == "MPR: building the volume"
    assert volume is not None and volume.data.shape == (20, series.rows, series.columns)
    assert all(session.cache.get(key, i) is not None for i in range(20))  # the slices read are kept
