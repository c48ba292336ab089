"""Batch work on a Dask distributed cluster: connect to a scheduler, run one task per file,
row chunk or index shard, and hand the results back in input order (as a local run would)."""

from __future__ import annotations

import itertools
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from healthfm_desktop.core.errors import UserFacingError

COMPUTE_SETTING = "compute/scheduler"  # "" = local; else a scheduler address (the GUI's Compute setting)
_ADDRESS = re.compile(r"^(tcp|tls|ucx|inproc)://[^\s/]+(:\d+)?/?$")
_CONNECT_TIMEOUT_S = 10


def check_address(text: str) -> str:
    """A scheduler address as the user typed it, or UserFacingError saying what is wrong."""
    text = (text or "").strip()
    if not _ADDRESS.match(text):
        raise UserFacingError(f"{text!r} is not a Dask scheduler address (tcp://HOST:PORT)")
    return text


def _worker_version() -> str:
    from healthfm_desktop import __version__

    return __version__


def connect(address: str, timeout: float | None = None):
    """A ``distributed.Client`` on the scheduler at ``address``, with at least one worker that
    runs this version of healthfm; UserFacingError when the cluster cannot do the work."""
    address = check_address(address)
    timeout = timeout or _CONNECT_TIMEOUT_S
    from distributed import Client

    from healthfm_desktop import __version__

    try:
        client = Client(address, timeout=f"{timeout}s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise UserFacingError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    try:
        client.wait_for_workers(1, timeout=timeout)
        versions = client.run(_worker_version)
    except (OSError, TimeoutError) as exc:
        client.close()
        raise UserFacingError(f"the Dask scheduler at {address} has no worker ready: {exc}") from None
    except Exception as exc:  # a worker without healthfm fails to unpickle _worker_version
        client.close()
        raise UserFacingError(f"the Dask workers at {address} cannot run healthfm ({type(exc).__name__}: {exc}); "
                              "install the same healthfm version on every worker") from None
    wrong = sorted(w for w, v in versions.items() if v != __version__)
    if wrong:
        client.close()
        raise UserFacingError(f"Dask workers {', '.join(wrong)} run healthfm {versions[wrong[0]]}, "
                              f"this client {__version__}: install the same version everywhere")
    return client


def cluster_state(client) -> dict[str, Any]:
    """What the GUI shows: the scheduler's address, its workers and their threads."""
    info = client.scheduler_info(n_workers=-1)
    workers = info.get("workers", {})
    return {"address": client.scheduler.address, "workers": len(workers),
            "threads": sum(w.get("nthreads", 0) for w in workers.values())}


def describe_state(state: dict[str, Any]) -> str:
    return f"the Dask cluster at {state['address']} ({state['workers']} workers, {state['threads']} threads)"


@contextmanager
def compute_client(scheduler: str | None):
    """The GUI's Compute setting as a context: None for this computer, else a client of that
    scheduler (closed on leaving)."""
    if not scheduler:
        yield None
        return
    client = connect(scheduler)
    try:
        yield client
    finally:
        client.close()


def chunked(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


class _TerminalProgress:
    """done/total and rate on stderr, only when stderr is a terminal (CLI.md general rules)."""

    def __init__(self, label: str, total: int | None, enabled: bool | None = None):
        self.label, self.total = label, total
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.start = time.perf_counter()
        self.shown = 0.0

    def update(self, done: int, final: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (not final and now - self.shown < 0.2):
            return
        self.shown = now
        rate = done / max(now - self.start, 1e-9)
        of = f"/{self.total}" if self.total is not None else ""
        sys.stderr.write(f"\r{self.label} on the cluster: {done}{of} tasks, {rate:.1f}/s")
        if final:
            sys.stderr.write("\n")
        sys.stderr.flush()


def run_in_order(client, function: Callable, items: Iterable, *args, label: str = "",
                 on_done: Callable[[int, int | None], None] | None = None, window: int | None = None,
                 **kwargs) -> Iterator[Any]:
    """Yield ``function(item, *args, **kwargs)`` for every item, computed on the cluster's
    workers, in the order of ``items``.

    At most ``window`` tasks are out at a time (default: four per worker thread), so a huge
    input never sits whole in the scheduler's memory. A worker lost mid-task has its tasks rerun
    by the scheduler elsewhere; an exception raised by a task is raised here (and the other
    tasks are cancelled), as is KeyboardInterrupt, which also cancels them on the cluster."""
    from distributed import as_completed

    total = len(items) if isinstance(items, Sequence) else None
    if window is None:
        window = max(8, 4 * sum(client.nthreads().values()))
    bar = _TerminalProgress(label or getattr(function, "__name__", "tasks"), total)
    run_id = uuid.uuid4().hex[:12]
    indexed = enumerate(items)
    index_of: dict = {}
    finished: dict[int, Any] = {}
    next_out = done = 0
    completed = as_completed(loop=client.loop)
    exhausted = False

    def submit_more() -> None:
        nonlocal exhausted
        while not exhausted and len(index_of) + len(finished) < window:
            try:
                i, item = next(indexed)
            except StopIteration:
                exhausted = True
                return
            future = client.submit(function, item, *args, key=f"{label or 'task'}-{run_id}-{i}", pure=False, **kwargs)
            index_of[future] = i
            completed.add(future)

    try:
        submit_more()
        while index_of:
            future = next(completed)
            i = index_of.pop(future)
            finished[i] = future.result()  # the task's own exception, raised here
            future.release()
            done += 1
            bar.update(done)
            if on_done is not None:
                on_done(done, total)
            while next_out in finished:
                yield finished.pop(next_out)
                next_out += 1
            submit_more()
        bar.update(done, final=True)
    except BaseException:
        if index_of:
            client.cancel(list(index_of))
        raise


def map_ordered(function: Callable, items: Iterable, *args, scheduler: str | None = None, client=None,
                label: str = "", **kwargs) -> Iterator[Any]:
    """``function`` over ``items`` in order: in this process when no scheduler is given, else on
    that cluster (``client`` reuses an open connection). The one switch every batch command uses."""
    if client is None and not scheduler:
        for item in items:
            yield function(item, *args, **kwargs)
        return
    own = client is None
    if own:
        client = connect(scheduler)
    try:
        yield from run_in_order(client, function, items, *args, label=label, **kwargs)
    finally:
        if own:
            client.close()
