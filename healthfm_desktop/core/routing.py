"""Decide, by content, which workspace a dropped or opened path belongs to."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from healthfm_desktop.core.errors import UserFacingError
from healthfm_desktop.core.user_files import open_regular_file

IMAGES, NOTES, MOLECULES, PATIENTS = "images", "notes", "molecules", "patients"
WORKSPACES = (IMAGES, NOTES, MOLECULES, PATIENTS)

_MOLECULE_SUFFIXES = {".sdf", ".sd", ".mol", ".smi", ".smiles", ".ism"}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
_PATIENT_COLUMNS = {"patient_id", "time", "variable", "value"}
_SMILES_COLUMNS = {"smiles", "canonical_smiles", "smiles_string", "mol", "structure"}
_MAX_FOLDER_SNIFF = 200
_FOLDER_AGREE = 16  # a folder whose first files all go to one workspace is decided there
# a DICOM file the routing sniffs is read whole on the same open (up to this size, and this much
# per routing) and handed to the Images scan, so that the scan does not open it again
_KEEP_FILE_BYTES = 8 * 1024**2
_KEEP_TOTAL_BYTES = 64 * 1024**2


@dataclass
class Routing:
    """Paths grouped by workspace, plus the ones no workspace can take (with a reason)."""

    by_workspace: dict[str, list[Path]] = field(default_factory=dict)
    rejected: list[tuple[Path, str]] = field(default_factory=list)
    #: with ``route_paths(keep_contents=True)``: the whole bytes of the DICOM files read while
    #: sniffing them, for the Images scan (its ``read_ahead``)
    contents: dict[Path, bytes] = field(default_factory=dict)
    keep_contents: bool = False
    _kept_bytes: int = field(default=0, repr=False)

    def keep(self, path: Path, data: bytes) -> None:
        """Hold ``data`` for the scan if the budget allows (else the scan reads the file again)."""
        if self.keep_contents and self._kept_bytes + len(data) <= _KEEP_TOTAL_BYTES:
            self.contents[path] = data
            self._kept_bytes += len(data)

    def add(self, workspace: str, path: Path) -> None:
        self.by_workspace.setdefault(workspace, []).append(path)


def _head(path: Path, size: int = 4096, routing: Routing | None = None) -> bytes:
    """The first ``size`` bytes (decompressed for .gz; b"" when unreadable or not a regular
    file). With ``routing``, a small DICOM file is read whole on the same open and kept there."""
    try:
        with open_regular_file(path) as raw:
            if path.suffix.lower() == ".gz":
                with gzip.open(raw, "rb") as handle:
                    return handle.read(size)
            head = raw.read(size)
            if routing is not None and routing.keep_contents and len(head) == size and looks_like_dicom(head):
                rest = raw.read(_KEEP_FILE_BYTES + 1 - size)
                if size + len(rest) <= _KEEP_FILE_BYTES:
                    routing.keep(path, head + rest)
            return head
    except (OSError, EOFError, gzip.BadGzipFile, UserFacingError):
        return b""


def looks_like_dicom(head: bytes) -> bool:
    """Part 10 file (preamble + DICM) or a bare dataset starting with a group 0002/0008 tag
    (allowing up to 3 stray leading bytes, as some exporters write them)."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    return any(_starts_like_dataset(head[offset:]) for offset in range(4))


def is_dicom_file(path: Path) -> bool:
    """``looks_like_dicom`` of a file's first bytes (False when it cannot be read): the one DICOM
    sniffer, used by the drop routing, the image models' reader and the command line."""
    try:
        with open_regular_file(path) as handle:
            return looks_like_dicom(handle.read(132))
    except (OSError, UserFacingError):
        return False


def _starts_like_dataset(head: bytes) -> bool:
    if len(head) < 8:
        return False
    group = int.from_bytes(head[0:2], "little")
    element = int.from_bytes(head[2:4], "little")
    if group not in (0x0002, 0x0008) or element >= 0x0100:
        return False
    vr = head[4:6]
    # explicit VR with a plausible VR, or implicit VR with a sane 4-byte length
    if vr.isalpha() and vr.isupper():
        return True
    length = int.from_bytes(head[4:8], "little")
    return 0 < length < 1 << 16


def _text_kind(path: Path, head: bytes) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    base = suffixes[-2] if suffixes and suffixes[-1] == ".gz" and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    if base in _MOLECULE_SUFFIXES:
        return MOLECULES
    if base in _IMAGE_SUFFIXES:
        return IMAGES
    text = head.decode("utf-8", errors="replace")
    if base in (".csv", ".tsv"):
        delimiter = "\t" if base == ".tsv" or text.count("\t") > text.count(",") else ","
        try:
            header = next(csv.reader(io.StringIO(text), delimiter=delimiter))
        except (StopIteration, csv.Error):
            return None
        columns = {c.strip().lower() for c in header}
        if _PATIENT_COLUMNS <= columns:
            return PATIENTS
        if columns & _SMILES_COLUMNS:
            return MOLECULES
        return None
    if base == ".jsonl":
        first = text.splitlines()[0] if text.strip() else ""
        try:
            record = json.loads(first)
        except json.JSONDecodeError:
            return None
        return NOTES if isinstance(record, dict) and "text" in record else None
    if base == ".json":
        if '"resourceType"' in text and "Observation" in text:
            return PATIENTS
        return None
    if base in (".txt", ".text", ".note", ".ann", "") or not base:
        if text.lstrip().lower().startswith("time,parameter,value"):
            return PATIENTS  # a PhysioNet 2012 ICU record file
        if "$$$$" in text or "M  END" in text:
            return MOLECULES
        if base == ".ann":
            return None
        return NOTES if text.strip() else None
    return None


def route_file(path: Path, routing: Routing | None = None) -> tuple[str | None, str]:
    """(workspace, reason). workspace is None when no workspace can take the file. With
    ``routing``, the bytes of a small DICOM file are kept there for the scan (``contents``)."""
    if path.name.upper() == "DICOMDIR":
        return IMAGES, "DICOMDIR"
    suffix = path.suffix.lower()
    if suffix == ".zip":
        if zipfile.is_zipfile(path):
            return IMAGES, "zip archive"
        return None, "not a valid zip archive"
    head = _head(path, routing=routing)
    if not head:
        return None, "empty or unreadable file"
    if looks_like_dicom(head):
        return IMAGES, "DICOM"
    if head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")):
        return IMAGES, "PNG/JPEG image"  # by content: a scan saved without its extension
    kind = _text_kind(path, head)
    if kind is None:
        return None, "not a DICOM, note, molecule or patient file"
    return kind, kind


def route_folder(folder: Path, routing: Routing | None = None) -> tuple[str | None, str]:
    """A folder goes to the workspace most of its first files belong to (DICOM wins ties).
    Sniffing stops once the first ``_FOLDER_AGREE`` files all went to one workspace (the DICOM
    files sniffed are kept in ``routing`` for the scan)."""
    counts: dict[str, int] = {}
    seen = 0
    for root, _dirs, files in os.walk(folder):
        for name in sorted(files):
            workspace, _ = route_file(Path(root) / name, routing)
            if workspace:
                counts[workspace] = counts.get(workspace, 0) + 1
            seen += 1
            if seen >= _MAX_FOLDER_SNIFF or (seen >= _FOLDER_AGREE and len(counts) == 1
                                             and sum(counts.values()) == seen):
                break
        else:
            continue
        break
    if not counts:
        return None, "the folder holds no file HealthFM can open"
    best = max(counts, key=lambda w: (counts[w], w == IMAGES))
    return best, f"folder of {best}"


def route_paths(paths: list[Path | str], keep_contents: bool = False) -> Routing:
    """Route each path; ``keep_contents``: keep the DICOM files sniffed whole in
    ``Routing.contents`` so the Images workspace does not open them again (the drop)."""
    routing = Routing(keep_contents=keep_contents)
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            workspace, reason = route_folder(path, routing)
        elif path.is_file():
            workspace, reason = route_file(path, routing)
        else:
            workspace, reason = None, "no such file or folder"
        if workspace is None:
            routing.rejected.append((path, reason))
        else:
            routing.add(workspace, path)
    if IMAGES not in routing.by_workspace:
        routing.contents.clear()
    return routing
