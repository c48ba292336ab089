"""Atomic file writes: the old file stays whole until the new one is complete on disk; the
temporaries of writes a crash interrupted are cleaned up later."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TextIO

# a write still running in another process is younger than this; older temporaries are debris
STALE_TEMPORARY_SECONDS = 600
# what mkstemp(prefix=".<name>.", suffix=".tmp") below makes: a dot, the name, 8 random characters
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def _temporary_prefix(path: Path) -> str:
    return f".{path.name[:40]}."


def atomic_write_bytes(path: Path | str, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``.

    ``durable=False`` skips the fsync: a crash may then lose the newest file, but never leaves a
    partial one (for bulk writes, such as received DICOM objects, where fsync would dominate).
    Temporaries of earlier writes to ``path`` that a kill left behind are removed."""
    with _atomic_handle(path, "wb", durable) as handle:
        handle.write(data)


@contextlib.contextmanager
def _atomic_handle(path: Path | str, mode: str, durable: bool = True) -> Iterator[IO]:
    """A handle on a temporary file beside ``path``, renamed over ``path`` when the block ends
    (and removed if it raises)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": "\n"})) as handle:
            yield handle
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:  # bulk writes skip the folder listing this costs
        remove_stale_temporaries(path.parent, only_for=path.name)


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temporaries(folder: Path | str, only_for: str | None = None, recursive: bool = False,
                             older_than_s: float = STALE_TEMPORARY_SECONDS) -> list[Path]:
    """Remove the temporaries of atomic writes that a crash or kill -9 interrupted (older than
    ``older_than_s``); ``only_for``: just those of that file name. Returns what was removed."""
    removed: list[Path] = []
    now = time.time()
    prefix = _temporary_prefix(Path(only_for)) if only_for else None
    try:
        walk = os.walk(folder) if recursive else [(str(folder), [], os.listdir(folder))]
        for root, _dirs, files in walk:
            for name in files:
                if not _TEMPORARY.match(name) or (prefix is not None and not name.startswith(prefix)):
                    continue
                candidate = Path(root) / name
                try:
                    if now - candidate.lstat().st_mtime > older_than_s:
                        candidate.unlink()
                        removed.append(candidate)
                except OSError:
                    continue
    except OSError:
        pass
    return removed


def atomic_text_writer(path: Path | str) -> contextlib.AbstractContextManager[TextIO]:
    """A text handle for writing a file bit by bit (a stream of records): the file appears at
    ``path`` whole when the block ends, and not at all if it raises."""
    return _atomic_handle(path, "w")


class BackgroundWriter:
    """Atomic writes on one worker thread, off the caller's (the UI's) thread: ``write(path,
    text)`` returns at once; the newest text given for a path is the one written (a drag that
    saves on every step writes far fewer times). ``flush()`` waits until all is on disk,
    ``wait_for(path)`` until that file is. ``on_error(path, exc)`` (the writer's, or the one
    given with the write) is called, on the worker thread, for a write that failed."""

    def __init__(self, on_error=None):
        import threading

        self._on_error = on_error
        self._pending: dict[Path, tuple[str, object]] = {}
        self._writing: set[Path] = set()
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None

    def write(self, path: Path | str, text: str, on_error=None) -> None:
        import threading

        with self._condition:
            self._pending[Path(path)] = (text, on_error or self._on_error)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="atomic-writer", daemon=True)
                self._thread.start()
            self._condition.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every requested write is done; False when ``timeout`` ran out first."""
        with self._condition:
            return self._condition.wait_for(lambda: not self._pending and not self._writing, timeout)

    def wait_for(self, path: Path | str, timeout: float | None = None) -> bool:
        """Wait until the writes requested for ``path`` are done (a reader's turn)."""
        path = Path(path)
        with self._condition:
            return self._condition.wait_for(lambda: path not in self._pending and path not in self._writing, timeout)

    def _run(self) -> None:
        while True:
            with self._condition:
                # an idle thread ends; the next write starts another
                if not self._condition.wait_for(lambda: bool(self._pending), timeout=2.0):
                    self._thread = None
                    return
                path = next(iter(self._pending))
                text, on_error = self._pending.pop(path)
                self._writing.add(path)
            try:
                atomic_write_text(path, text)
            except OSError as exc:
                if on_error is not None:
                    on_error(path, exc)
            finally:
                with self._condition:
                    self._writing.discard(path)
                    self._condition.notify_all()


_BACKGROUND_WRITER: BackgroundWriter | None = None


def background_writer() -> BackgroundWriter:
    """The process's one BackgroundWriter: every session autosaves through it, so a reader of
    a file (another session on the same study) can wait for the writes pending for it."""
    global _BACKGROUND_WRITER
    if _BACKGROUND_WRITER is None:
        _BACKGROUND_WRITER = BackgroundWriter()
    return _BACKGROUND_WRITER
