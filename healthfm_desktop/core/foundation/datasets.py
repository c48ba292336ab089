"""Labelled and unlabelled items for adaptation, prediction and similar-case search, read from
the files CLI.md names: image CSV ``path,label`` or image files; text JSON Lines
``{"id","text","label"}`` or ``.txt`` files; molecule CSV with ``smiles``/``id``/label columns or
anything `molecules predict` reads. An unreadable item is kept as ``(id, reason)``, never dropped."""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from healthfm_desktop.core.errors import UnreadableFileError, UserFacingError

MAX_ITEMS = 200_000  # a label file bigger than this is not something to adapt on a workstation


@dataclass
class Items:
    """Readable items (``payloads``: grey uint8 arrays, texts or RDKit molecules) with their ids and
    labels (None when unlabelled); ``errors`` the ids that could not be read, with why."""

    kind: str
    ids: list[str] = field(default_factory=list)
    payloads: list[Any] = field(default_factory=list)
    labels: list[str | None] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)

    def add(self, item_id: str, payload: Any, label: str | None) -> None:
        self.ids.append(item_id)
        self.payloads.append(payload)
        self.labels.append(label)

    def __len__(self) -> int:
        return len(self.ids)


def _open_text(path: Path) -> io.TextIOBase:
    try:
        if path.suffix.lower() == ".gz":
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
        return open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise UnreadableFileError(f"cannot open: {exc.strerror or exc}") from exc


def _csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with _open_text(path) as handle:
            reader = csv.DictReader(handle)
            rows = []
            for row in reader:
                rows.append(row)
                if len(rows) > MAX_ITEMS:
                    raise UnreadableFileError(f"more than {MAX_ITEMS} rows")
            return list(reader.fieldnames or []), rows
    except (UnicodeError, csv.Error, EOFError, gzip.BadGzipFile, OSError) as exc:
        raise UnreadableFileError(f"not a readable CSV file ({type(exc).__name__})") from exc


def _label(value: Any, column: str, where: str) -> str:
    if value is None or str(value).strip() == "":
        raise UserFacingError(f"{where}: no {column!r} value")
    return str(value).strip()


def read_labelled(kind: str, path: str | Path, label_column: str = "label") -> Items:
    """Labelled items for `adapt train`. Raises UnreadableFileError when the file itself is wrong
    (not found, no such column); an unreadable item goes to ``errors``."""
    path = Path(path)
    if not path.is_file():
        raise UnreadableFileError("no such file" if not path.exists() else "is not a file")
    if kind == "text":
        return _read_text_jsonl(path, labelled=True)
    columns, rows = _csv_rows(path)
    if label_column not in columns:
        raise UnreadableFileError(f"no {label_column!r} column (columns: {', '.join(columns) or 'none'})")
    items = Items(kind)
    if kind == "image":
        if "path" not in columns:
            raise UnreadableFileError("an image label file needs a 'path' column")
        for number, row in enumerate(rows, start=2):
            raw = (row.get("path") or "").strip()
            item_id = raw or f"row {number}"
            try:
                label = _label(row.get(label_column), label_column, f"row {number}")
                image_path = Path(raw) if Path(raw).is_absolute() else path.parent / raw
                items.add(item_id, _read_grey(image_path), label)
            except UserFacingError as exc:
                items.errors.append((item_id, str(exc)))
        return items
    if kind == "molecule":
        if "smiles" not in columns:
            raise UnreadableFileError("a molecule label file needs a 'smiles' column")
        from healthfm_desktop.core.chemistry.reading import parse_smiles

        for number, row in enumerate(rows, start=1):
            item_id = (row.get("id") or "").strip() or str(number)
            try:
                label = _label(row.get(label_column), label_column, f"row {number}")
                mol, reason = parse_smiles(row.get("smiles") or "")
                if mol is None:
                    raise UserFacingError(f"SMILES not readable: {reason}")
                items.add(item_id, mol, label)
            except UserFacingError as exc:
                items.errors.append((item_id, str(exc)))
        return items
    raise UserFacingError(f"unknown kind {kind!r}")


def read_unlabelled(kind: str, paths: list[str], label_column: str = "label") -> Items:
    """Items for `adapt predict` and `similar --library`: each path is a file of items (image
    CSV, JSON Lines, molecule file, the study database, an annotation project) or one item (an
    image, a .txt note). Labels are kept when the file has them (a store: the user's labels). A file that cannot be read at all is one error, with the path as id."""
    items = Items(kind)
    for raw in paths:
        path = Path(raw)
        try:
            if not path.exists():
                raise UnreadableFileError("no such file")
            if kind in ("image", "text") and path.is_file():
                from healthfm_desktop.core.foundation.stored import read_store

                stored = read_store(kind, path)  # a study database or an annotation project
                if stored is not None:
                    _extend(items, stored)
                    continue
            if kind == "image":
                if path.suffix.lower() == ".csv":
                    _extend(items, read_labelled_or_paths(path, label_column))
                else:
                    items.add(raw, _read_grey(path), None)
            elif kind == "text":
                if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
                    _extend(items, _read_text_jsonl(path, labelled=False))
                else:
                    items.add(path.stem, _read_note(path), None)
            else:
                _extend(items, _read_molecule_file(path, label_column))
        except UserFacingError as exc:
            items.errors.append((raw, str(exc)))
    return items


def read_labelled_or_paths(path: Path, label_column: str) -> Items:
    columns, rows = _csv_rows(path)
    if "path" not in columns:
        raise UnreadableFileError("an image list needs a 'path' column")
    items = Items("image")
    for number, row in enumerate(rows, start=2):
        raw = (row.get("path") or "").strip()
        item_id = raw or f"row {number}"
        try:
            image_path = Path(raw) if Path(raw).is_absolute() else path.parent / raw
            label = (row.get(label_column) or "").strip() or None
            items.add(item_id, _read_grey(image_path), label)
        except UserFacingError as exc:
            items.errors.append((item_id, str(exc)))
    return items


def _extend(items: Items, more: Items) -> None:
    items.ids += more.ids
    items.payloads += more.payloads
    items.labels += more.labels
    items.errors += more.errors


def _read_grey(path: Path):
    from healthfm_desktop.core.imaging.ai.preprocessing import read_image

    return read_image(path).pixels


def _read_note(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableFileError("not UTF-8 text") from exc
    except OSError as exc:
        raise UnreadableFileError(f"cannot read: {exc.strerror or exc}") from exc
    if not text.strip():
        raise UnreadableFileError("the note is empty")
    return text


def _read_text_jsonl(path: Path, labelled: bool) -> Items:
    items = Items("text")
    try:
        with _open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                if number > MAX_ITEMS:
                    raise UnreadableFileError(f"more than {MAX_ITEMS} lines")
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    items.errors.append((f"line {number}", "not a JSON object"))
                    continue
                if not isinstance(record, dict):
                    items.errors.append((f"line {number}", "not a JSON object"))
                    continue
                item_id = str(record.get("id") if record.get("id") not in (None, "") else f"line {number}")
                text = record.get("text")
                if not isinstance(text, str) or not text.strip():
                    items.errors.append((item_id, "no 'text'"))
                    continue
                label = record.get("label")
                if labelled and (label is None or str(label).strip() == ""):
                    items.errors.append((item_id, "no 'label'"))
                    continue
                items.add(item_id, text, None if label is None else str(label).strip())
    except (UnicodeError, EOFError, gzip.BadGzipFile, OSError) as exc:
        raise UnreadableFileError(f"not readable UTF-8 JSON Lines ({type(exc).__name__})") from exc
    return items


def _read_molecule_file(path: Path, label_column: str) -> Items:
    from healthfm_desktop.core.chemistry.reading import read_molecules

    items = Items("molecule")
    for record in read_molecules(path):
        if record.ok:
            label = (record.fields.get(label_column) or "").strip() or None
            items.add(record.id, record.mol, label)
        else:
            items.errors.append((record.id, record.error or "not readable"))
    return items
