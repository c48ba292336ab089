"""The autosave writer: atomic writes on a worker thread, the newest text per file wins, flush
waits for the disk, and a failed write is reported instead of lost silently."""

from __future__ import annotations

import threading
import time

from healthfm_desktop.core.storage import atomic
from healthfm_desktop.core.storage.atomic import BackgroundWriter


def test_a_drag_of_saves_writes_the_last_one_and_returns_at_once(tmp_path, monkeypatch):
    written, real = [], atomic.atomic_write_text

    def slow_disk(path, text):  # an fsync of a slow network home folder
        time.sleep(0.05)
        written.append(text)
        real(path, text)

    monkeypatch.setattr(atomic, "atomic_write_text", slow_disk)
    writer = BackgroundWriter()
    target = tmp_path / "study.json"
    start = time.perf_counter()
    for step in range(40):
        writer.write(target, f'{{"step": {step}}}')
    assert time.perf_counter() - start < 0.05  # the caller (the UI thread) never waited for the disk
    assert writer.flush(5.0)
    assert target.read_text() == '{"step": 39}'
    assert written[-1] == '{"step": 39}' and len(written) < 40
    assert threading.current_thread().name != "atomic-writer"


def test_a_failed_write_is_reported(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    failures = []
    writer = BackgroundWriter(lambda path, exc: failures.append((path.name, type(exc).__name__)))
    writer.write(blocker / "study.json", "{}")
    assert writer.flush(5.0)
    assert failures and failures[0][0] == "study.json"
    writer.write(tmp_path / "ok.json", "{}")  # the writer goes on after a failure
    assert writer.flush(5.0) and (tmp_path / "ok.json").read_text() == "{}"


def test_a_reader_of_a_file_waits_for_its_pending_write(tmp_path, monkeypatch):
    """Another session opening the same study reads what the first one saved last, even while
    the disk is slow (the viewer's read_saved_measurements waits for the one shared writer)."""
    from healthfm_desktop.core.imaging.measure import Measurement, measurements_to_json
    from healthfm_desktop.core.imaging.viewer_session import measurement_file, read_saved_measurements

    target = measurement_file(tmp_path, "1.2.3")
    atomic.atomic_write_text(target, measurements_to_json([]))  # the study's earlier, empty save
    real = atomic.atomic_write_text

    def slow_disk(path, text):
        time.sleep(0.3)
        real(path, text)

    monkeypatch.setattr(atomic, "atomic_write_text", slow_disk)
    writer = atomic.background_writer()
    assert writer is atomic.background_writer()  # one per process
    line = Measurement("distance", [[1.0, 2.0], [30.0, 40.0]], "1.2.3", "1.2.3.4", "1.2.3.4.5",
                       values={"length_mm": 49.1})
    writer.write(target, measurements_to_json([line]))
    (found,) = read_saved_measurements(tmp_path, ["1.2.3"])  # at once: the write is still pending
    assert found.error is None and found.dropped == 0
    assert [(r["kind"], r["points"]) for r in found.records] == [("distance", [[1.0, 2.0], [30.0, 40.0]])]
