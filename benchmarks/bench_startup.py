"""Cold start to a shown main window, against a bare PySide6 QMainWindow in the same run; and the
UI event loop's worst stall while a 2 s job runs on the worker, against the same job run on the
UI thread. Usage: python benchmarks/bench_startup.py"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

APP = """
import time, sys
t0 = float(sys.argv[1])
from healthfm_desktop.app import build_application, build_main_window
app = build_application([])
w = build_main_window(); w.show(); app.processEvents()
print(time.time() - t0)
"""
BARE = """
import time, sys
t0 = float(sys.argv[1])
from PySide6.QtWidgets import QApplication, QMainWindow
app = QApplication([])
w = QMainWindow(); w.show(); app.processEvents()
print(time.time() - t0)
"""


def cold_start(code: str, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code, repr(time.time())], capture_output=True, text=True,
                             env={**os.environ, "HEALTHFM_HOME": os.environ.get("HEALTHFM_HOME", "/tmp/healthfm-bench")})
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def worker_stall() -> tuple[float, float]:
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from healthfm_desktop.controllers.workers import Job, Progress

    app = QApplication.instance() or QApplication([])

    def busy(seconds: float):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            sum(i * i for i in range(20_000))
            yield Progress(None)
        return True

    clock = QElapsedTimer()
    clock.start()
    gaps, last = [], [0]

    def tick():
        now = clock.elapsed()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(5)
    loop = QEventLoop()
    job = Job(busy, 2.0)
    job.finished.connect(loop.quit)
    last[0] = clock.elapsed()
    job.start()
    loop.exec()
    timer.stop()
    with_worker = max(gaps) - 5
    start = time.perf_counter()
    for _ in busy(2.0):
        pass
    on_ui_thread = (time.perf_counter() - start) * 1000  # the UI would not tick at all
    app.processEvents()
    return with_worker, on_ui_thread


def main() -> None:
    ours = cold_start(APP)
    bare = cold_start(BARE)
    print(f"cold start to main window: {ours / bare:.2f}x bare PySide6 window ({ours * 1000:.0f} ms vs {bare * 1000:.0f} ms)")
    stall, blocked = worker_stall()
    print(f"max event-loop stall during a 2 s job: {stall / blocked:.3f}x same job on the UI thread "
          f"({stall:.0f} ms vs {blocked:.0f} ms)")


if __name__ == "__main__":
    main()
