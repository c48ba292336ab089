"""Where a DICOM object's bytes live: a file on disk or a member of a zip archive, opened safely.

Zip archives are never extracted to disk. Members are read on demand, after the archive as a
whole has been checked for path traversal and zip bombs (declared sizes, ratio, member count),
and every read is capped so an archive that lies about its sizes still cannot inflate without
bound.
"""

from __future__ import annotations

import io
import os
import posixpath
import tempfile
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from healthfm_desktop.core.errors import UnreadableFileError, UnsafeArchiveError, UserFacingError
from healthfm_desktop.core.user_files import check_regular_file, open_regular_file, read_regular_file

# Caps for an archive dropped on the viewer. A real study zip holds at most a few thousand
# files of well-compressible but not degenerate data; DICOM rarely deflates beyond ~20:1.
MAX_ARCHIVE_MEMBERS = 20_000
MAX_ARCHIVE_TOTAL_BYTES = 4 * 1024**3
MAX_MEMBER_BYTES = 1024**3
# all the archives of one import (a drop, a command line) together
MAX_IMPORT_ARCHIVE_BYTES = 8 * 1024**3
MAX_COMPRESSION_RATIO = 100
# members bigger than this are streamed to a temporary file instead of read into memory
MEMBER_IN_MEMORY_BYTES = 16 * 1024**2
# below this size a high ratio is harmless (a tiny file of zeros) and is allowed
RATIO_CHECK_MIN_BYTES = 1024**2


@dataclass(frozen=True)
class SourceRef:
    """A readable DICOM object: ``path`` on disk, or ``member`` inside the zip at ``path``."""

    path: Path
    member: str | None = None

    def __str__(self) -> str:
        return f"{self.path}!{self.member}" if self.member else str(self.path)

    @property
    def in_archive(self) -> bool:
        return self.member is not None

    def read_bytes(self) -> bytes:
        if self.member is None:
            try:
                return read_regular_file(self.path)
            except OSError as exc:
                raise UnreadableFileError(f"cannot read the file: {exc.strerror or exc}") from exc
        return read_zip_member(self.path, self.member)

    def open(self) -> BinaryIO:
        """A binary file object positioned at 0 (the caller closes it)."""
        if self.member is None:
            return open_regular_file(self.path)
        return open_zip_member(self.path, self.member)


def _is_unsafe_member_name(name: str) -> bool:
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        return True
    parts = posixpath.normpath(normalised).split("/")
    return ".." in parts or any(part == ".." for part in normalised.split("/"))


def check_archive(path: Path) -> list[zipfile.ZipInfo]:
    """Return the archive's file members, or raise UnsafeArchiveError / UnreadableFileError.

    Refuses the whole archive when any member escapes it (``../``, absolute paths), when it has
    too many members, or when the declared sizes add up to a zip bomb.
    """
    try:
        infos = _open_archives.get(path).members
    except UserFacingError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
        raise UnreadableFileError(f"not a readable zip archive ({exc})") from exc
    if len(infos) > MAX_ARCHIVE_MEMBERS:
        raise UnsafeArchiveError(f"archive refused: {len(infos)} members (limit {MAX_ARCHIVE_MEMBERS})")
    total = 0
    members = []
    for info in infos:
        if _is_unsafe_member_name(info.filename):
            raise UnsafeArchiveError(f"archive refused: member {info.filename!r} points outside the archive (path traversal)")
        if info.is_dir():
            continue
        total += info.file_size
        if info.file_size > MAX_MEMBER_BYTES:
            raise UnsafeArchiveError(
                f"archive refused: member {info.filename!r} expands to {info.file_size / 1024**2:.0f} MiB "
                f"(limit {MAX_MEMBER_BYTES // 1024**2} MiB; zip bomb?)"
            )
        if info.file_size > RATIO_CHECK_MIN_BYTES and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            raise UnsafeArchiveError(
                f"archive refused: member {info.filename!r} has a compression ratio of {ratio:.0f}:1 "
                f"(limit {MAX_COMPRESSION_RATIO}:1; zip bomb?)"
            )
        members.append(info)
    if total > MAX_ARCHIVE_TOTAL_BYTES:
        raise UnsafeArchiveError(
            f"archive refused: expands to {total / 1024**3:.1f} GiB (limit {MAX_ARCHIVE_TOTAL_BYTES // 1024**3} GiB; zip bomb?)"
        )
    return members


@dataclass(frozen=True)
class _Archive:
    zip: zipfile.ZipFile
    members: list[zipfile.ZipInfo]
    by_name: dict[str, zipfile.ZipInfo]


class _OpenArchives:
    """A few open archives, so reading the members of one zip does not parse its central
    directory again for every member (that made a 20,000-member zip take an hour)."""

    def __init__(self, keep: int = 4):
        self._keep = keep
        self._items: OrderedDict[tuple, _Archive] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path) -> "_Archive":
        info = os.stat(path)
        key = (os.path.realpath(path), info.st_size, info.st_mtime_ns)
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                return item
        check_regular_file(path)  # a FIFO would block the open below
        archive = zipfile.ZipFile(path)  # opened by name: it closes its file when collected
        infos = archive.infolist()
        item = _Archive(archive, infos, {i.filename: i for i in infos})
        with self._lock:
            self._items[key] = item
            while len(self._items) > self._keep:
                # not closed here: a reader on another thread may still hold it; the garbage
                # collector closes it with its last reference
                self._items.popitem(last=False)
        return item


_open_archives = _OpenArchives()


def _member_stream(path: Path, member: str, sink: BinaryIO) -> int:
    """Copy one member into ``sink`` in chunks, never more than its declared size (+1 byte to
    detect a lie) nor the caps; returns the bytes written."""
    try:
        opened = _open_archives.get(path)
        archive, info = opened.zip, opened.by_name.get(member)
        if info is None:
            raise UnreadableFileError(f"member {member!r} is missing from the archive")
        if _is_unsafe_member_name(info.filename):
            raise UnsafeArchiveError(f"archive refused: member {member!r} points outside the archive")
        limit = min(info.file_size, MAX_MEMBER_BYTES)
        if info.file_size > RATIO_CHECK_MIN_BYTES and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            raise UnsafeArchiveError(f"archive refused: member {member!r} is a zip bomb")
        read = 0
        with archive.open(info) as handle:
            while True:
                chunk = handle.read(min(1 << 20, limit + 1 - read))
                if not chunk:
                    break
                read += len(chunk)
                if read > limit:
                    raise UnsafeArchiveError(f"archive refused: member {member!r} expands beyond its declared size")
                sink.write(chunk)
        return read
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
        raise UnreadableFileError(f"cannot read member {member!r} of the zip archive ({exc})") from exc


def read_zip_member(path: Path, member: str) -> bytes:
    """One member's bytes (see ``_member_stream`` for the caps)."""
    buffer = io.BytesIO()
    _member_stream(path, member, buffer)
    return buffer.getvalue()


def open_zip_member(path: Path, member: str) -> BinaryIO:
    """One member as a file object at 0: in memory when small, else streamed into a temporary
    file, so a member of hundreds of MiB is never held whole in memory to read its header."""
    sink = tempfile.SpooledTemporaryFile(max_size=MEMBER_IN_MEMORY_BYTES, prefix="healthfm-zip-")
    try:
        _member_stream(path, member, sink)
    except BaseException:
        sink.close()
        raise
    sink.seek(0)
    return sink
