"""Exports: brat round trip on real MACCROBAT files, FHIR R4 bundles that validate, JSONL
schema of CLI.md, DocBin, and the annotation project store with agreement."""

from __future__ import annotations

import json

import pytest

from healthfm_desktop.core.errors import UnreadableFileError
from healthfm_desktop.core.records.agreement import agreement, cohens_kappa
from healthfm_desktop.core.records.annotation import AnnotatedNote, Entity, Trigger
from healthfm_desktop.core.records.export import (
    brat_to_note,
    note_to_brat,
    note_to_fhir_bundle,
    notes_to_docbin,
    parse_brat,
    read_brat_pair,
    write_brat,
    write_brat_files,
)
from healthfm_desktop.core.storage.annotations import AnnotationProject

BRAT_IDS = ("15939911", "16778410", "17803823")


@pytest.mark.parametrize("doc_id", BRAT_IDS)
def test_brat_round_trip_maccrobat(test_data, doc_id):
    text = (test_data / "text" / "brat" / f"{doc_id}.txt").read_text(encoding="utf-8")
    ann = (test_data / "text" / "brat" / f"{doc_id}.ann").read_text(encoding="utf-8")
    first = parse_brat(ann, text)
    again = parse_brat(write_brat(first), text)
    assert again == first
    assert len(first.entities) == sum(1 for line in ann.splitlines() if line.startswith("T"))
    # every original line survives (modulo trailing whitespace)
    written = {line.rstrip() for line in write_brat(first).splitlines()}
    assert {line.rstrip() for line in ann.splitlines() if line.strip()} <= written


def test_brat_maccrobat_to_note_and_back(test_data, tmp_path):
    note = read_brat_pair(test_data / "text" / "brat" / "15939911.txt")
    labels = {e.label for e in note.entities}
    assert {"PROBLEM", "TEST", "ANATOMY"} <= labels
    for entity in note.entities:
        assert note.text[entity.start : entity.end] == entity.text
    negated = [e for e in note.entities if e.negated]
    assert negated, "MACCROBAT POLARITY NEG becomes negated"
    txt, ann = write_brat_files(note, tmp_path)
    back = read_brat_pair(txt)
    assert [(e.start, e.end, e.label, e.negated) for e in back.entities] == [(e.start, e.end, e.label, e.negated) for e in note.entities]


def test_brat_offsets_checked(test_data):
    text = "No fever."
    with pytest.raises(UnreadableFileError, match="do not match"):
        parse_brat("T1\tPROBLEM 0 5\tfever\n", text)
    with pytest.raises(UnreadableFileError, match="line 1"):
        parse_brat("garbage line\n", text)


def _sample_note() -> AnnotatedNote:
    text = "No chest pain.\nMetoprolol 50 mg PO BID.\nTroponin 0.03 ng/mL.\nMother had\nbreast cancer."
    note = AnnotatedNote(id="n/1", text=text)

    def add(s, label, **kw):
        start = text.index(s)
        note.entities.append(Entity(start, start + len(s), label, s, **kw))

    add("chest pain", "PROBLEM", negated=True, triggers=[Trigger("negated", 0, 2, "No", 3, 13, "NEGATED_EXISTENCE")])
    add("Metoprolol", "MEDICATION")
    add("50 mg", "DOSE")
    add("PO", "ROUTE")
    add("BID", "FREQUENCY")
    add("Troponin", "TEST")
    add("0.03 ng/mL", "LAB_VALUE")
    add("breast cancer", "PROBLEM", family=True)
    add("Mother had\nbreast", "ANATOMY")  # crosses a line break: brat needs fragments
    note.assign_ids()
    ids = {e.text: e.id for e in note.entities}
    for attr in ("50 mg", "PO", "BID"):
        next(e for e in note.entities if e.text == attr).linked_to = ids["Metoprolol"]
    next(e for e in note.entities if e.text == "0.03 ng/mL").linked_to = ids["Troponin"]
    return note


def test_brat_fragments_for_line_breaks():
    note = _sample_note()
    brat = note_to_brat(note)
    crossing = next(e for e in brat.entities.values() if e.type == "ANATOMY")
    assert len(crossing.fragments) == 2
    back = brat_to_note(note.id, note.text, parse_brat(write_brat(brat), note.text))
    assert {(e.start, e.end, e.label, e.negated, e.family) for e in back.entities} == {(e.start, e.end, e.label, e.negated, e.family) for e in note.entities}
    assert next(e for e in back.entities if e.label == "DOSE").linked_to == next(e for e in back.entities if e.label == "MEDICATION").id


def test_fhir_bundle_validates_and_references_the_note():
    from fhir.resources.R4B.bundle import Bundle

    bundle = note_to_fhir_bundle(_sample_note())
    Bundle.model_validate(bundle)
    kinds = [entry["resource"]["resourceType"] for entry in bundle["entry"]]
    assert kinds[0] == "DocumentReference"
    assert kinds.count("Condition") == 1  # breast cancer is family history: not the patient's condition
    condition = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Condition")
    assert condition["verificationStatus"]["coding"][0]["code"] == "refuted"
    assert condition["evidence"][0]["detail"][0]["reference"] == bundle["entry"][0]["fullUrl"]
    med = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationStatement")
    assert med["dosage"][0]["text"] == "50 mg PO BID" and med["dosage"][0]["route"]["text"] == "PO"
    obs = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    assert obs["valueString"] == "0.03 ng/mL" and obs["derivedFrom"][0]["reference"] == bundle["entry"][0]["fullUrl"]


def test_jsonl_schema_and_docbin():
    import spacy
    from spacy.tokens import DocBin

    note = _sample_note()
    record = note.to_cli_json()
    assert set(record) == {"id", "text", "spans"}
    for span in record["spans"]:
        assert set(span) == {"start", "end", "label", "text", "negated", "uncertain", "historical", "family", "section"}
        assert record["text"][span["start"] : span["end"]] == span["text"]
    docs = list(DocBin().from_bytes(notes_to_docbin([note])).get_docs(spacy.blank("en").vocab))
    assert docs[0].user_data["healthfm_id"] == "n/1"
    assert {e.label_ for e in docs[0].ents} >= {"PROBLEM", "MEDICATION", "DOSE"}


def test_project_store_survives_reopen_and_keeps_annotators_apart(tmp_path):
    path = tmp_path / "p.hfmnotes"
    project = AnnotationProject(path)
    note = _sample_note()
    project.add_note(note.id, note.text)
    project.save(note, "alice")
    other = AnnotatedNote.from_json(json.loads(json.dumps(note.to_json())))
    other.entities = [e for e in other.entities if e.label != "ANATOMY"]
    project.save(other, "bob")
    project.set_status(note.id, "done")
    project.set_term("zebra fever", "PROBLEM")
    project.close()
    reopened = AnnotationProject(path)
    assert reopened.load(note.id, "alice").to_json() == note.to_json()
    assert len(reopened.load(note.id, "bob").entities) == len(note.entities) - 1
    assert reopened.status(note.id) == "done" and reopened.terms() == [("zebra fever", "PROBLEM")]
    result = agreement([reopened.load(note.id, "alice")], [reopened.load(note.id, "bob")])
    assert 0.8 < result["exact_span_f1"] < 1.0 and 0.0 < result["cohens_kappa"] < 1.0


def test_project_refuses_a_non_project_file(tmp_path):
    path = tmp_path / "x.hfmnotes"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UnreadableFileError, match="not a HealthFM annotation project"):
        AnnotationProject(path)


def test_cohens_kappa_known_values():
    assert cohens_kappa(list("AABB"), list("AABB")) == 1.0
    # 2x2 table a=20 b=5 c=10 d=15 -> po=0.7, pe=0.5 -> kappa 0.4
    first = ["y"] * 25 + ["n"] * 25
    second = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohens_kappa(first, second) == pytest.approx(0.4)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_ann_lines = st.one_of(
    st.text(max_size=40),
    st.builds(lambda i, t, s, e, x: f"T{i}\t{t} {s} {e}\t{x}", st.integers(-2, 9), st.sampled_from(["PROBLEM", "Sign_symptom", "", "A B"]), st.integers(-3, 30), st.integers(-3, 30), st.text(max_size=8)),
    st.builds(lambda i, n, t: f"A{i}\t{n} {t}", st.integers(0, 5), st.sampled_from(["Negated", "POLARITY", ""]), st.text(max_size=5)),
    st.builds(lambda i, a, b: f"R{i}\tAttribute_of Arg1:{a} Arg2:{b}\t", st.integers(0, 5), st.text(max_size=4), st.text(max_size=4)),
)


@settings(max_examples=150, deadline=None)
@given(lines=st.lists(_ann_lines, max_size=6), text=st.text(max_size=40))
def test_fuzz_brat_reader(lines, text):
    """Any .ann content: parsed and converted, or a clear UnreadableFileError; nothing else."""
    try:
        doc = parse_brat("\n".join(lines), text)
    except UnreadableFileError as exc:
        assert str(exc).startswith("line ")
        return
    note = brat_to_note("fuzz", text, doc)
    for entity in note.entities:
        assert 0 <= entity.start <= entity.end <= len(text)


def _two_notes_with_one_file_name():
    first = AnnotatedNote(id="ward 3/note 1", text="No fever.", entities=[Entity(3, 8, "PROBLEM", "fever", negated=True)])
    second = AnnotatedNote(id="ward 3:note 1", text="Cough.", entities=[Entity(0, 5, "PROBLEM", "Cough")])
    third = AnnotatedNote(id="WARD_3_NOTE_1", text="Rash.", entities=[Entity(0, 4, "PROBLEM", "Rash")])
    for note in (first, second, third):
        note.assign_ids()
    return [first, second, third]


@pytest.mark.parametrize("fmt", ["brat", "fhir"])
def test_exporter_registry_never_overwrites_notes_whose_ids_clean_to_one_name(tmp_path, fmt):
    from healthfm_desktop.core.records.export import export_notes

    notes = _two_notes_with_one_file_name()
    written = list(export_notes(notes, fmt, tmp_path / "out"))
    assert written == notes
    suffix = ".ann" if fmt == "brat" else ".json"
    files = [p.name for p in (tmp_path / "out").iterdir() if p.suffix == suffix]
    assert sorted(files) == sorted([f"ward_3_note_1{suffix}", f"ward_3_note_1_2{suffix}", f"WARD_3_NOTE_1_3{suffix}"])
    contents = {(tmp_path / "out" / name).read_text(encoding="utf-8") for name in files}
    assert len(contents) == 3  # three different notes, none lost
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temporaries left


def test_exporter_registry_jsonl_is_atomic_and_refuses_a_folder(tmp_path):
    from healthfm_desktop.core.records.export import export_notes

    notes = _two_notes_with_one_file_name()
    out = tmp_path / "notes.jsonl"
    out.write_text("old\n")

    def failing():
        yield notes[0]
        raise RuntimeError("stopped halfway")

    with pytest.raises(RuntimeError):
        list(export_notes(failing(), "jsonl", out))
    assert out.read_text() == "old\n" and len(list(tmp_path.iterdir())) == 1  # the old file stays whole
    list(export_notes(notes, "jsonl", out))
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [n.id for n in notes]
    with pytest.raises(UnreadableFileError, match="is a folder"):
        export_notes(notes, "jsonl", tmp_path)
    with pytest.raises(UnreadableFileError, match="is a file"):
        export_notes(notes, "brat", out)
