"""Export and import of annotated notes: JSONL (CLI.md schema), brat standoff (read and write,
round-trips MACCROBAT's .ann files), FHIR R4 Bundles (fhir.resources' R4B models: Condition,
MedicationStatement and Observation resources that point at a DocumentReference holding the
note) and spaCy DocBin; ``EXPORTERS`` / ``export_notes`` is the one registry the GUI and the CLI
write through (every file by core/storage/atomic.py)."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from healthfm_desktop.core.errors import UnreadableFileError
from healthfm_desktop.core.records.annotation import AnnotatedNote, Entity
from healthfm_desktop.core.records.labels import ASSERTIONS, LABELS, MACCROBAT_TO_LABEL
from healthfm_desktop.core.storage.atomic import atomic_text_writer, atomic_write_bytes, atomic_write_text

# ---------------------------------------------------------------------------------------
# JSONL


def note_to_jsonl_line(note: AnnotatedNote) -> str:
    return json.dumps(note.to_cli_json(), ensure_ascii=False) + "\n"


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_file_stem(note_id: str) -> str:
    """A note id as a file name (brat/FHIR outputs): no path separators, never empty or hidden."""
    stem = _SAFE_NAME.sub("_", note_id).strip("._") or "note"
    return stem[:120]


# ---------------------------------------------------------------------------------------
# brat standoff


@dataclass
class BratEntity:
    id: str
    type: str
    fragments: list[tuple[int, int]]
    text: str


@dataclass
class BratDocument:
    """Everything in an .ann file, kept so that writing it back gives the same annotation."""

    entities: dict[str, BratEntity] = field(default_factory=dict)
    events: dict[str, tuple[str, str, list[tuple[str, str]]]] = field(default_factory=dict)  # id -> (type, trigger, [(role, arg)])
    relations: dict[str, tuple[str, str, str, str, str]] = field(default_factory=dict)  # id -> (type, role1, arg1, role2, arg2)
    attributes: dict[str, tuple[str, str, str | None]] = field(default_factory=dict)  # id -> (name, target, value)
    notes: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # id -> (type, target, text)
    equivalences: list[str] = field(default_factory=list)


def parse_brat(ann_text: str, text: str | None = None) -> BratDocument:
    """Parse brat standoff; with ``text``, every entity's offsets are checked against it."""
    doc = BratDocument()
    for number, raw in enumerate(ann_text.splitlines(), start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        kind = line[0]
        try:
            if kind == "T":
                ident, middle, span_text = line.split("\t", 2)
                entity_type, _, offsets = middle.partition(" ")
                fragments = []
                for part in offsets.split(";"):
                    start, end = part.split()
                    fragments.append((int(start), int(end)))
                if text is not None:
                    joined = " ".join(text[s:e] for s, e in fragments)
                    if any(s < 0 or e > len(text) or s > e for s, e in fragments) or joined.split() != span_text.split():
                        raise UnreadableFileError(f"line {number}: the offsets of {ident} do not match the text")
                doc.entities[ident] = BratEntity(ident, entity_type, fragments, span_text)
            elif kind == "E":
                ident, body = line.split("\t", 1)
                parts = body.split()
                entity_type, _, trigger = parts[0].partition(":")
                args = [tuple(p.split(":", 1)) for p in parts[1:]]
                doc.events[ident] = (entity_type, trigger, args)  # type: ignore[assignment]
            elif kind == "R":
                ident, body = line.split("\t", 1)[:2]
                relation_type, arg1, arg2 = body.split()[:3]
                role1, _, a1 = arg1.partition(":")
                role2, _, a2 = arg2.partition(":")
                doc.relations[ident] = (relation_type, role1, a1, role2, a2)
            elif kind in "AM":
                ident, body = line.split("\t", 1)
                parts = body.split()
                doc.attributes[ident] = (parts[0], parts[1], parts[2] if len(parts) > 2 else None)
            elif kind == "#":
                ident, middle, note_text = line.split("\t", 2)
                note_type, _, target = middle.partition(" ")
                doc.notes[ident] = (note_type, target, note_text)
            elif kind == "*":
                doc.equivalences.append(line)
            else:
                raise ValueError
        except UnreadableFileError:
            raise
        except (ValueError, IndexError):
            raise UnreadableFileError(f"line {number}: not a brat standoff annotation line") from None
    return doc


def write_brat(doc: BratDocument) -> str:
    lines = []
    for e in doc.entities.values():
        offsets = ";".join(f"{s} {t}" for s, t in e.fragments)
        lines.append(f"{e.id}\t{e.type} {offsets}\t{e.text}")
    for ident, (etype, trigger, args) in doc.events.items():
        lines.append(f"{ident}\t{etype}:{trigger}" + "".join(f" {r}:{a}" for r, a in args))
    for ident, (rtype, r1, a1, r2, a2) in doc.relations.items():
        lines.append(f"{ident}\t{rtype} {r1}:{a1} {r2}:{a2}\t")
    for ident, (name, target, value) in doc.attributes.items():
        lines.append(f"{ident}\t{name} {target}" + (f" {value}" if value is not None else ""))
    for ident, (ntype, target, note_text) in doc.notes.items():
        lines.append(f"{ident}\t{ntype} {target}\t{note_text}")
    lines.extend(doc.equivalences)
    return "\n".join(lines) + ("\n" if lines else "")


def _fragments(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """brat cannot hold a line break inside a fragment: split there."""
    fragments, cursor = [], start
    for match in re.finditer(r"\s*\n\s*", text[start:end]):
        s, e = start + match.start(), start + match.end()
        if s > cursor:
            fragments.append((cursor, s))
        cursor = e
    if end > cursor:
        fragments.append((cursor, end))
    return fragments or [(start, end)]


_BRAT_ASSERTION = {"negated": "Negated", "uncertain": "Uncertain", "historical": "Historical", "family": "Family"}


def note_to_brat(note: AnnotatedNote) -> BratDocument:
    doc = BratDocument()
    attribute_count = relation_count = note_count = 0
    for entity in sorted(note.entities, key=lambda e: (e.start, e.end)):
        fragments = _fragments(note.text, entity.start, entity.end)
        doc.entities[entity.id] = BratEntity(entity.id, entity.label, fragments, " ".join(note.text[s:e] for s, e in fragments))
        for attribute in ASSERTIONS:
            if getattr(entity, attribute):
                attribute_count += 1
                doc.attributes[f"A{attribute_count}"] = (_BRAT_ASSERTION[attribute], entity.id, None)
        if entity.section:
            note_count += 1
            doc.notes[f"#{note_count}"] = ("AnnotatorNotes", entity.id, f"section={entity.section}")
    for entity in note.entities:
        if entity.linked_to and entity.linked_to in doc.entities:
            relation_count += 1
            doc.relations[f"R{relation_count}"] = ("Attribute_of", "Arg1", entity.id, "Arg2", entity.linked_to)
    return doc


def brat_to_note(note_id: str, text: str, doc: BratDocument, label_map: dict[str, str] | None = None) -> AnnotatedNote:
    """A brat document as an AnnotatedNote. Types are kept when they are our labels, else
    mapped by ``label_map`` (MACCROBAT's by default) or dropped; MACCROBAT POLARITY NEG and our
    Negated/Uncertain/Historical/Family attributes become assertions."""
    label_map = MACCROBAT_TO_LABEL if label_map is None else label_map
    by_id: dict[str, Entity] = {}
    for e in doc.entities.values():
        label = e.type if e.type in LABELS else label_map.get(e.type)
        if label is None:
            continue
        start, end = min(s for s, _ in e.fragments), max(t for _, t in e.fragments)
        by_id[e.id] = Entity(start, end, label, text[start:end], source="import", status="accepted", id=e.id)
    trigger_of_event = {ident: trigger for ident, (_t, trigger, _a) in doc.events.items()}
    for name, target, value in doc.attributes.values():
        target = trigger_of_event.get(target, target)
        entity = by_id.get(target)
        if entity is None:
            continue
        lowered = name.lower()
        if lowered in ASSERTIONS:
            entity.set_assertion(lowered, True)
        elif name == "POLARITY" and value in ("NEG", "MAYBE_NEG"):
            entity.negated = True
        elif name == "POLARITY" and value in ("UNCERTAIN", "MAYBE_POS"):
            entity.uncertain = True
    for rtype, _r1, a1, _r2, a2 in doc.relations.values():
        if rtype == "Attribute_of" and a1 in by_id:
            by_id[a1].linked_to = a2
    for ntype, target, note_text in doc.notes.values():
        if target in by_id and note_text.startswith("section="):
            by_id[target].section = note_text[len("section="):] or None
    note = AnnotatedNote(id=note_id, text=text, entities=list(by_id.values()))
    note.assign_ids()
    return note


def read_brat_pair(txt_path: Path | str) -> AnnotatedNote:
    txt_path = Path(txt_path)
    ann_path = txt_path.with_suffix(".ann")
    try:
        text = txt_path.read_bytes().decode("utf-8")
        ann = ann_path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise UnreadableFileError(f"cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UnreadableFileError("not UTF-8 text") from None
    return brat_to_note(txt_path.stem, text, parse_brat(ann, text))


def write_brat_files(note: AnnotatedNote, folder: Path, stem: str | None = None) -> tuple[Path, Path]:
    stem = stem or safe_file_stem(note.id)
    txt_path, ann_path = folder / f"{stem}.txt", folder / f"{stem}.ann"
    atomic_write_text(txt_path, note.text)
    atomic_write_text(ann_path, write_brat(note_to_brat(note)))
    return txt_path, ann_path


# ---------------------------------------------------------------------------------------
# FHIR R4 (fhir.resources R4B models; Condition / MedicationStatement / Observation are
# structurally the same in R4 and R4B for the elements written here)

_NAMESPACE = uuid.UUID("8f0d4a8e-2b0e-4f5c-9a39-5b0c8c1e7a11")


def _urn(*parts: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, '/'.join(parts))}"


def _assertion_note(entity: Entity) -> list[dict[str, str]]:
    flags = [a for a in ASSERTIONS if getattr(entity, a)]
    text = f"found in the note at characters {entity.start}-{entity.end}"
    if entity.section:
        text += f", section {entity.section}"
    if flags:
        text += "; " + ", ".join(flags)
    return [{"text": text}]


def note_to_fhir_bundle(note: AnnotatedNote) -> dict[str, Any]:
    """A FHIR R4 collection Bundle: one DocumentReference for the note, a Condition per
    PROBLEM, a MedicationStatement per MEDICATION (with its linked dose/route/frequency/
    duration as dosage) and an Observation per TEST (with its linked LAB_VALUE). Family
    history and PHI spans are not written as the patient's resources."""
    from fhir.resources.R4B.bundle import Bundle

    doc_url = _urn(note.id, "note")
    doc_ref = {"reference": doc_url, "display": f"note {note.id}"}
    subject = {"display": f"the patient of note {note.id}"}
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": doc_url,
            "resource": {
                "resourceType": "DocumentReference",
                "status": "current",
                "description": f"clinical note {note.id}",
                "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "data": base64.b64encode(note.text.encode("utf-8")).decode("ascii")}}],
            },
        }
    ]
    linked: dict[str, list[Entity]] = {}
    for entity in note.entities:
        if entity.linked_to:
            linked.setdefault(entity.linked_to, []).append(entity)
    for entity in sorted(note.entities, key=lambda e: e.start):
        if entity.family or entity.label.startswith("PHI_"):
            continue
        url = _urn(note.id, entity.id, entity.label)
        if entity.label == "PROBLEM":
            verification = "refuted" if entity.negated else ("provisional" if entity.uncertain else "confirmed")
            resource = {
                "resourceType": "Condition",
                "code": {"text": entity.text},
                "subject": subject,
                "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": verification}]},
                "evidence": [{"detail": [doc_ref]}],
                "note": _assertion_note(entity),
            }
            if not entity.negated:
                clinical = "inactive" if entity.historical else "active"
                resource["clinicalStatus"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": clinical}]}
        elif entity.label == "MEDICATION":
            attributes = {e.label: e.text for e in linked.get(entity.id, [])}
            dosage: dict[str, Any] = {"text": " ".join(attributes[k] for k in ("DOSE", "ROUTE", "FREQUENCY", "DURATION") if k in attributes) or entity.text}
            if "ROUTE" in attributes:
                dosage["route"] = {"text": attributes["ROUTE"]}
            if "FREQUENCY" in attributes or "DURATION" in attributes:
                dosage["timing"] = {"code": {"text": " ".join(attributes[k] for k in ("FREQUENCY", "DURATION") if k in attributes)}}
            if "DOSE" in attributes:
                dosage["doseAndRate"] = [{"type": {"text": "as written"}, "doseQuantity": {"unit": attributes["DOSE"]}}]
            resource = {
                "resourceType": "MedicationStatement",
                "status": "not-taken" if entity.negated else ("completed" if entity.historical else "active"),
                "medicationCodeableConcept": {"text": entity.text},
                "subject": subject,
                "derivedFrom": [doc_ref],
                "dosage": [dosage],
                "note": _assertion_note(entity),
            }
        elif entity.label == "TEST":
            values = [e.text for e in linked.get(entity.id, []) if e.label == "LAB_VALUE"]
            resource = {
                "resourceType": "Observation",
                "status": "cancelled" if entity.negated else "final",
                "code": {"text": entity.text},
                "subject": subject,
                "derivedFrom": [doc_ref],
                "note": _assertion_note(entity),
            }
            if values:
                resource["valueString"] = "; ".join(values)
        else:
            continue
        entries.append({"fullUrl": url, "resource": resource})
    bundle = Bundle.model_validate({"resourceType": "Bundle", "type": "collection", "entry": entries})
    return json.loads(bundle.model_dump_json(exclude_none=True))


def write_fhir_file(note: AnnotatedNote, folder: Path, stem: str | None = None) -> Path:
    path = folder / f"{stem or safe_file_stem(note.id)}.json"
    atomic_write_text(path, json.dumps(note_to_fhir_bundle(note), ensure_ascii=False, indent=1) + "\n")
    return path


# ---------------------------------------------------------------------------------------
# spaCy DocBin


def notes_to_docbin(notes: list[AnnotatedNote]) -> bytes:
    """Doc objects with the entities as doc.ents and the assertions as span extensions in
    user_data (DocBin keeps user_data when store_user_data=True)."""
    import spacy
    from spacy.tokens import DocBin
    from spacy.util import filter_spans

    nlp = spacy.blank("en")
    docbin = DocBin(store_user_data=True)
    for note in notes:
        doc = nlp.make_doc(note.text)
        spans = []
        assertions = {}
        for entity in note.entities:
            span = doc.char_span(entity.start, entity.end, label=entity.label, alignment_mode="expand")
            if span is not None:
                spans.append(span)
                assertions[f"{span.start_char}:{span.end_char}:{entity.label}"] = {a: getattr(entity, a) for a in ASSERTIONS} | {"section_title": entity.section}  # not "section": medspaCy's msgpack hook claims dicts with that key
        doc.ents = filter_spans(spans)
        doc.user_data["healthfm_id"] = note.id
        doc.user_data["healthfm_assertions"] = assertions
        docbin.add(doc)
    return docbin.to_bytes()


def write_docbin(notes: list[AnnotatedNote], path: Path) -> None:
    atomic_write_bytes(path, notes_to_docbin(notes))


# ---------------------------------------------------------------------------------------
# the exporter registry


class UniqueStems:
    """File stems for note ids in one export folder: two ids that clean to one name (or differ
    only in case, as on a case-insensitive disk) get ``_2``, ``_3``... instead of overwriting."""

    def __init__(self):
        self._used: set[str] = set()

    def __call__(self, note_id: str) -> str:
        stem = candidate = safe_file_stem(note_id)
        n = 1
        while candidate.lower() in self._used:
            n += 1
            candidate = f"{stem}_{n}"
        self._used.add(candidate.lower())
        return candidate


def _write_jsonl(notes: Iterable[AnnotatedNote], path: Path) -> Iterator[AnnotatedNote]:
    with atomic_text_writer(path) as handle:
        for note in notes:
            handle.write(note_to_jsonl_line(note))
            yield note


def _write_per_note(write_one: Callable[[AnnotatedNote, Path, str], object]):
    def write(notes: Iterable[AnnotatedNote], folder: Path) -> Iterator[AnnotatedNote]:
        folder.mkdir(parents=True, exist_ok=True)
        stems = UniqueStems()
        for note in notes:
            write_one(note, folder, stems(note.id))
            yield note

    return write


def _write_docbin_stream(notes: Iterable[AnnotatedNote], path: Path) -> Iterator[AnnotatedNote]:
    kept = []
    for note in notes:
        kept.append(note)
        yield note
    write_docbin(kept, path)


@dataclass(frozen=True)
class NoteExporter:
    name: str
    writes_folder: bool  # brat and FHIR write one file (pair) per note into a folder
    write: Callable[[Iterable[AnnotatedNote], Path], Iterator[AnnotatedNote]]  # yields each note once written


EXPORTERS: dict[str, NoteExporter] = {
    "jsonl": NoteExporter("jsonl", False, _write_jsonl),
    "brat": NoteExporter("brat", True, _write_per_note(write_brat_files)),
    "fhir": NoteExporter("fhir", True, _write_per_note(write_fhir_file)),
    "docbin": NoteExporter("docbin", False, _write_docbin_stream),
}


def check_destination(fmt: str, destination: Path) -> None:
    """Refuse a destination of the wrong kind before any note is written."""
    exporter = EXPORTERS[fmt]
    if exporter.writes_folder and destination.exists() and not destination.is_dir():
        raise UnreadableFileError(f"is a file; --format {fmt} writes a folder")
    if not exporter.writes_folder and destination.is_dir():
        raise UnreadableFileError(f"is a folder; --format {fmt} writes one file")


def export_notes(notes: Iterable[AnnotatedNote], fmt: str, destination: Path | str) -> Iterator[AnnotatedNote]:
    """Write notes in a registered format; yields each note once it is written (a file appears
    whole when the stream ends)."""
    if fmt not in EXPORTERS:
        raise ValueError(f"unknown export format {fmt!r} (one of {', '.join(EXPORTERS)})")
    destination = Path(destination)
    check_destination(fmt, destination)
    return EXPORTERS[fmt].write(notes, destination)
