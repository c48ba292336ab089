"""The one place worker processes are started (DICOM decoding, describe, the index build,
substructure matching): the start method, the executor, and an ordered map with an in-process
fallback.

Why 'forkserver' (Linux, macOS) and never 'fork': the app is a Qt process with threads running;
forking it copies locks held by other threads. The fork server is a fresh interpreter, started
once per process, that imports what ``preload`` names (the first pool to start it decides) and
forks the workers from that clean state. It does not re-run ``__main__`` (unlike 'spawn'), so
``python -m healthfm_desktop`` and pytest are safe; the frozen bundle's entry point calls
``multiprocessing.freeze_support()`` for PyInstaller's re-entry. Windows has no fork server:
'spawn' is used there. Every failure to start leaves the caller's work in-process."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

log = logging.getLogger(__name__)


def start_method() -> str | None:
    """forkserver, else spawn; None where neither exists (the work then stays in-process)."""
    methods = multiprocessing.get_all_start_methods()
    if sys.platform != "win32" and "forkserver" in methods:
        return "forkserver"
    if "spawn" in methods:
        return "spawn"
    return None


def process_pool(workers: int, initializer: Callable[[], None] | None = None, preload: list[str] | None = None,
                 purpose: str = "worker") -> ProcessPoolExecutor | None:
    """A ProcessPoolExecutor of ``workers`` processes with the safe start method, or None (logged,
    with ``purpose`` in the message) when none can start here. Raises nothing."""
    method = start_method()
    if method is None:
        log.warning("%s processes unavailable here (no safe start method): working in-process", purpose)
        return None
    try:
        context = multiprocessing.get_context(method)
        if preload and method == "forkserver":
            context.set_forkserver_preload(preload)
        return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=initializer)
    except (OSError, ValueError, RuntimeError) as exc:
        log.warning("%s processes unavailable, working in-process (%s)", purpose, exc)
        return None


#: what the chemistry pools' workers run (describe, the index build, substructure matching): the
#: fork server imports it once when one of them starts it, and each worker is forked ready (~1 s
#: of imports a worker otherwise, against RDKit parse + fingerprint chunks of a few seconds)
CHEMISTRY_PRELOAD = ["healthfm_desktop.core.chemistry.search_index"]


def map_ordered(tasks: Iterable[tuple[Callable, object]], workers: int | None = None,
                initializer: Callable[[], None] | None = None, local: Callable[[Callable], bool] = lambda fn: False,
                purpose: str = "worker", cancel: Callable[[], bool] | None = None,
                preload: list[str] | None = None) -> Iterator:
    """``fn(arg)`` for every ``(fn, arg)``, in input order, on ``workers`` processes (default:
    every core), at most a few tasks per worker in flight (memory stays flat). One process, a
    pool that cannot start or breaks, and the tasks ``local(fn)`` says are cheap, run
    in-process: the results are the same either way. ``cancel()`` true stops the map (pending
    tasks are cancelled) before the next result."""
    workers = workers or os.cpu_count() or 1
    pool = process_pool(workers, initializer, preload=preload, purpose=purpose) if workers > 1 else None
    if pool is None:
        for fn, arg in tasks:
            if cancel and cancel():
                return
            yield fn(arg)
        return
    pending: deque = deque()
    try:
        broken = False
        for fn, arg in tasks:
            if cancel and cancel():
                return
            future = None
            if not broken and not local(fn):
                try:
                    future = pool.submit(fn, arg)
                except (BrokenProcessPool, RuntimeError, OSError) as exc:
                    log.warning("%s pool failed (%s): going on in-process", purpose, exc)
                    broken = True
            pending.append((fn, arg, future))
            while len(pending) > workers * 3:
                broken = (yield from _resolve_one(pending, purpose, cancel)) or broken
        while pending:
            if cancel and cancel():
                return
            broken = (yield from _resolve_one(pending, purpose, cancel)) or broken
    except _Cancelled:
        return
    finally:
        for _, _, future in pending:
            if future is not None:
                future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)


class _Cancelled(Exception):
    """cancel() turned true while a task's result was awaited."""


#: how often a map with a cancel flag looks at it while it waits for a worker's result
CANCEL_POLL_S = 0.05


def _result(future, cancel: Callable[[], bool] | None):
    """The task's result; with ``cancel``, looked at every CANCEL_POLL_S while waiting, so that a
    cancel stops the map within that time however long the task runs (the pool's shutdown then
    drops the tasks not started)."""
    if cancel is None:
        return future.result()
    while True:
        try:
            return future.result(timeout=CANCEL_POLL_S)
        except TimeoutError:
            if cancel():
                future.cancel()
                raise _Cancelled() from None


def _resolve_one(pending: deque, purpose: str, cancel: Callable[[], bool] | None = None):
    fn, arg, future = pending.popleft()
    if future is None:
        yield fn(arg)
        return False
    try:
        result = _result(future, cancel)
    except BrokenProcessPool as exc:
        log.warning("%s process died (%s): going on in-process", purpose, exc)
        yield fn(arg)
        return True
    yield result
    return False
