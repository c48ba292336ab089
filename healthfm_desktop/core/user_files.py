"""Which user files may be read: regular files only (links resolved), under a size cap. A FIFO
would block a reader forever and a link to /dev/zero never ends, so neither is ever opened."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from healthfm_desktop.core.errors import UnreadableFileError

# The largest single file an import reads: a long multi-frame cine or a whole-slide level is a
# few GiB; anything bigger is not something one workstation should pull into memory.
MAX_USER_FILE_BYTES = 8 * 1024**3


def regular_file_problem(path: Path | str, max_bytes: int = MAX_USER_FILE_BYTES) -> str | None:
    """Why ``path`` must not be read (a sentence), or None for a readable regular file.
    Only ``stat`` is called: nothing is opened, so a FIFO cannot block here."""
    try:
        info = os.stat(path)  # follows links: a link is judged by what it points to
    except FileNotFoundError:
        return "no such file (or a broken link)" if os.path.islink(path) else "no such file"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        return "is a folder"
    if not stat.S_ISREG(mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        via = " (through a link)" if os.path.islink(path) else ""
        return f"not read: {kind}{via}, not a regular file"
    if info.st_size > max_bytes:
        return f"not read: {info.st_size / 1024**3:.1f} GiB is over the {max_bytes / 1024**3:.0f} GiB limit for one file"
    return None


def check_regular_file(path: Path | str, max_bytes: int = MAX_USER_FILE_BYTES) -> None:
    """Raise UnreadableFileError unless ``path`` is a regular file under the cap."""
    problem = regular_file_problem(path, max_bytes)
    if problem is not None:
        raise UnreadableFileError(problem)


def open_regular_file(path: Path | str, max_bytes: int = MAX_USER_FILE_BYTES) -> BinaryIO:
    """Open a regular file for reading (binary). The type is checked again on the open
    descriptor, opened non-blocking, so a file swapped for a FIFO after the check cannot hang."""
    check_regular_file(path, max_bytes)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise UnreadableFileError(f"cannot open the file: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            raise UnreadableFileError("not read: no longer a regular file under the size limit")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(path: Path | str, max_bytes: int = MAX_USER_FILE_BYTES) -> bytes:
    with open_regular_file(path, max_bytes) as handle:
        return handle.read(max_bytes + 1)[:max_bytes]
