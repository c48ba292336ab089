"""The one worker abstraction. A job is a function or a generator function run on Qt's thread
pool (superqt's thread workers underneath). A generator job yields ``Progress`` between steps,
which is also where it can be cancelled; its ``return`` value is the result. Everything comes
back to the UI thread as signals: progress, result, error (a message for a person), cancelled,
finished (always last)."""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, Signal
from superqt.utils import create_worker

from healthfm_desktop.core.errors import UserFacingError
from healthfm_desktop.core.events import Progress

log = logging.getLogger(__name__)

# A worker running pure-Python code holds the GIL for up to the switch interval (5 ms by
# default) each time the UI thread asks for it, and one turn of the event loop asks many
# times: 60-250 ms stalls were measured during a 2 s job. 1 ms keeps them far under 50 ms.
sys.setswitchinterval(0.001)


#: shortest time between two progress updates sent to the UI thread
PROGRESS_INTERVAL_S = 0.02


def _paced(func: Callable[..., Any], *args: Any, **kwargs: Any):
    """Run generator ``func``, passing its yields on at most every PROGRESS_INTERVAL_S.

    Each yield that reaches superqt becomes a queued event for the UI thread; a job that yields
    every millisecond would flood the event loop (stalls of ~70 ms were measured). Cancellation
    is checked at the yields passed on, so it still takes effect within one interval."""
    generator = func(*args, **kwargs)
    last = 0.0
    try:
        while True:
            try:
                value = next(generator)
            except StopIteration as stop:
                return stop.value
            now = time.perf_counter()
            if now - last >= PROGRESS_INTERVAL_S:
                last = now
                yield value
    finally:
        generator.close()  # a cancelled job's own cleanup (finally blocks) runs now


def relay_progress(steps):
    """A core step generator as a job: its steps, ``(fraction, message)`` tuples or objects
    with ``fraction`` and ``message``, become Progress; its return value is the job's result.
    Closing this (Cancel) closes the core generator too, so its own cleanup runs."""
    try:
        while True:
            try:
                step = next(steps)
            except StopIteration as stop:
                return stop.value
            yield step if isinstance(step, Progress) else (
                Progress(*step) if isinstance(step, tuple) else Progress(step.fraction, step.message))
    finally:
        steps.close()


def describe_error(exc: BaseException) -> str:
    """A message for the user. Unexpected errors say so, and the log keeps only their type
    (the text of an arbitrary exception can carry patient data)."""
    if isinstance(exc, UserFacingError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "Not enough memory for this operation."
    log.error("unexpected %s in a background job", type(exc).__name__)
    return f"Unexpected error ({type(exc).__name__}): {exc}"


class Job(QObject):
    progress = Signal(object)  # Progress
    result = Signal(object)
    error = Signal(str)
    cancelled = Signal()
    finished = Signal()

    def __init__(self, func: Callable[..., Any], *args: Any, parent: QObject | None = None, **kwargs: Any):
        super().__init__(parent)
        self.is_generator = inspect.isgeneratorfunction(func)
        self._cancel_requested = False
        self._done = False
        if self.is_generator:
            args = (func, *args)
            func = _paced
        self._worker = create_worker(func, *args, _start_thread=False, _ignore_errors=True, **kwargs)
        self._worker.returned.connect(self._on_returned)
        self._worker.errored.connect(self._on_errored)
        self._worker.finished.connect(self._on_finished)
        if self.is_generator:
            self._worker.yielded.connect(self._on_yielded)
            self._worker.aborted.connect(self._on_aborted)

    def start(self) -> "Job":
        self._worker.start()
        return self

    def cancel(self) -> None:
        """Stop at the job's next yield (generator jobs); a plain function's result is dropped."""
        self._cancel_requested = True
        if self.is_generator:
            self._worker.quit()

    @property
    def is_running(self) -> bool:
        return not self._done

    def _on_yielded(self, value: Any) -> None:
        if isinstance(value, Progress):
            self.progress.emit(value)
        elif isinstance(value, (int, float)):
            self.progress.emit(Progress(float(value)))

    def _on_returned(self, value: Any) -> None:
        if self._cancel_requested:
            self.cancelled.emit()
        else:
            self.result.emit(value)

    def _on_errored(self, exc: BaseException) -> None:
        self.error.emit(describe_error(exc))

    def _on_aborted(self) -> None:
        self.cancelled.emit()

    def _on_finished(self) -> None:
        self._done = True
        self.finished.emit()


def run_job(
    func: Callable[..., Any],
    *args: Any,
    on_result: Callable[[Any], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_finished: Callable[[], None] | None = None,
    parent: QObject | None = None,
    **kwargs: Any,
) -> Job:
    """Create, connect and start a job. Keep the returned Job referenced while it runs."""
    job = Job(func, *args, parent=parent, **kwargs)
    if on_result:
        job.result.connect(on_result)
    if on_error:
        job.error.connect(on_error)
    if on_progress:
        job.progress.connect(on_progress)
    if on_finished:
        job.finished.connect(on_finished)
    return job.start()


class AppWidePool:
    """A process pool the whole app shares (the Images decode pool, the Molecules substructure
    workers): started on a worker job, at most one start at a time, and stopped when the app
    quits. The start job belongs to no controller (the pool outlives a workspace closed while it
    starts), so it neither shows as busy nor is cancelled.

    The pool's core module is imported on the calling (UI) thread before the job runs: a first
    import of pydicom on two threads at once (this job and, say, a PACS echo started right after
    launch) fails inside pydicom's own circular imports. ``needs_start(module)`` says whether the
    pool has to be started; ``start`` and ``stop`` name the module's functions doing it."""

    def __init__(self, label: str, module: str, needs_start: Callable[[Any], bool], start: str, stop: str):
        self.label, self.module, self.needs_start = label, module, needs_start
        self._start, self._stop = start, stop
        self.jobs: set[Job] = set()

    def start(self) -> None:
        if self.jobs:
            return
        module = importlib.import_module(self.module)
        if not self.needs_start(module):
            return
        job = run_job(getattr(module, self._start), on_error=lambda text: log.warning("%s: %s", self.label, text))
        self.jobs.add(job)
        job.finished.connect(lambda: self.jobs.discard(job))

    def stop(self) -> None:
        """What app quit runs: stop the workers, if anything ever imported their module."""
        module = sys.modules.get(self.module)
        if module is not None:
            getattr(module, self._stop)()

    def stop_when_the_app_quits(self) -> None:
        app = QCoreApplication.instance()
        if app is not None and self not in getattr(app, "_healthfm_pools_stopped_on_quit", ()):
            app.aboutToQuit.connect(self.stop)
            app._healthfm_pools_stopped_on_quit = (*getattr(app, "_healthfm_pools_stopped_on_quit", ()), self)
