"""The one worker abstraction: the UI event loop keeps turning while a 2 s job runs, cancel
stops a job at its next step, and errors reach the UI as a message for a person."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

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
    from PySide6.QtCore import QEventLoop

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
    loop = QEventLoop()
    job.finished.connect(loop.quit)
    QTimer.singleShot(20_000, loop.quit)
    job.start()
    loop.exec()
    timer.stop()
    assert len(gaps) > 50
    return max(gaps) - tick_ms


STALL_SCRIPT = """
import os, sys
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, sys.argv[1])
from PySide6.QtWidgets import QApplication
from tests.gui.test_workers import Job, _busy_python, measure_max_stall
app = QApplication([])
job = Job(_busy_python, 2.0)
results = []
job.result.connect(results.append)
stall = measure_max_stall(None, job)
print(stall, results[0] if results else 0)
"""


def test_event_loop_never_stalls_during_a_two_second_job():
    """Measured in a process of its own, like the app: in the test session the event loop also
    serves the timers and widgets that earlier GUI tests left behind, which is not the worker's
    doing."""
    repo = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-c", STALL_SCRIPT, repo], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    stall, steps = out.stdout.split()[-2:]
    assert int(steps) > 0
    assert float(stall) < 50, f"event loop stalled {float(stall):.0f} ms"


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
