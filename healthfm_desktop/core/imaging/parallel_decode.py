"""Decoding DICOM pixel data on every core: a pool of worker processes that decode objects and
send back their stored values as numpy arrays.

Why processes: the codec bindings (pyjpegls/CharLS, pylibjpeg-libjpeg and -openjpeg, GDCM) hold
the GIL while they decode (measured: two threads decode the 140-slice JPEG-LS CT no faster than
one, 0.97-1.35x), so threads never use a second core.

The workers start through core/processes.py (forkserver, never fork from the Qt process); the
fork server preloads pydicom and the codecs (``_PRELOAD``) when the decode pool is the first to
start it, so a worker starts in milliseconds instead of the ~0.5 s an import of pydicom costs.

Results travel back pickled through the pool's pipe: for a 512x512 int16 slice that costs
~0.3 ms against 5-15 ms of decoding (measured; shared memory would save little and needs
cleanup on every path).

Every way this can fail leaves decoding in-process: ``shared_pool()`` returns None when worker
processes are disabled (``HEALTHFM_DECODE_PROCESSES=0`` or ``set_decode_processes(0)``), on a
one-core machine, or after the pool failed to start; a pool whose worker died
(``BrokenProcessPool``) is dropped and its unfinished work is decoded in-process.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from healthfm_desktop.core import processes
from healthfm_desktop.core.errors import UnreadableFileError
from healthfm_desktop.core.imaging.decoding import DecodeRequest, decode_stored

log = logging.getLogger(__name__)

#: environment variable: number of decode processes (0 or 1 disables the pool)
PROCESSES_ENV = "HEALTHFM_DECODE_PROCESSES"
#: with a pool still to be started, series with fewer objects than this decode in-process.
#: Starting the pool costs what importing pydicom costs (the fork server does it): measured
#: 1.0-1.1 s at load 11 on 2 cores, while a 512x512 JPEG-LS slice took 13-16 ms in-process;
#: two workers save half of that per slice, so the start pays from ~140-150 slices there
#: (~110 on an idle machine: 0.4 s vs 7 ms). The viewer starts the pool ahead of any import.
MIN_OBJECTS_COLD = 128
#: with the pool running, it pays from this many objects on (one round trip ~1 ms)
MIN_OBJECTS_WARM = 4
#: objects per worker task (fewer messages between the processes; see ``_decode_many``)
TASK_OBJECTS = 4
#: decode-ahead during indexing keeps at most this many decoded bytes waiting for a reader
DECODE_AHEAD_BYTES = 512 * 1024**2

_PRELOAD = ["healthfm_desktop.core.imaging.parallel_decode"]
#: how much lower the workers' CPU priority is than the app's (a nice increment). The UI thread
#: and the workers share one scheduler group (the app's session): at equal priority two busy
#: workers kept a waking UI thread off both cores for tens of ms on a loaded machine (the
#: Linux scheduler's own wait of the UI thread, read from /proc's schedstat, was most of each
#: stall); below it, the UI thread gets a core first and the workers every cycle it leaves
WORKER_NICE = 10


def _configured_processes() -> int:
    raw = os.environ.get(PROCESSES_ENV, "").strip()
    if raw:
        try:
            return max(0, int(raw))
        except ValueError:
            log.warning("ignoring %s=%r (not a number)", PROCESSES_ENV, raw)
    return max(1, min(4, os.cpu_count() or 1))


def _worker_start() -> None:
    """Runs once in each worker: quiet warnings, make sure the decoder plugins are loaded, and
    yield the CPU to the app (``WORKER_NICE``)."""
    import warnings

    warnings.simplefilter("ignore")
    if hasattr(os, "nice"):  # POSIX; raising one's own nice needs no privilege
        try:
            os.nice(WORKER_NICE)
        except OSError:
            pass
    try:  # a worker must not die on the parent's Ctrl+C: the parent shuts the pool down
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):
        pass


def _ping() -> int:
    return os.getpid()


def _decode(request: DecodeRequest) -> np.ndarray | BaseException:
    """All frames of one object, or the reason it cannot be decoded (returned, not raised, so
    the parent gets a ``UnreadableFileError`` with the message, never a remote traceback)."""
    try:
        return decode_stored(request, None)  # type: ignore[arg-type]
    except UnreadableFileError as exc:
        return exc
    except MemoryError:
        return UnreadableFileError("the image is too large to decode in the memory available")
    except Exception as exc:  # corrupt data makes the codecs fail in many ways
        return UnreadableFileError(f"pixel data could not be decoded ({type(exc).__name__}: {exc})")


def _decode_many(requests: list[DecodeRequest]) -> list[np.ndarray | BaseException]:
    """Several objects per task: a few messages instead of one per file keeps the parent's
    threads from handing the GIL back and forth for every slice (on a loaded machine each
    handoff waits for the scheduler)."""
    return [_decode(request) for request in requests]


class DecodePart:
    """The share of one object in a task that decodes several (``Future``-like)."""

    __slots__ = ("future", "position")

    def __init__(self, future: Future, position: int):
        self.future = future
        self.position = position

    def done(self) -> bool:
        return self.future.done()

    def running(self) -> bool:
        return self.future.running()

    def result(self, timeout: float | None = None) -> np.ndarray | BaseException:
        return self.future.result(timeout)[self.position]

    def cancel(self) -> bool:
        """Cancels the whole task (the other objects of it then decode where they are read)."""
        return self.future.cancel()


class DecodePool:
    """A process pool that decodes DICOM objects. ``start()`` launches the workers and waits
    until each answers (call it on a worker thread: it takes a few hundred ms the first time);
    ``submit`` / ``decode`` use it. Thread-safe."""

    def __init__(self, processes: int):
        self.processes = processes
        self._executor: ProcessPoolExecutor | None = None
        self._in_flight = 0  # tasks submitted and not done (queued or decoding)
        self._in_flight_lock = threading.Lock()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._failed: str | None = None
        self.start_seconds: float | None = None

    @property
    def ready(self) -> bool:
        """The workers are up and answered: submitting costs no start-up."""
        return self._ready.is_set() and self._failed is None

    @property
    def starting(self) -> bool:
        """Another thread is starting the workers right now."""
        return self._lock.locked() and not self._ready.is_set() and self._failed is None

    @property
    def failed(self) -> str | None:
        return self._failed

    def start(self) -> bool:
        """Start the workers (idempotent). False when the pool cannot run here."""
        with self._lock:
            if self._failed is not None:
                return False
            if self._ready.is_set():
                return True
            started = time.perf_counter()
            try:
                executor = processes.process_pool(self.processes, initializer=_worker_start, preload=_PRELOAD,
                                                  purpose="decode")
                if executor is None:
                    raise RuntimeError("no worker process can start here")
                # one round trip per worker: they are all forked and answering afterwards
                pings = [executor.submit(_ping) for _ in range(self.processes)]
                for ping in pings:
                    ping.result(timeout=20)
            except Exception as exc:  # noqa: BLE001 - any failure means: decode in-process
                self._failed = f"{type(exc).__name__}: {exc}"
                log.warning("decode worker processes unavailable, decoding in-process (%s)", self._failed)
                return False
            self._executor = executor
            self.start_seconds = time.perf_counter() - started
            self._ready.set()
            log.debug("decode pool of %d processes started in %.2f s", self.processes, self.start_seconds)
            return True

    def submit(self, request: DecodeRequest) -> Future:
        """Decode one object in a worker; the future's result is the array or an exception
        value. Raises ``BrokenProcessPool`` / ``RuntimeError`` when the pool is gone."""
        return self._counted(self._executor_or_raise().submit(_decode, request))

    def submit_many(self, requests: list[DecodeRequest]) -> list[DecodePart]:
        """Decode several objects in one worker task; one ``DecodePart`` per request."""
        future = self._counted(self._executor_or_raise().submit(_decode_many, list(requests)))
        return [DecodePart(future, i) for i in range(len(requests))]

    def _counted(self, future: Future) -> Future:
        with self._in_flight_lock:
            self._in_flight += 1
        future.add_done_callback(self._task_done)
        return future

    def _task_done(self, _future: Future) -> None:
        with self._in_flight_lock:
            self._in_flight -= 1

    @property
    def idle(self) -> bool:
        """Running, with a worker that has nothing to do: a task submitted now starts at once."""
        return self.ready and self._in_flight < self.processes

    def _executor_or_raise(self) -> ProcessPoolExecutor:
        executor = self._executor
        if executor is None or not self.ready:
            raise RuntimeError("the decode pool is not running")
        return executor

    def mark_broken(self, reason: str) -> None:
        """A worker died: stop using this pool (its unfinished work is decoded in-process)."""
        log.warning("decode pool broken (%s): decoding in-process from now on", reason)
        self._failed = reason
        self.shutdown()

    def decode_instances(
        self,
        instances: Iterable,
        lookahead: int | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> Iterator[np.ndarray | BaseException]:
        """All frames of each object (or the exception value saying why not), in the order of
        ``instances``. An object already handed to a worker while indexing (``DecodeAhead``)
        is not decoded again. At most ``lookahead`` objects are in flight, so memory stays
        flat; if the pool breaks, the rest is decoded in-process."""
        instances = list(instances)
        # a few objects per task, and still several tasks per worker to balance the load
        chunk = max(1, min(TASK_OBJECTS, len(instances) // (self.processes * 4)))
        lookahead = lookahead or self.processes * 4 * chunk
        pending: deque[list] = deque()  # [instance, part or None], in order
        source = iter(instances)
        broken = False

        def submit(batch: list[list]) -> None:
            nonlocal broken
            if broken or not batch:
                return
            try:
                parts = self.submit_many([DecodeRequest.from_instance(entry[0]) for entry in batch])
            except (BrokenProcessPool, RuntimeError) as exc:
                broken = True
                if self.ready:
                    self.mark_broken(f"{type(exc).__name__}: {exc}")
                return
            for entry, part in zip(batch, parts):
                entry[1] = part

        def fill() -> None:
            batch: list[list] = []
            while len(pending) < lookahead:
                instance = next(source, None)
                if instance is None:
                    break
                entry = [instance, take_pending(instance)]
                pending.append(entry)
                if entry[1] is None:
                    batch.append(entry)
                    if len(batch) >= chunk:
                        submit(batch)
                        batch = []
            submit(batch)

        try:
            fill()
            while pending:
                if cancel is not None and cancel():
                    return
                instance, part = pending.popleft()
                yield self._outcome(instance, part)
                fill()
        finally:
            for _, part in pending:
                if part is not None:
                    part.cancel()

    def _outcome(self, instance, future: DecodePart | Future | None) -> np.ndarray | BaseException:
        if future is not None:
            try:
                return future.result()
            except BrokenProcessPool as exc:
                if self.ready:
                    self.mark_broken(f"{type(exc).__name__}: {exc}")
            except CancelledError:
                pass
            except Exception as exc:  # noqa: BLE001 - e.g. a result that could not be pickled
                return UnreadableFileError(f"pixel data could not be decoded ({type(exc).__name__}: {exc})")
        return _decode(instance)

    def shutdown(self) -> None:
        """Stop the workers now (queued work is cancelled); safe to call twice."""
        with self._lock:
            executor, self._executor = self._executor, None
            self._ready.clear()
            if self._failed is None:
                self._failed = "shut down"
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def worker_pids(self) -> list[int]:
        executor = self._executor
        processes = getattr(executor, "_processes", None) or {}
        return list(processes)


_shared: DecodePool | None = None
_shared_lock = threading.Lock()
_override: int | None = None


def set_decode_processes(count: int | None) -> None:
    """Use ``count`` decode processes from now on (0 or 1: decode in-process; None: the
    default). A running shared pool is shut down."""
    global _override
    _override = count
    shutdown_shared_pool()


def decode_processes() -> int:
    return _configured_processes() if _override is None else max(0, _override)


def shared_pool(start: bool = False) -> DecodePool | None:
    """The app's decode pool, or None when decoding runs in-process (disabled, one core, or it
    failed to start). ``start=True`` also starts it (blocking; call from a worker thread)."""
    global _shared
    count = decode_processes()
    if count < 2 or processes.start_method() is None:
        return None
    with _shared_lock:
        if _shared is None or (_shared.failed is not None and _shared.failed == "shut down"):
            _shared = DecodePool(count)
        pool = _shared
    if pool.failed is not None:
        return None
    if start and not pool.start():
        return None
    return pool


def warm_shared_pool() -> bool:
    """Start the shared pool now (for a worker thread, ahead of a big load). True when ready."""
    return shared_pool(start=True) is not None


def shutdown_shared_pool() -> None:
    """Stop the shared pool's workers (app close, tests); a later use starts a new pool."""
    global _shared
    with _shared_lock:
        pool, _shared = _shared, None
    if pool is not None:
        pool.shutdown()


atexit.register(shutdown_shared_pool)


def pool_for(object_count: int) -> DecodePool | None:
    """The pool to decode ``object_count`` objects with, or None for in-process: a running
    pool (or one another thread is starting: the caller decodes in-process until it is ready)
    from MIN_OBJECTS_WARM objects on; a pool nobody started only from MIN_OBJECTS_COLD objects
    (started here, blocking)."""
    pool = shared_pool()
    if pool is None or object_count < MIN_OBJECTS_WARM:
        return None
    if pool.ready or pool.starting:
        return pool
    if object_count >= MIN_OBJECTS_COLD and pool.start():
        return pool
    return None


def process_pool_available() -> bool:
    """Whether objects can decode in worker processes here."""
    return shared_pool() is not None


def decode_objects_in_processes(instances: list, processes: int | None = None):
    """Yield ``(instance, all frames | UnreadableFileError)`` in order, decoded by the shared
    decode pool (its size is set here, ``processes`` is kept for callers that pass it) when that
    pays (``pool_for``), else in this process."""
    pool = pool_for(len(instances))
    if pool is not None and not pool.ready:
        pool = None if not pool.start() else pool
    if pool is None:
        yield from ((instance, _decode(instance)) for instance in instances)
        return
    yield from zip(instances, pool.decode_instances(instances))


class DecodeAhead:
    """Decode objects in the pool while indexing goes on: ``offer(instance)`` as each file is
    indexed hands its pixels to a worker at once (the header is parsed once, by the indexer;
    the worker reads just the Pixel Data bytes at their known offset). The future is kept on
    the instance (``instance.pending_pixels``) and taken by the first reader, so the decoded
    array exists once. Objects are offered only while the pool is ready, and only up to
    ``budget_bytes`` of decoded pixels."""

    def __init__(self, pool: DecodePool, budget_bytes: int = DECODE_AHEAD_BYTES):
        self.pool = pool
        self.budget = budget_bytes
        self.offered = 0
        self._buffer: list = []
        self._parts: list[DecodePart] = []

    def offer(self, instance) -> bool:
        if not self.pool.ready or instance.pixel_value_offset is None or instance.pending_pixels is not None:
            return False
        size = instance.rows * instance.columns * max(instance.samples_per_pixel, 1) \
            * max(instance.bits_allocated // 8, 1) * instance.number_of_frames
        if self.offered + size > self.budget:
            return False
        self.offered += size
        self._buffer.append(instance)
        if len(self._buffer) >= TASK_OBJECTS:
            self.flush()
        return True

    def flush(self) -> None:
        """Hand the objects offered so far to the workers (the scan calls it at its end)."""
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        try:
            parts = self.pool.submit_many([DecodeRequest.from_instance(i) for i in batch])
        except (BrokenProcessPool, RuntimeError):
            return
        for instance, part in zip(batch, parts):
            instance.pending_pixels = part
        self._parts.extend(parts)

    def cancel(self) -> None:
        """Drop work not started yet (import cancelled)."""
        self._buffer = []
        for part in self._parts:
            part.cancel()


def keep_decoded(instance, stored: np.ndarray) -> None:
    """Pixels of ``instance`` decoded already (the import's preview) wait for its first reader
    the way decode-ahead's do, so the object is not decoded again."""
    future: Future = Future()
    future.set_result(stored)
    instance.pending_pixels = future


def take_pending(instance) -> DecodePart | Future | None:
    """Take the decode-ahead future of an instance (once: the next caller gets None)."""
    future = getattr(instance, "pending_pixels", None)
    if future is not None:
        instance.pending_pixels = None
    return future


def take_decoded_ahead(instance) -> np.ndarray | None:
    """The pixels decoded ahead for ``instance`` if a worker has them or is decoding them now
    (waits for that one); None when there are none or the work has not started (the caller
    decodes it itself, which is quicker than waiting for its turn). Raises the decode error a worker found."""
    future = take_pending(instance)
    if future is None:
        return None
    if not future.done() and not future.running():
        return None  # still queued: decoding it here is quicker than waiting for its turn
    try:
        outcome = future.result()
    except Exception:  # noqa: BLE001 - cancelled or the pool broke: decode in-process
        return None
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def decode_in_worker(instance) -> np.ndarray | None:
    """All frames of ``instance`` decoded by a worker of the shared pool while this thread waits
    without the GIL, or None when the pool is not up or every worker is busy (an earlier
    import still decoding: waiting for its turn would delay the image; the caller decodes it
    in-process). For an object the UI waits on (an import's preview): the codecs hold the GIL
    while they decode (see above), so decoding it on a thread of this process stalls the UI
    thread as long. Raises the decode error the worker found."""
    pool = shared_pool()
    if pool is None or not pool.idle or getattr(instance, "pixel_value_offset", None) is None:
        return None
    try:
        outcome = pool.submit(DecodeRequest.from_instance(instance)).result()
    except Exception:  # noqa: BLE001 - the pool broke or shut down: decode in-process
        return None
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome
