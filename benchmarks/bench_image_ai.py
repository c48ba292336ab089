"""Latency of the shipped image models as the app runs them (preprocessing + ONNX + post-
processing), p50 and p95 over 200 runs each, against a bare onnxruntime run of the same model
on a ready tensor measured in the same process; INT8 against float; the forced-CPU fallback;
and the longest stall of a Qt event loop while an analysis runs on a worker.

    python benchmarks/bench_image_ai.py [--runs 200]

Prints lines ``<what>: <ratio>x <baseline name> (<ours> vs <baseline>)``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from healthfm_desktop.core.imaging import raster  # noqa: E402
from healthfm_desktop.core.imaging.ai import preprocessing as prep  # noqa: E402
from healthfm_desktop.core.imaging.ai.classification import classify  # noqa: E402
from healthfm_desktop.core.imaging.ai.models import default_classifier, default_segmenter, load_model  # noqa: E402
from healthfm_desktop.core.imaging.ai.segmentation import segment  # noqa: E402
from healthfm_desktop.core.inference.registry import load_registry  # noqa: E402

CLASSIFIER, SEGMENTER = default_classifier(), default_segmenter()  # chosen by manifest task

SAMPLES = REPO / "resources" / "samples" / "images"


def percentiles(fn, runs: int) -> tuple[float, float]:
    for _ in range(5):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def line(what: str, ours: tuple[float, float], base: tuple[float, float], base_name: str) -> None:
    print(f"{what} p50: {ours[0] / base[0]:.2f}x {base_name} ({ours[0]:.2f} ms vs {base[0]:.2f} ms)")
    print(f"{what} p95: {ours[1] / base[1]:.2f}x {base_name} ({ours[1]:.2f} ms vs {base[1]:.2f} ms)")


def bench_models(runs: int) -> None:
    registry = load_registry()
    xray = prep.read_image(SAMPLES / "chest_xray_pneumonia.dcm")
    big_xray = prep.SourceImage(raster.resize(xray.pixels, (1024, 1024), "linear"), kind="array")
    ultrasound = prep.read_image(SAMPLES / "fetal_head_ultrasound.dcm")
    full_ultrasound = prep.SourceImage(raster.resize(ultrasound.pixels, (800, 540), "linear"), kind="array")

    for base, image, big, run, name in (
        (CLASSIFIER, xray, big_xray, lambda im, m: classify(im, m), "classifier"),
        (SEGMENTER, ultrasound, full_ultrasound, lambda im, m: segment(im, 0.5, m), "segmenter"),
    ):
        float_model = load_model(base, quantized=False, provider="CPUExecutionProvider")
        tensor = prep.classifier_input(image) if base == CLASSIFIER else prep.segmenter_input(image)[0]
        raw = percentiles(lambda: float_model.session.run(None, {"image": tensor}), runs)
        app = percentiles(lambda: run(image, float_model), runs)
        line(f"{name} app path ({image.shape[1]}x{image.shape[0]}, with preprocessing)", app, raw, "raw onnxruntime run")
        app_big = percentiles(lambda: run(big, float_model), runs)
        line(f"{name} app path ({big.shape[1]}x{big.shape[0]} input)", app_big, raw, "raw onnxruntime run")
        read = percentiles(lambda: run(prep.read_image(image.path), float_model), runs)
        line(f"{name} file read + app path", read, raw, "raw onnxruntime run")
        if base + "_int8" in registry.manifests:
            int8_model = load_model(base, quantized=True, provider="CPUExecutionProvider")
            int8 = percentiles(lambda: run(image, int8_model), runs)
            line(f"{name} INT8 app path", int8, app, "float app path")
        pooled, _, _ = registry.session(base, override="CPUExecutionProvider", threads=0)
        default_pool = percentiles(lambda: pooled.run(None, {"image": tensor}), runs)
        line(f"{name} raw run, the app's 1 intra-op thread", raw, default_pool, "raw run with onnxruntime's default thread pool")
        fallback = load_model(base, quantized=False, provider="CUDAExecutionProvider")
        forced = percentiles(lambda: run(image, fallback), runs)
        line(f"{name} with CUDA forced (fell back to {fallback.provider.active})", forced, app, "float app path")


def bench_ui_stall() -> None:
    """Longest gap between 5 ms timer ticks of a Qt event loop while Analyse runs on a worker,
    against the same loop left idle for as long (on a busy machine the OS alone causes gaps)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QThreadPool, QTimer
    from PySide6.QtWidgets import QApplication

    from healthfm_desktop.controllers.workers import run_job
    from healthfm_desktop.core.imaging.ai.analysis import analyse

    app = QApplication.instance() or QApplication([])
    image = prep.read_image(SAMPLES / "fetal_head_ultrasound.dcm")

    def longest_gap(start_work) -> tuple[float, float]:
        clock = QElapsedTimer()
        gaps: list[float] = []
        last = [0.0]

        def tick():
            now = clock.nsecsElapsed() / 1e6
            gaps.append(now - last[0])
            last[0] = now

        timer = QTimer()
        timer.setInterval(5)
        timer.timeout.connect(tick)
        loop = QEventLoop()
        clock.start()
        timer.start()
        started = time.perf_counter()
        keep = start_work(loop)
        loop.exec()
        timer.stop()
        QThreadPool.globalInstance().waitForDone(10_000)
        app.processEvents()  # let the worker's last signals arrive before the job goes away
        del keep
        return max(gaps[1:]), (time.perf_counter() - started) * 1000

    def work():
        for _ in range(20):
            steps = analyse(image, "auto", None)
            try:
                while True:
                    yield next(steps)[0]
            except StopIteration:
                pass

    busy_gap, busy_ms = longest_gap(lambda loop: run_job(work, on_finished=loop.quit))
    idle_gap, _ = longest_gap(lambda loop: QTimer.singleShot(int(busy_ms), loop.quit))
    print(f"UI event loop longest gap, 20 analyses on a worker: {busy_gap / idle_gap:.2f}x idle event loop "
          f"({busy_gap:.1f} ms vs {idle_gap:.1f} ms over {busy_ms:.0f} ms)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args(argv)
    print(f"CPU cores visible: {os.cpu_count()}")
    bench_models(args.runs)
    bench_ui_stall()
    return 0


if __name__ == "__main__":
    sys.exit(main())
