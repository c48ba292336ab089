"""The one place worker processes are started (DICOM decoding, describe, the index build,
substructure matching): the start method, the executor, and an ordered map with an in-process
fallback.

Why 'forkserver' (Linux, macOS) and never 'fork': the app is a Qt process with threads running;
forking it copies locks held by other threads. The fork server is a fresh interpreter, started
once per process, that imports what ``preload`` names (the first pool to start it decides) and
forks the workers from that clean state. It does not re-run ``__main__`` (unlike 'spawn'), so
``python -m healthfm_desktop`` and pytest are safe; the frozen bundle's entry point calls
``multiprocessing.freeze_support()`` for PyInstaller's re-entry. Windows has no fork server:
'spawn' is used there. Every failure to start leaves the caller's work in-process.

A ``RecordBudget`` gives each record of a task (a list of records) a time limit: the worker
notes in shared memory which record it is on and since when, and the map kills a worker that
stays on one record past the limit (a C library call cannot be interrupted from inside),
makes that record's result the budget's error, starts a fresh pool and goes on in order."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

log = logging.getLogger(__name__)


def start_method() -> str | None:
    """forkserver, else spawn; None where neither exists (the work then stays in-process)."""
    methods = multiprocessing.get_all_start_methods()
    if sys.platform != "win32" and "forkserver" in methods:
        return "forkserver"
    if "spawn" in methods:
        return "spawn"
    return None


def process_pool(workers: int, initializer: Callable[..., None] | None = None, preload: list[str] | None = None,
                 purpose: str = "worker", initargs: tuple = ()) -> ProcessPoolExecutor | None:
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
        return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=initializer,
                                   initargs=initargs)
    except (OSError, ValueError, RuntimeError) as exc:
        log.warning("%s processes unavailable, working in-process (%s)", purpose, exc)
        return None


#: what the chemistry pools' workers run (describe, the index build, substructure matching): the
#: fork server imports it once when one of them starts it, and each worker is forked ready (~1 s
#: of imports a worker otherwise, against RDKit parse + fingerprint chunks of a few seconds)
CHEMISTRY_PRELOAD = ["healthfm_desktop.core.chemistry.search_index"]


@dataclass(frozen=True)
class RecordBudget:
    """At most ``seconds`` per record. With it, each task's argument is a list of records and its
    function returns a list with one result per record; ``overrun(record, seconds)`` is the
    result of a record that ran past the limit (e.g. an error row)."""

    seconds: float
    overrun: Callable[[object, float], object]


def map_ordered(tasks: Iterable[tuple[Callable, object]], workers: int | None = None,
                initializer: Callable[[], None] | None = None, local: Callable[[Callable], bool] = lambda fn: False,
                purpose: str = "worker", cancel: Callable[[], bool] | None = None,
                budget: RecordBudget | None = None, preload: list[str] | None = None) -> Iterator:
    """``fn(arg)`` for every ``(fn, arg)``, in input order, on ``workers`` processes (default:
    every core), at most a few tasks per worker in flight (memory stays flat). One process, a
    pool that cannot start or breaks, and the tasks ``local(fn)`` says are cheap, run
    in-process: the results are the same either way. ``cancel()`` true stops the map (pending
    tasks are cancelled) before the next result. ``budget``: see RecordBudget (in-process work
    has none: only the size limits of its inputs bound it). ``preload``: modules the fork
    server imports once (see process_pool), so that a replaced worker starts in a moment."""
    workers = workers or os.cpu_count() or 1
    if budget is not None and workers > 1:
        runner = _BudgetedMap(workers, initializer, local, purpose, cancel, budget, preload)
        if runner.start():
            yield from runner.run(tasks)
            return
        workers = 1
    pool = process_pool(workers, initializer, preload, purpose=purpose) if workers > 1 else None
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


# --- the per-record time budget ---------------------------------------------------------------

_SLOT_FIELDS = 4  # record number + 1 (0: not started), its start (time.monotonic), worker pid, record number + 1 again
_worker_slots = None  # in a worker: the pool's shared array


def _budget_worker_start(slots, initializer) -> None:
    global _worker_slots
    _worker_slots = slots
    if initializer is not None:
        initializer()


def _run_budgeted(slot: int, fn: Callable, records: list) -> list:
    """In a worker: ``fn`` one record at a time, noting which record runs and since when. The
    record number is written before and after the time (read back only when both agree)."""
    base = slot * _SLOT_FIELDS
    pid = float(os.getpid())
    out: list = []
    for k, record in enumerate(records):
        _worker_slots[base] = k + 1
        _worker_slots[base + 1] = time.monotonic()
        _worker_slots[base + 2] = pid
        _worker_slots[base + 3] = k + 1
        out.extend(fn([record]))
    _worker_slots[base] = _worker_slots[base + 3] = 0
    return out


class _Entry:
    """One pending task or part of one: a task a budget split is yielded as one result, its parts
    joined (``last`` marks the part that completes it)."""

    __slots__ = ("fn", "records", "future", "slot", "value", "last")

    def __init__(self, fn, records, last=True):
        self.fn, self.records, self.future, self.slot, self.value, self.last = fn, records, None, -1, None, last


class _BudgetedMap:
    def __init__(self, workers, initializer, local, purpose, cancel, budget: RecordBudget, preload=None):
        self.workers, self.initializer, self.local, self.purpose = workers, initializer, local, purpose
        self.preload = preload
        self.cancel, self.budget = cancel, budget
        self.slot_count = workers * 4 + 8  # more than the tasks ever in flight
        self.next_slot = 0
        self.pool = None
        self.slots = None

    def start(self) -> bool:
        method = start_method()
        if method is None:
            return False
        try:
            self.slots = multiprocessing.get_context(method).Array("d", self.slot_count * _SLOT_FIELDS, lock=False)
        except (OSError, ValueError) as exc:
            log.warning("%s: no shared memory for the time budget (%s)", self.purpose, exc)
            return False
        self.pool = process_pool(self.workers, _budget_worker_start, self.preload, purpose=self.purpose,
                                 initargs=(self.slots, self.initializer))
        return self.pool is not None

    def _submit(self, entry: _Entry) -> None:
        """Send the entry to the pool; without one (or for ``local`` work) it runs in-process
        when its turn comes (``_resolve``)."""
        if self.pool is None or self.local(entry.fn) or not entry.records:
            return
        entry.slot = self.next_slot
        self.next_slot = (self.next_slot + 1) % self.slot_count
        base = entry.slot * _SLOT_FIELDS
        for k in range(_SLOT_FIELDS):
            self.slots[base + k] = 0
        try:
            entry.future = self.pool.submit(_run_budgeted, entry.slot, entry.fn, entry.records)
        except (BrokenProcessPool, RuntimeError, OSError) as exc:
            log.warning("%s pool failed (%s): going on in-process", self.purpose, exc)
            self._stop_pool()

    def run(self, tasks) -> Iterator:
        pending: deque[_Entry] = deque()
        joined: list = []
        try:
            for fn, records in tasks:
                if self.cancel and self.cancel():
                    return
                entry = _Entry(fn, list(records))
                self._submit(entry)
                pending.append(entry)
                while len(pending) > self.workers * 3:
                    yield from self._resolve(pending, joined)
            while pending:
                if self.cancel and self.cancel():
                    return
                yield from self._resolve(pending, joined)
        except _Cancelled:
            return
        finally:
            for entry in pending:
                if entry.future is not None:
                    entry.future.cancel()
            if self.pool is not None:
                self.pool.shutdown(wait=False, cancel_futures=True)

    def _resolve(self, pending: deque, joined: list) -> Iterator:
        entry = pending[0]
        if entry.future is not None:
            value = self._wait(entry, pending)
            if value is _SPLIT:
                return
            entry.value = value
        elif entry.value is None:  # in-process: local work, or no pool left
            entry.value = entry.fn(entry.records) if entry.records else []
        pending.popleft()
        joined.extend(entry.value)
        if entry.last:
            result = list(joined)
            joined.clear()
            yield result

    def _wait(self, entry: _Entry, pending: deque):
        """The entry's result; a record past its budget: the worker killed, the entry split
        around that record and everything pending resubmitted to a fresh pool (_SPLIT)."""
        while True:
            try:
                return entry.future.result(timeout=CANCEL_POLL_S)
            except TimeoutError:
                if self.cancel and self.cancel():
                    entry.future.cancel()
                    raise _Cancelled() from None
                overrun = self._overrun(entry)
                if overrun is not None:
                    self._split(entry, pending, *overrun)
                    return _SPLIT
            except BrokenProcessPool as exc:
                # a worker died on its own (not one we stopped): the rest runs in-process, as
                # map_ordered does without a budget (a pool that cannot keep workers alive would
                # otherwise be restarted for ever)
                log.warning("%s process died (%s): going on in-process", self.purpose, exc)
                self._stop_pool(pending)
                return entry.fn(entry.records)

    def _overrun(self, entry: _Entry) -> tuple[int, int] | None:
        base = entry.slot * _SLOT_FIELDS
        started, since, pid, again = (self.slots[base + k] for k in range(_SLOT_FIELDS))
        if not started or started != again or time.monotonic() - since <= self.budget.seconds:
            return None
        return int(started) - 1, int(pid)

    def _split(self, entry: _Entry, pending: deque, index: int, pid: int) -> None:
        log.warning("%s: a record ran past its %.3g s time budget: its worker is stopped, the run goes on",
                    self.purpose, self.budget.seconds)
        try:
            os.kill(pid, signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
        except OSError:
            pass
        records = entry.records
        before = _Entry(entry.fn, records[:index], last=False)
        stopped = _Entry(entry.fn, [], last=False)
        stopped.value = [self.budget.overrun(records[index], self.budget.seconds)]
        after = _Entry(entry.fn, records[index + 1 :], last=entry.last)
        pending.popleft()
        pending.extendleft([after, stopped, before])
        self._restart(pending)

    def _keep_finished(self, pending: deque) -> None:
        for entry in pending:
            future = entry.future
            if future is not None and future.done() and not future.cancelled() and future.exception() is None:
                entry.value = future.result()
            entry.future = None

    def _stop_pool(self, pending: deque | None = None) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        if pending is not None:
            self._keep_finished(pending)

    def _restart(self, pending: deque) -> None:
        """A fresh pool (the old one lost the stopped worker); every pending entry without a
        result is submitted to it again."""
        self._stop_pool(pending)
        self.pool = process_pool(self.workers, _budget_worker_start, self.preload, purpose=self.purpose,
                                 initargs=(self.slots, self.initializer))
        for entry in pending:
            if entry.value is None:
                self._submit(entry)


_SPLIT = object()
