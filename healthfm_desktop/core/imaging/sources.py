"""Where a DICOM object's bytes live: a file on disk or a member of a zip archive, opened safely.

Zip archives are never extracted to disk. Members are read on demand, after the archive as a
whole has been checked for path traversal and zip bombs (declared sizes, ratio, member count),
and every read is capped so an archive that lies about its sizes still cannot inflate without
bound.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from healthfm_desktop.core.errors import UnreadableFileError, UnsafeArchiveError

# Caps for an archive dropped on the viewer. A real study zip holds at most a few thousand
# files of well-compressible but not degenerate data; DICOM rarely deflates beyond ~20:1.
MAX_ARCHIVE_MEMBERS = 20_000
MAX_ARCHIVE_TOTAL_BYTES = 4 * 1024**3
MAX_MEMBER_BYTES = 1024**3
MAX_COMPRESSION_RATIO = 100
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
                return self.path.read_bytes()
            except OSError as exc:
                raise UnreadableFileError(f"cannot read the file: {exc.strerror or exc}") from exc
        return read_zip_member(self.path, self.member)

    def open(self) -> BinaryIO:
        """A binary file object positioned at 0 (the caller closes it)."""
        if self.member is None:
            try:
                return open(self.path, "rb")
            except OSError as exc:
                raise UnreadableFileError(f"cannot open the file: {exc.strerror or exc}") from exc
        return io.BytesIO(read_zip_member(self.path, self.member))


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
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
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


def read_zip_member(path: Path, member: str) -> bytes:
    """Read one member, never more than its declared size (+1 byte to detect a lie) nor the caps."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(member)
            if _is_unsafe_member_name(info.filename):
                raise UnsafeArchiveError(f"archive refused: member {member!r} points outside the archive")
            limit = min(info.file_size, MAX_MEMBER_BYTES)
            if info.file_size > RATIO_CHECK_MIN_BYTES and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
                raise UnsafeArchiveError(f"archive refused: member {member!r} is a zip bomb")
            chunks = []
            read = 0
            with archive.open(info) as handle:
                while True:
                    chunk = handle.read(min(1 << 20, limit + 1 - read))
                    if not chunk:
                        break
                    read += len(chunk)
                    if read > limit:
                        raise UnsafeArchiveError(f"archive refused: member {member!r} expands beyond its declared size")
                    chunks.append(chunk)
            return b"".join(chunks)
    except KeyError as exc:
        raise UnreadableFileError(f"member {member!r} is missing from the archive") from exc
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise UnreadableFileError(f"cannot read member {member!r} of the zip archive ({exc})") from exc
