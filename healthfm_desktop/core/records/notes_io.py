"""Reading notes: UTF-8 text files (with a brat ``.ann`` beside them as their gold spans),
folders of them, and JSON Lines of ``{"id", "text"}`` (with CLI.md's ``"spans"`` as gold).
Everything a user can get wrong (not UTF-8, empty, binary, too large, bad JSON) becomes an
``UnreadableFileError`` with a message a person understands; a JSONL file yields its good
records and reports its bad lines."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from healthfm_desktop.core.errors import UnreadableFileError
from healthfm_desktop.core.records.annotation import AnnotatedNote, Entity
from healthfm_desktop.core.records.labels import ASSERTIONS, LABELS

# spaCy's own default limit; a larger note should be split (a 5 MB note is ~1,000 pages).
MAX_NOTE_CHARS = 1_000_000
MAX_FILE_BYTES = 64 * 1024 * 1024  # a JSONL of many notes may be large; each note is checked
NOTE_SUFFIXES = {".txt", ".text", ".note", ""}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}


@dataclass
class Note:
    id: str
    text: str
    source: str = ""  # file path (and line for JSONL), for messages and the note list
    gold: AnnotatedNote | None = None  # spans the file brings (a .ann beside it, JSONL "spans")


@dataclass
class BadRecord:
    """A note that could not be read; ``where`` is the path, or ``path:line`` for JSONL."""

    where: str
    reason: str


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def check_note_text(text: str) -> str:
    """The note text as processed, or UnreadableFileError for empty/binary/huge notes."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise UnreadableFileError("the note is empty")
    if "\x00" in text:
        raise UnreadableFileError("the note contains NUL bytes: it is a binary file, not text")
    surrogate = _LONE_SURROGATE.search(text)
    if surrogate is not None:
        # only a JSON escape (\ud800) can carry one; it cannot be written as UTF-8 anywhere
        raise UnreadableFileError(
            f"the note holds an invalid character (lone surrogate U+{ord(surrogate.group()):04X} at offset "
            f"{surrogate.start()}, from a JSON escape): not Unicode text"
        )
    if len(text) > MAX_NOTE_CHARS:
        raise UnreadableFileError(
            f"the note has {len(text):,} characters, more than the {MAX_NOTE_CHARS:,} one note may have; split it into smaller notes"
        )
    return text


def decode_note_bytes(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableFileError(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save the note as UTF-8"
        ) from None


def read_note_file(path: Path | str) -> Note:
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UnreadableFileError(f"cannot be read: {exc.strerror or exc}") from None
    if path.is_dir():
        raise UnreadableFileError("is a folder, not a note")
    if size > MAX_NOTE_CHARS * 4:
        raise UnreadableFileError(f"the file is {size / 1e6:.1f} MB, too large for one note; split it into smaller notes")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableFileError(f"cannot be read: {exc.strerror or exc}") from None
    text = check_note_text(decode_note_bytes(data))
    note = Note(id=path.stem, text=text, source=str(path))
    ann = path.with_suffix(".ann")
    if path.suffix.lower() == ".txt" and ann.is_file():
        from healthfm_desktop.core.records.export import read_brat_pair

        try:
            note.gold = read_brat_pair(path)
        except UnreadableFileError as exc:
            raise UnreadableFileError(f"its gold annotation {ann.name}: {exc}") from None
        note.gold.text = text
    return note


def _gold_from_spans(note_id: str, text: str, spans, line_number: int) -> AnnotatedNote:
    """CLI.md's span objects as an AnnotatedNote; a span that does not fit the text is an error."""
    if not isinstance(spans, list):
        raise UnreadableFileError(f"line {line_number}: \"spans\" must be a list")
    entities = []
    for k, span in enumerate(spans, start=1):
        where = f"line {line_number}, span {k}"
        if not isinstance(span, dict):
            raise UnreadableFileError(f"{where}: expected an object with start, end and label")
        start, end, label = span.get("start"), span.get("end"), span.get("label")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)) or not 0 <= start < end <= len(text):
            raise UnreadableFileError(f"{where}: start/end must be offsets inside the text")
        if label not in LABELS:
            raise UnreadableFileError(f"{where}: unknown label {label!r}")
        if "text" in span and span["text"] != text[start:end]:
            raise UnreadableFileError(f"{where}: its text does not match the note at {start}-{end}")
        entity = Entity(start, end, label, text[start:end], source="import", status="accepted", section=span.get("section") if isinstance(span.get("section"), str) else None)
        for attribute in ASSERTIONS:
            if span.get(attribute) is True:
                setattr(entity, attribute, True)
        entities.append(entity)
    gold = AnnotatedNote(id=note_id, text=text, entities=entities)
    gold.assign_ids()
    return gold


def parse_jsonl_line(line: str, line_number: int) -> Note:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UnreadableFileError(f"line {line_number}: not valid JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise UnreadableFileError(f"line {line_number}: expected an object with \"id\" and \"text\"")
    text = record.get("text")
    if not isinstance(text, str):
        raise UnreadableFileError(f"line {line_number}: \"text\" is missing or not a string")
    note_id = record.get("id", line_number)
    if not isinstance(note_id, (str, int)) or isinstance(note_id, bool) or str(note_id).strip() == "":
        raise UnreadableFileError(f"line {line_number}: \"id\" must be a non-empty string or number")
    if isinstance(note_id, str) and _LONE_SURROGATE.search(note_id):
        raise UnreadableFileError(f"line {line_number}: \"id\" holds an invalid character (a lone surrogate)")
    try:
        text = check_note_text(text)
    except UnreadableFileError as exc:
        raise UnreadableFileError(f"line {line_number}: {exc}") from None
    note = Note(id=str(note_id), text=text)
    if record.get("spans"):
        note.gold = _gold_from_spans(str(note_id), text, record["spans"], line_number)
    return note


def read_notes_jsonl(path: Path | str) -> Iterator[Note | BadRecord]:
    """Each good line as a Note, each bad one as a BadRecord; a file that cannot be opened or
    is not UTF-8 at all raises UnreadableFileError."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UnreadableFileError(f"cannot be read: {exc.strerror or exc}") from None
    if size > MAX_FILE_BYTES:
        raise UnreadableFileError(f"the file is {size / 1e6:.0f} MB; split it into files under {MAX_FILE_BYTES // 2**20} MB")
    if size == 0:
        raise UnreadableFileError("the file is empty")
    seen_any = False
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise UnreadableFileError(f"cannot be read: {exc.strerror or exc}") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = decode_note_bytes(raw)
            except UnreadableFileError as exc:
                yield BadRecord(f"{path}:{number}", str(exc))
                continue
            if number == 1 and line.startswith("\ufeff"):
                line = line[1:]
            if not line.strip():
                continue
            seen_any = True
            try:
                note = parse_jsonl_line(line, number)
            except UnreadableFileError as exc:
                yield BadRecord(str(path), str(exc))
                continue
            note.source = f"{path}:{number}"
            yield note
    if not seen_any:
        raise UnreadableFileError("the file holds no records")


def is_jsonl(path: Path) -> bool:
    return path.suffix.lower() in JSONL_SUFFIXES


def iter_note_paths(folder: Path) -> Iterator[Path]:
    """Text and JSONL files in a folder, recursively, in a stable order; hidden files skipped."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if name.startswith(".") or name.endswith(".ann"):
                continue
            if path.suffix.lower() in NOTE_SUFFIXES | JSONL_SUFFIXES:
                yield path


def read_notes(paths: list[Path | str]) -> Iterator[Note | BadRecord]:
    """Notes from files, folders and JSONL files, in order; unreadable ones as BadRecord."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            targets = list(iter_note_paths(path))
            if not targets:
                yield BadRecord(str(path), "the folder holds no .txt or .jsonl notes")
        else:
            targets = [path]
        for target in targets:
            if not target.exists():
                yield BadRecord(str(target), "no such file or folder")
                continue
            try:
                if is_jsonl(target):
                    yield from read_notes_jsonl(target)
                else:
                    yield read_note_file(target)
            except UnreadableFileError as exc:
                yield BadRecord(str(target), str(exc))
