"""Image viewer figures, each against a baseline measured in the same run:

- W/L render of a 512x512 16-bit slice to a QImage (the viewport's path: core VOI function to
  uint8, wrapped in a QImage) against a plain numpy LUT (one ``np.take`` on a precomputed
  table, the cheapest possible rendering);
- opening a series in the Images workspace: time until the first image is on screen, and until
  every slice is decoded, against a plain loop of ``pydicom.dcmread`` + ``pixel_array`` run
  right after it; four times: decode worker processes started by the open (the first import
  of a session), already running (every later import), the same through the whole main window
  as a drop (routing, the Data quality report and the Images import together), and disabled
  (in-process decoding);
- the UI event loop's worst stall while the series loads on the workers (a 2 ms timer's
  longest gap), against the same decode run on the UI thread, and against the idle floor: the
  same probe for as long again right after the load, with nothing running (the machine's own
  scheduling delay, which no code of ours can go under); with ``--repeat N`` each figure is
  the median of N opens (the first open of the first mode is the session's first import);
  ``--dump-stalls FILE`` writes every thread's Python stack, sampled while the timer is late,
  for each gap over 40 ms (StallSampler: a thread reading ``sys._current_frames``);
- peak memory (numpy and Python allocations, tracemalloc) with the series open and the MPR
  view built, against the size of the series as an int16 volume.

    python benchmarks/bench_viewer.py [SERIES_FOLDER] [--repeat N] [--dump-stalls FILE] [--only PART ...]

On a shared Linux machine that groups processes by session (autogroup, printed first), a
process's nice ranks it only inside its session: to have others' load disturb the stall
figures less, give the benchmark a session of its own with a raised group priority (root):
``setsid sh -c 'echo -10 > /proc/self/autogroup && exec nice -n -10 python benchmarks/bench_viewer.py ...'``

PART: render, started, running, window (the whole-window drop), in-process, memory.

SERIES_FOLDER defaults to the CT (else MR) series under tests/data/dicom/series/.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HEALTHFM_HOME", tempfile.mkdtemp(prefix="healthfm-bench-"))

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# the viewer's decode worker processes import this script as __mp_main__ (multiprocessing's
# rule for the main module): keep Qt and the app out of them, as the app's own entry does
if __name__ != "__mp_main__":
    import numpy as np  # noqa: E402
    import pydicom  # noqa: E402
    from PySide6.QtCore import Qt, QTimer  # noqa: E402
    from PySide6.QtWidgets import QApplication  # noqa: E402

    from healthfm_desktop.controllers.images import ImagesController  # noqa: E402
    from healthfm_desktop.core.imaging.scanning import scan_paths  # noqa: E402
    from healthfm_desktop.views.image_viewer.rendering import qimage_from_uint8  # noqa: E402
    from healthfm_desktop.views.image_viewer.workspace import ImagesWorkspace  # noqa: E402

MODES = ("render", "started", "running", "window", "in-process", "memory")
SERIES_ROOT = REPO / "tests" / "data" / "dicom" / "series"


def default_series() -> Path:
    candidates = sorted(SERIES_ROOT.glob("CT_*")) + sorted(SERIES_ROOT.glob("MR_*"))
    if not candidates:
        raise SystemExit(f"no series under {SERIES_ROOT}; pass a folder")
    return candidates[0]


def timed(function, repeats: int) -> float:
    """Median seconds of ``function()`` over ``repeats`` runs after one warm-up."""
    function()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def bench_render(folder: Path) -> None:
    """A real 16-bit slice of the series when it is 512x512, else the slice tiled to 512x512."""
    result = scan_paths([folder])
    series = max(result.series, key=lambda s: s.frame_count)
    index = series.frame_count // 2
    stored = series.load_stored(index)
    modality = series.load_frame(index)
    if stored.shape != (512, 512):
        reps = (int(np.ceil(512 / stored.shape[0])), int(np.ceil(512 / stored.shape[1])))
        stored = np.ascontiguousarray(np.tile(stored, reps)[:512, :512])
        modality = np.ascontiguousarray(np.tile(modality, reps)[:512, :512])
    from healthfm_desktop.core.imaging.viewer_session import compact_frame, stored_scaling

    # what the viewer caches and draws: stored values + rescale, or whole-number values as int16
    scaling = stored_scaling(series)
    frame, scale, offset = (stored, *scaling) if scaling else (compact_frame(modality), 1.0, 0.0)
    center, width = (40.0, 400.0) if series.modality == "CT" else (float(np.median(modality)), float(np.ptp(modality)) / 2)
    lut = np.zeros(1 << 16, dtype=np.uint8)
    lut[:] = np.clip(np.arange(1 << 16) // 256, 0, 255)
    view = stored.view(np.uint16) if stored.dtype.itemsize == 2 else stored.astype(np.uint16)

    def ours() -> None:
        qimage_from_uint8(ImagesController.render_window(frame, center, width, False, scale, offset))

    def plain_lut() -> None:
        np.take(lut, view)

    ours_s, lut_s = timed(ours, 300), timed(plain_lut, 300)
    print(f"W/L render 512x512 16-bit to QImage: {ours_s / lut_s:.2f}x plain numpy LUT "
          f"({ours_s * 1e3:.2f} ms vs {lut_s * 1e3:.2f} ms; target < 4 ms)")


def pydicom_loop(folder: Path) -> float:
    started = time.perf_counter()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        pydicom.dcmread(path).pixel_array
    return time.perf_counter() - started


class StallSampler:
    """Every thread's Python stack (``sys._current_frames``), read by a thread of its own while
    the UI heartbeat is late: what held the UI thread or the GIL during a stall. It reads
    frames only (no signal handler, no native walk: faulthandler's watchdog, used before,
    segfaulted libpython when it fired during interpreter work). It needs the GIL itself, so a
    sample that comes much later than asked says the GIL was held all that time (C code that
    does not release it); the stacks it then sees are where that holder stood when it let go."""

    LATE_S = 0.015  # a heartbeat this late starts sampling
    EVERY_S = 0.003

    def __init__(self, file, threshold_s: float = 0.04):
        import threading

        self.file, self.threshold_s = file, threshold_s
        self.beat = time.perf_counter()
        self.samples: dict[float, list] = {}  # heartbeat a stall began after -> [(at, woke_late, stacks)]
        self._main = threading.main_thread().ident
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stall sampler", daemon=True)

    def start(self) -> "StallSampler":
        self.beat = time.perf_counter()
        self._thread.start()
        return self

    def _run(self) -> None:
        import threading

        asked = time.perf_counter()
        while not self._stop.wait(self.EVERY_S):
            now = time.perf_counter()
            woke_late, asked = now - asked - self.EVERY_S, now
            beat = self.beat
            if now - beat < self.LATE_S:
                continue
            names = {t.ident: t.name for t in threading.enumerate()}
            stacks = []
            for ident, frame in sys._current_frames().items():
                if ident == threading.get_ident():
                    continue
                lines = []
                while frame is not None and len(lines) < 40:
                    code = frame.f_code
                    lines.append((code.co_filename, frame.f_lineno, code.co_name))
                    frame = frame.f_back
                stacks.append(("MAIN" if ident == self._main else names.get(ident, str(ident)), lines))
            self.samples.setdefault(beat, []).append((now - beat, woke_late, stacks))

    def stop(self, ticks: list[float], label: str) -> None:
        """Write the samples of every gap of ``ticks`` over the threshold (the rest are dropped)."""
        self._stop.set()
        self._thread.join()
        for before, after in zip(ticks, ticks[1:]):
            if after - before < self.threshold_s:
                continue
            self.file.write(f"--- {label}stall of {(after - before) * 1e3:.0f} ms\n")
            for into, woke_late, stacks in self.samples.get(before, []):
                self.file.write(f"  sample {into * 1e3:.0f} ms into it (sampler woke {woke_late * 1e3:.0f} ms late)\n")
                for name, lines in sorted(stacks, key=lambda item: item[0] != "MAIN"):
                    if name != "MAIN" and lines and lines[0][2] in ("wait", "_wait_for_tstate_lock", "select", "poll"):
                        continue  # an idle worker waiting on its queue
                    self.file.write(f"    [{name}]\n")
                    for filename, lineno, function in lines[:14]:
                        self.file.write(f"      {_short(filename)}:{lineno} {function}\n")
        self.file.flush()


def _short(filename: str) -> str:
    for marker in ("/healthfm_desktop/", "/site-packages/", "/benchmarks/", "/lib/python3"):
        if marker in filename:
            return filename[filename.index(marker) + 1:]
    return filename


def _schedstat_reader():
    """A function giving the calling thread's (seconds on a CPU, seconds waiting for one) so
    far, from Linux's /proc schedstat; None where there is none. What is left of a stall is
    time the thread was blocked (on the GIL, a lock, I/O)."""
    import threading

    path = Path(f"/proc/self/task/{threading.get_native_id()}/schedstat")
    if not path.is_file():
        return None

    def read() -> tuple[float, float]:
        ran, waited, _ = path.read_text().split()
        return int(ran) / 1e9, int(waited) / 1e9

    return read


def gaps_of(app: "QApplication", seconds: float | None, until=None, dump=None,
            label: str = "") -> tuple[float, tuple[float, float] | None]:
    """The longest gap (s) between the ticks of a 2 ms timer on the UI thread while events are
    processed for ``seconds`` or ``until()`` is true, and how the UI thread spent it (seconds
    on a CPU, waiting for one; None off Linux); ``dump``: a file that gets every thread's
    stack, sampled while the timer is late, for each gap over 40 ms (StallSampler)."""
    ticks: list[float] = []
    spent: list[tuple[float, float]] = []
    schedstat = _schedstat_reader()
    ticker = QTimer()
    ticker.setInterval(2)
    sampler = StallSampler(dump).start() if dump is not None else None

    def tick() -> None:
        now = time.perf_counter()
        ticks.append(now)
        if schedstat is not None:
            spent.append(schedstat())
        if sampler is not None:
            sampler.beat = now

    ticker.timeout.connect(tick)
    ticker.start()
    started = time.perf_counter()
    while (until() if until else time.perf_counter() - started < seconds) and time.perf_counter() - started < 120:
        app.processEvents()
        time.sleep(0.0005)
    ticker.stop()
    if sampler is not None:
        sampler.stop(ticks, label)
    if len(ticks) < 2:
        return 0.0, None
    worst = max(range(len(ticks) - 1), key=lambda i: ticks[i + 1] - ticks[i])
    split = None
    if spent:
        split = (spent[worst + 1][0] - spent[worst][0], spent[worst + 1][1] - spent[worst][1])
    return ticks[worst + 1] - ticks[worst], split


def bench_open(app: "QApplication", folder: Path, mode: str = "", dump=None, whole_app: bool = False) -> dict:
    """One open of ``folder`` in a fresh workspace; ``mode`` names how the decoding ran.
    ``whole_app``: the whole main window, opened as a drop is (routing, Data quality, Images).
    Returns its figures (seconds)."""
    if whole_app:
        from healthfm_desktop.app import build_main_window

        window = build_main_window()
        controller, workspace = window.controllers["images"], window.workspace_widget("images")
        window.resize(1400, 900)
        window.show()
        window.show_workspace("images")
        open_series = lambda: window.app_controller.open_paths([folder])  # noqa: E731
    else:
        window = None
        controller = ImagesController()
        workspace = ImagesWorkspace(controller)
        workspace.resize(1400, 900)
        workspace.show()
        open_series = lambda: controller.open_paths([folder])  # noqa: E731
    app.processEvents()
    marks: dict[str, float] = {}

    def on_frame(key: str, index: int) -> None:
        if "first" not in marks and workspace.active_viewport().frame() is not None:
            workspace.active_viewport().repaint()  # on screen, not just scheduled
            marks["first"] = time.perf_counter()

    def on_preview(pixels, info) -> None:
        workspace.active_viewport().repaint()
        marks.setdefault("preview", time.perf_counter())

    controller.preview_ready.connect(on_preview, Qt.ConnectionType.QueuedConnection)
    controller.frame_ready.connect(on_frame)
    controller.series_loaded.connect(lambda key: marks.setdefault("loaded", time.perf_counter()))
    started = time.perf_counter()
    QTimer.singleShot(0, open_series)
    worst, split = gaps_of(app, None, until=lambda: "loaded" not in marks, dump=dump, label=f"{mode}open: ")
    if "loaded" not in marks:
        raise SystemExit("the series did not finish loading within 120 s")
    first, loaded = marks["first"] - started, marks["loaded"] - started
    if whole_app:  # the Data quality report may still be read
        from healthfm_desktop.controllers.data_quality import DataQualityController

        quality = window.findChild(DataQualityController)
        while quality.busy or any(c.busy for c in window.controllers.values()):
            app.processEvents()
            time.sleep(0.005)
    floor, _ = gaps_of(app, loaded)  # as long again, nothing loading
    frames = controller.series[0].frame_count
    baseline = pydicom_loop(folder)
    preview = marks.get("preview", marks["first"]) - started

    # the same decode on the UI thread: the event loop is blocked for all of it
    series = scan_paths([folder]).series[0]
    blocked = time.perf_counter()
    for index in range(series.frame_count):
        series.load_frame(index)
    blocked = time.perf_counter() - blocked
    controller.cancel_jobs()
    for widget in (workspace, window) if whole_app else (workspace,):
        widget.close()
        widget.deleteLater()
    controller.deleteLater()
    app.processEvents()
    return {"preview": preview, "first": first, "loaded": loaded, "baseline": baseline, "frames": frames,
            "worst": worst, "floor": floor, "blocked": blocked, "split": split}


def report_open(mode: str, runs: list[dict]) -> None:
    med = {key: statistics.median(run[key] for run in runs) for key in runs[0] if key != "split"}
    n = f"median of {len(runs)}" if len(runs) > 1 else "one open"
    print(f"{mode}first image on screen (shown while indexing): {med['preview'] / med['baseline']:.2f}x plain pydicom loop "
          f"over the series ({med['preview']:.3f} s vs {med['baseline']:.3f} s; target < 0.5 s; {n})")
    print(f"{mode}first image of the indexed series (scrollable): {med['first'] / med['baseline']:.2f}x plain pydicom loop "
          f"({med['first']:.3f} s vs {med['baseline']:.3f} s)")
    print(f"{mode}full open (index + decode {med['frames']:.0f} slices, on workers): {med['loaded'] / med['baseline']:.2f}x "
          f"plain pydicom loop ({med['loaded']:.3f} s vs {med['baseline']:.3f} s)")
    beyond = statistics.median(run["worst"] - run["floor"] for run in runs)

    def each(run: dict) -> str:
        text = f"{run['worst'] * 1e3:.0f}/{run['floor'] * 1e3:.0f}"
        if run["split"] is not None:  # the UI thread during the stall: on a CPU, waiting for one, blocked
            ran, waited = run["split"]
            text += f" ({ran * 1e3:.0f}+{waited * 1e3:.0f}+{(run['worst'] - ran - waited) * 1e3:.0f})"
        return text

    print(f"{mode}event-loop max stall while loading: {med['worst'] * 1e3:.1f} ms against an idle floor of "
          f"{med['floor'] * 1e3:.1f} ms, {beyond * 1e3:.1f} ms beyond it (goal <= 50 ms beyond the floor; "
          f"{med['worst'] / max(med['floor'], 1e-9):.2f}x the floor); "
          f"{med['worst'] / med['blocked']:.3f}x decoding on the UI thread ({med['blocked'] * 1e3:.0f} ms); each open: "
          + ", ".join(each(run) for run in runs) + " ms (stall/floor (UI thread on a CPU + waiting for one + "
          "blocked)); load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg()))


def bench_mpr_memory(app: "QApplication", folder: Path) -> None:
    import gc
    import tracemalloc

    gc.collect()
    tracemalloc.start()
    controller = ImagesController()
    workspace = ImagesWorkspace(controller)
    workspace.resize(1400, 900)
    workspace.show()
    ready: list = []
    controller.mpr_ready.connect(lambda volume, meta: ready.append(volume))
    controller.mpr_failed.connect(lambda text: ready.append(text))
    controller.series_loaded.connect(lambda key: workspace.set_mpr_mode(True))
    controller.open_paths([folder])
    deadline = time.perf_counter() + 180
    while not ready and time.perf_counter() < deadline:
        app.processEvents()
        time.sleep(0.001)
    while controller.busy and time.perf_counter() < deadline:
        app.processEvents()
        time.sleep(0.001)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if not ready or isinstance(ready[0], str):
        print(f"peak memory with MPR open: not measured ({ready[0] if ready else 'MPR did not finish'})")
        return
    series = controller.series[0]
    int16_volume = series.frame_count * series.rows * series.columns * 2
    pixels = controller.session.cache._bytes + ready[0].nbytes  # 2-D frame cache + MPR volume
    print(f"pixel memory with the series and MPR open: {pixels / int16_volume:.2f}x the int16 volume "
          f"({pixels / 1024**2:.1f} MiB vs {int16_volume / 1024**2:.1f} MiB; target <= 2x)")
    print(f"peak memory of all allocations (pixels + DICOM headers of every file, tracemalloc): "
          f"{peak / int16_volume:.2f}x the int16 volume ({peak / 1024**2:.1f} MiB vs {int16_volume / 1024**2:.1f} MiB)")


def priority() -> str:
    """This process's nice, and its scheduler group's where Linux groups processes by session
    (autogroup: then only the group's nice ranks it against other sessions' processes)."""
    text = f"nice {os.getpriority(os.PRIO_PROCESS, 0)}" if hasattr(os, "getpriority") else "nice ?"
    group = Path("/proc/self/autogroup")
    if group.is_file() and Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1":
        text += f", session group nice {group.read_text().split()[-1]}"
    return text


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=1, help="opens per mode (medians)")
    parser.add_argument("--dump-stalls", type=Path, default=None, help="file for the stacks of stalls over 40 ms")
    parser.add_argument("--only", nargs="+", choices=MODES, default=list(MODES),
                        help="parts to run (default: all): " + ", ".join(MODES))
    args = parser.parse_args()
    only = set(args.only)
    folder = args.folder or default_series()
    dump = open(args.dump_stalls, "w") if args.dump_stalls else None
    app = QApplication.instance() or QApplication([])
    print(f"series {folder.name}; {priority()}; load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
    if "render" in only:
        bench_render(folder)
    from healthfm_desktop.core.imaging import parallel_decode

    repeat = max(args.repeat, 1)
    if "started" in only:
        runs = []
        for _ in range(repeat):
            # the decode worker processes start with the first import of a session, then stay up
            parallel_decode.shutdown_shared_pool()
            runs.append(bench_open(app, folder, "[decode workers started by this open] ", dump))
        report_open("[decode workers started by this open] ", runs)
    parallel_decode.warm_shared_pool()
    if "running" in only:
        report_open("[decode workers running] ",
                    [bench_open(app, folder, "[decode workers running] ", dump) for _ in range(repeat)])
    if "window" in only:
        report_open("[whole window, a drop; decode workers running] ",
                    [bench_open(app, folder, "[whole window] ", dump, whole_app=True) for _ in range(repeat)])
    if "in-process" in only:
        parallel_decode.set_decode_processes(0)
        report_open("[decode in-process, workers disabled] ",
                    [bench_open(app, folder, "[decode in-process, workers disabled] ", dump) for _ in range(repeat)])
        parallel_decode.set_decode_processes(None)
    if "memory" in only:
        bench_mpr_memory(app, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
