"""The longest GUI event-loop gap while the adaptation panel trains on 1,000 labelled items,
measured by a 5 ms QTimer heartbeat, against the same heartbeat with the GUI idle (the floor).

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_adapt_stall.py [--kind image|text|molecule] [--items 1000]

Prints the longest gap, the 99th percentile and the count over 50 ms, for each training (ABAB:
BLAS threads limited as shipped, then not) and for the idle floor measured just before each of
them, plus the wall times. On a shared machine the others' load sets the floor; run it as
`nice -n -10 ...` (root) to measure what the training itself costs the UI."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


class Heartbeat:
    """Ticks every ``interval_ms`` on the UI thread; a gap is the time between two ticks."""

    def __init__(self, interval_ms: int = 5):
        from PySide6.QtCore import Qt, QTimer

        self.gaps: list[float] = []
        self.last: float | None = None
        self.step = ""  # what the training reported last, to name the step a long gap fell in
        self.long: list[tuple[float, str]] = []
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        if self.last is not None:
            self.gaps.append(now - self.last)
            if now - self.last > 0.05:
                self.long.append((now - self.last, self.step))
        self.last = now

    def start(self) -> None:
        self.gaps, self.last, self.long = [], None, []
        self.timer.start()

    def stop(self) -> np.ndarray:
        self.timer.stop()
        return np.asarray(self.gaps) * 1000.0


def describe(what: str, gaps_ms: np.ndarray) -> None:
    print(f"{what}: longest gap {gaps_ms.max():.1f} ms, p99 {np.percentile(gaps_ms, 99):.1f} ms, "
          f"median {np.median(gaps_ms):.1f} ms, {int((gaps_ms > 50).sum())} gaps over 50 ms "
          f"of {len(gaps_ms)} ticks", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", default="image", choices=["image", "text", "molecule"])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2, help="ABAB rounds of: BLAS limited, not limited")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="healthfm-stall-")
    os.environ["HEALTHFM_HOME"] = home  # the user folder the panel saves labels and the model in

    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QApplication

    from bench_adapt import items_of
    from healthfm_desktop.controllers.adaptation import WorkspaceAdaptation
    from healthfm_desktop.core.foundation.encoders import load_encoder
    from healthfm_desktop.views.adaptation_panel import AdaptationPanel

    app = QApplication.instance() or QApplication([])
    items = items_of(args.kind, args.items)
    workspace = {"image": "images", "text": "notes", "molecule": "molecules"}[args.kind]

    def source(ids):
        from healthfm_desktop.core.foundation.datasets import Items

        chosen = set(items.ids if ids is None else ids)
        out = Items(args.kind)
        for item_id, payload in zip(items.ids, items.payloads):
            if item_id in chosen:
                out.add(item_id, payload, None)
        return out

    heartbeat = Heartbeat()
    controller = WorkspaceAdaptation(workspace, args.kind, source)
    panel = AdaptationPanel(controller, lambda: [])
    panel.resize(480, 900)
    panel.show()
    controller.labels.tag_each(dict(zip(items.ids, items.labels)))
    load_encoder(args.kind)  # the workspace has loaded it before the user trains
    def spin(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
            time.sleep(0.001)

    warmed: list = []
    controller.warmed.finished.connect(lambda: warmed.append(True))  # queued: not missed before spin
    heartbeat.start()
    while not warmed:
        spin(0.05)
    spin(1.0)  # the panel's start-up model listing
    describe("opening the panel (head libraries imported on a worker)", heartbeat.stop())

    import contextlib

    from healthfm_desktop.controllers import adaptation

    limited = adaptation.leave_a_core
    variants = ["one core left to the UI (as shipped)", "every core to the training"]
    results: dict[str, list] = {what: [] for what in ["first training in the process"] + variants}
    print(f"nice value of this process: {os.nice(0)}", flush=True)
    for round_number, what in enumerate(["first training in the process"] + variants * args.rounds):  # then ABAB
        adaptation.leave_a_core = contextlib.nullcontext if what.startswith("every") else limited
        heartbeat.start()
        spin(5.0)
        floor = heartbeat.stop()
        describe("idle GUI just before (floor)", floor)
        loop = QEventLoop()
        outcome: dict = {}
        on_trained = lambda summary: (outcome.update(summary=summary), loop.quit())  # noqa: E731
        on_failed = lambda message: (outcome.update(error=message), loop.quit())  # noqa: E731
        on_progress = lambda fraction, step: setattr(heartbeat, "step", f"{fraction:.0%} {step}")  # noqa: E731
        controller.trained.connect(on_trained)
        controller.failed.connect(on_failed)
        controller.progress.connect(on_progress)
        panel.name.setText(f"stall_{args.kind}_{round_number}")
        heartbeat.start()
        started = time.perf_counter()
        panel.train_button.click()
        loop.exec()
        seconds = time.perf_counter() - started
        gaps = heartbeat.stop()
        for signal, slot in ((controller.trained, on_trained), (controller.failed, on_failed),
                             (controller.progress, on_progress)):
            signal.disconnect(slot)
        if "error" in outcome:
            sys.exit(f"training failed: {outcome['error']}")
        describe(f"adapt train {args.kind} in the panel, {what} ({len(items)} items, {seconds:.1f} s)", gaps)
        for gap, step in heartbeat.long:
            print(f"  gap {gap * 1000:.0f} ms after progress {step!r}")
        results[what].append((gaps.max(), seconds, floor.max()))
        spin(0.5)  # the model list refresh after training
    adaptation.leave_a_core = limited
    for what, runs in results.items():
        print(f"median of {len(runs)}: {what}: longest gap {np.median([r[0] for r in runs]):.1f} ms "
              f"(idle floor just before: {np.median([r[2] for r in runs]):.1f} ms), "
              f"training {np.median([r[1] for r in runs]):.1f} s", flush=True)
    print("metrics shown:", panel.metrics.text()[:120].replace("<br>", " | "))

if __name__ == "__main__":
    main()
