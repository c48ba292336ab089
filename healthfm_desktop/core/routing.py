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

IMAGES, NOTES, MOLECULES, PATIENTS = "images", "notes", "molecules", "patients"
WORKSPACES = (IMAGES, NOTES, MOLECULES, PATIENTS)

_MOLECULE_SUFFIXES = {".sdf", ".sd", ".mol", ".smi", ".smiles", ".ism"}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
_PATIENT_COLUMNS = {"patient_id", "time", "variable", "value"}
_SMILES_COLUMNS = {"smiles", "canonical_smiles", "smiles_string", "mol", "structure"}
_MAX_FOLDER_SNIFF = 200
_FOLDER_AGREE = 16  # a folder whose first files all go to one workspace is decided there


@dataclass
class Routing:
    """Paths grouped by workspace, plus the ones no workspace can take (with a reason)."""

    by_workspace: dict[str, list[Path]] = field(default_factory=dict)
    rejected: list[tuple[Path, str]] = field(default_factory=list)

    def add(self, workspace: str, path: Path) -> None:
        self.by_workspace.setdefault(workspace, []).append(path)


def _head(path: Path, size: int = 4096) -> bytes:
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            return handle.read(size)
    except (OSError, EOFError, gzip.BadGzipFile):
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
        with open(path, "rb") as handle:
            return looks_like_dicom(handle.read(132))
    except OSError:
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


def route_file(path: Path) -> tuple[str | None, str]:
    """(workspace, reason). workspace is None when no workspace can take the file."""
    if path.name.upper() == "DICOMDIR":
        return IMAGES, "DICOMDIR"
    suffix = path.suffix.lower()
    if suffix == ".zip":
        if zipfile.is_zipfile(path):
            return IMAGES, "zip archive"
        return None, "not a valid zip archive"
    head = _head(path)
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


def route_folder(folder: Path) -> tuple[str | None, str]:
    """A folder goes to the workspace most of its first files belong to (DICOM wins ties).
    Sniffing stops once the first ``_FOLDER_AGREE`` files all went to one workspace: the Images
    workspace reads every file of a series anyway, so each one sniffed here is read twice."""
    counts: dict[str, int] = {}
    seen = 0
    for root, _dirs, files in os.walk(folder):
        for name in sorted(files):
            workspace, _ = route_file(Path(root) / name)
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


def route_paths(paths: list[Path | str]) -> Routing:
    routing = Routing()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            workspace, reason = route_folder(path)
        elif path.is_file():
            workspace, reason = route_file(path)
        else:
            workspace, reason = None, "no such file or folder"
        if workspace is None:
            routing.rejected.append((path, reason))
        else:
            routing.add(workspace, path)
    return routing
