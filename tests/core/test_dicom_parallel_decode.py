"""Decoding in worker processes (core.imaging.parallel_decode): the one-pass path (each file
handed to a decode worker as it is indexed) and the pool path give exactly the pixels pydicom
gives, every file of the manifest; the pool falls back to in-process decoding when disabled,
unavailable or broken; a bad file still gets its reason and stops nothing; no worker outlives
the pool."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from healthfm_desktop.core import processes
from healthfm_desktop.core.errors import UnreadableFileError
from healthfm_desktop.core.imaging import parallel_decode
from healthfm_desktop.core.imaging.scanning import scan_paths
from tests.core.dicom_manifest import CT_SERIES, DICOM
from tests.core.test_dicom_decode import DECODABLE, LOSSY_JPEG, _reference_frames


@pytest.fixture(autouse=True)
def fresh_pool():
    """Each test starts without a pool and leaves none running."""
    parallel_decode.set_decode_processes(None)
    yield
    parallel_decode.set_decode_processes(None)


def _pool() -> parallel_decode.DecodePool:
    parallel_decode.set_decode_processes(2)
    pool = parallel_decode.shared_pool(start=True)
    assert pool is not None and pool.ready, "the decode pool did not start"
    return pool


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a worker that has exited stays a zombie until its parent, the forkserver, reaps it
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return not Path("/proc/self/stat").exists()  # gone meanwhile; or no /proc: signal 0 decides


def test_one_pass_decode_in_workers_equals_pydicom_for_every_manifest_file():
    pool = _pool()
    paths = [DICOM / row["path"] for row in DECODABLE]
    ahead = parallel_decode.DecodeAhead(pool)
    result = scan_paths(paths, decode_ahead=ahead)
    assert not result.rejected
    handed = [i for s in result.series for i in s.instances if i.pending_pixels is not None]
    assert ahead.offered and handed, "no file went to a decode worker while indexing"
    rows = {str(DICOM / row["path"]): row for row in DECODABLE}
    checked = 0
    references: dict[str, np.ndarray] = {}
    for series in result.series:
        decoded = dict(series.iter_frames(stored=True, processes=2))
        assert sorted(decoded) == list(range(series.frame_count))
        for index, pixels in decoded.items():
            frame = series.frames[index]
            row = rows[str(frame.instance.source)]
            key = str(frame.instance.source)
            if key not in references:
                references[key] = _reference_frames(frame.instance.source.path)[1]
            expected = references[key][frame.frame_index]
            assert pixels.shape == expected.shape, row["path"]
            if row["transfer_syntax_uid"] in LOSSY_JPEG:
                # lossy JPEG: decoders may differ by IDCT rounding (as in test_dicom_decode)
                np.testing.assert_allclose(pixels.astype(int), expected.astype(int), atol=3, err_msg=row["path"])
            else:
                assert pixels.dtype == expected.dtype.newbyteorder("="), row["path"]  # same type, native order
                np.testing.assert_array_equal(pixels, expected, err_msg=row["path"])
            checked += 1
    assert checked >= len(DECODABLE)
    assert all(i.pending_pixels is None for s in result.series for i in s.instances), "decoded twice / kept twice"


def test_pool_and_in_process_give_identical_display_values():
    _pool()
    series = scan_paths([CT_SERIES]).series[0]
    in_workers = dict(series.iter_frames(processes=2))
    in_process = dict(series.iter_frames(processes=0))
    assert list(in_workers) == list(range(series.frame_count))
    for index in in_process:
        assert in_workers[index].dtype == np.float32
        np.testing.assert_array_equal(in_workers[index], in_process[index])


def test_disabled_pool_decodes_in_process(monkeypatch):
    parallel_decode.set_decode_processes(0)
    assert parallel_decode.shared_pool() is None and parallel_decode.pool_for(500) is None
    series = scan_paths([CT_SERIES]).series[0]
    assert len(dict(series.iter_frames(processes=2))) == series.frame_count  # asked for, not available
    parallel_decode.set_decode_processes(None)
    monkeypatch.setenv(parallel_decode.PROCESSES_ENV, "1")
    assert parallel_decode.shared_pool() is None


def test_a_pool_that_cannot_start_falls_back(monkeypatch):
    parallel_decode.set_decode_processes(2)
    monkeypatch.setattr(processes, "start_method", lambda: "no-such-start-method")
    pool = parallel_decode.shared_pool()
    assert pool is not None and not pool.start()
    assert pool.failed and parallel_decode.shared_pool() is None
    series = scan_paths([CT_SERIES]).series[0]
    frames = dict(series.iter_frames(range(5), stored=True, processes=2))
    assert sorted(frames) == list(range(5))


def test_a_worker_that_dies_leaves_the_rest_to_this_process():
    pool = _pool()
    series = scan_paths([CT_SERIES]).series[0]
    expected = dict(series.iter_frames(stored=True, processes=0))
    for pid in pool.worker_pids():
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    got = dict(series.iter_frames(stored=True, processes=2))
    assert sorted(got) == sorted(expected)
    for index in expected:
        np.testing.assert_array_equal(got[index], expected[index])
    assert parallel_decode.shared_pool() is None  # a broken pool is not used again


def test_bad_files_in_a_folder_keep_their_reason_and_stop_nothing(tmp_path):
    pool = _pool()
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sorted(CT_SERIES.iterdir())[:6]
    for path in good:
        shutil.copy(path, folder / path.name)
    for name in ("MR_truncated_pixeldata.dcm", "SR_no_pixel_data.dcm", "NM_jpeg2000_corrupt_codestream.dcm"):
        shutil.copy(DICOM / "bad" / name, folder / name)
    (folder / "notes.txt").write_text("not an image")
    result = scan_paths([folder], decode_ahead=parallel_decode.DecodeAhead(pool))
    reasons = {os.path.basename(path): reason for path, reason in result.rejected}
    assert "truncated" in reasons["MR_truncated_pixeldata.dcm"]
    assert "no pixel data" in reasons["SR_no_pixel_data.dcm"]
    assert "not a DICOM file" in reasons["notes.txt"]
    ct = next(s for s in result.series if s.frame_count == len(good))
    assert len(dict(ct.iter_frames(processes=2))) == len(good)
    corrupt = next(s for s in result.series if s.first.source.path.name == "NM_jpeg2000_corrupt_codestream.dcm")
    with pytest.raises(UnreadableFileError, match="corrupt or undecodable"):
        list(corrupt.iter_frames(processes=2))


def test_shutdown_leaves_no_worker_process():
    pool = _pool()
    pids = pool.worker_pids()
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    parallel_decode.shutdown_shared_pool()
    assert not pool.ready
    deadline = time.monotonic() + 10  # the forkserver reaps its exited children on its own time
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids)
    # the next use starts a new pool
    assert parallel_decode.warm_shared_pool()


def test_workers_yield_the_cpu_to_the_app():
    """The workers run below the app's priority, so that the UI thread gets a core before them
    on a busy machine (the pixels they decode are the same: the first test)."""
    pool = _pool()
    pids = pool.worker_pids()
    expected = [min(os.getpriority(os.PRIO_PROCESS, 0) + parallel_decode.WORKER_NICE, 19)] * len(pids)

    def priorities() -> list[int]:
        return [os.getpriority(os.PRIO_PROCESS, pid) for pid in pids]

    # both pings may have been answered by the first worker while the second still starts
    deadline = time.monotonic() + 20
    while priorities() != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pids and priorities() == expected
