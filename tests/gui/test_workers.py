"""The one worker abstraction: the UI event loop keeps turning while a 2 s job runs, cancel
stops a job at its next step, and errors reach the UI as a message for a person."""

from __future__ import annotations

import gc
import time

import pytest
from PySide6.QtCore import QElapsedTimer, QTimer

from healthfm_desktop.controllers.workers import Job, Progress
from healthfm_desktop.core.errors import UnreadableFileError


def _busy_python(seconds: float):
    """Pure-Python work (holds the GIL between switches: the worst case for the UI thread)."""
    end = time.perf_counter() + seconds
    step = 0
    while time.perf_counter() < end:
        total = 0
        for i in range(20_000):
            total += i * i
        step += 1
        if step % 10 == 0:
            yield Progress(min(1.0, 1 - (end - time.perf_counter()) / seconds), f"step {step}")
    return step


def measure_max_stall(qtbot, job: Job, tick_ms: int = 5) -> float:
    """Largest gap, in ms, between two event-loop ticks while ``job`` runs."""
    clock = QElapsedTimer()
    clock.start()
    gaps = []
    last = [clock.elapsed()]

    def tick():
        now = clock.elapsed()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(tick_ms)
    with qtbot.waitSignal(job.finished, timeout=20_000):
        job.start()
    timer.stop()
    assert len(gaps) > 50
    return max(gaps) - tick_ms


@pytest.fixture
def startup_heap_frozen():
    """As the app does after start-up (app.build_main_window): long-lived objects leave the
    cyclic collector's sight, so a full collection of everything the test session imported
    (spaCy, RDKit, torch for the training tests...) does not land inside the measurement."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


def test_event_loop_never_stalls_during_a_two_second_job(qtbot, startup_heap_frozen):
    job = Job(_busy_python, 2.0)
    results, progress = [], []
    job.result.connect(results.append)
    job.progress.connect(progress.append)
    stall = measure_max_stall(qtbot, job)
    assert results and results[0] > 0
    assert progress and all(isinstance(p, Progress) for p in progress)
    assert stall < 50, f"event loop stalled {stall:.0f} ms"


def test_cancel_stops_a_generator_job_at_its_next_step(qtbot):
    steps = []

    def counting():
        for i in range(1000):
            steps.append(i)
            time.sleep(0.01)
            yield Progress(i / 1000)
        return "completed"

    job = Job(counting)
    results = []
    job.result.connect(results.append)
    with qtbot.waitSignal(job.cancelled, timeout=5000):
        job.start()
        qtbot.wait(100)
        job.cancel()
    qtbot.waitUntil(lambda: not job.is_running, timeout=5000)
    assert results == []
    assert 0 < len(steps) < 200


def test_user_error_becomes_its_message(qtbot):
    def failing():
        raise UnreadableFileError("scan.dcm: truncated pixel data")

    job = Job(failing)
    with qtbot.waitSignal(job.error, timeout=5000) as blocker:
        job.start()
    assert blocker.args == ["scan.dcm: truncated pixel data"]


def test_unexpected_error_is_named_not_swallowed(qtbot):
    def buggy():
        return {}["missing"]

    job = Job(buggy)
    with qtbot.waitSignal(job.error, timeout=5000) as blocker:
        job.start()
    assert blocker.args[0].startswith("Unexpected error (KeyError)")


@pytest.mark.parametrize("value", [0.5, 1])
def test_numbers_yielded_are_progress(qtbot, value):
    def gen():
        yield value
        return "done"

    job = Job(gen)
    progress = []
    job.progress.connect(progress.append)
    with qtbot.waitSignal(job.finished, timeout=5000):
        job.start()
    assert progress == [Progress(float(value))]
