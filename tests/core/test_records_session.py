"""The Qt-free notes session: edits as undoable steps with one history per note, events for
every change, selections snapped to words, review order by confidence; and JSONL "spans" read
as a note's gold spans (property test: what comes out is what went in, or a clear error)."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthfm_desktop.core.errors import UnreadableFileError
from healthfm_desktop.core.records.annotation import AnnotatedNote, Entity
from healthfm_desktop.core.records.labels import LABELS
from healthfm_desktop.core.records.notes_io import parse_jsonl_line
from healthfm_desktop.core.records.session import NotesSession, snap_to_words
from healthfm_desktop.core.storage.annotations import AnnotationProject


@pytest.fixture
def session(tmp_path):
    project = AnnotationProject(tmp_path / "p.hfmnotes")
    for note_id, text in (("a", "Cough and fever today."), ("b", "Rash on the arm.")):
        project.add_note(note_id, text)
    return NotesSession(project)


def test_edits_undo_per_note_and_emit_events(session):
    seen = []
    session.events.connect("note_changed", lambda n: seen.append(("changed", n)))
    session.events.connect("status_changed", lambda n, s: seen.append((s, n)))
    cough = session.add_entity("a", 1, 4, "PROBLEM")  # "oug" snaps to "Cough"
    assert cough.text == "Cough" and cough.status == "manual"
    session.add_entity("b", 0, 4, "PROBLEM")
    session.toggle_assertion("a", cough.id, "negated")
    assert session.note("a").entities[0].negated and session.note("a").entities[0].triggers[-1].category == "MANUAL_SET"
    session.undo("b")  # b's history only
    assert session.note("b").entities == [] and session.note("a").entities[0].negated
    session.undo("a")
    assert not session.note("a").entities[0].negated
    session.redo("a")
    assert session.note("a").entities[0].negated and not session.can_redo("a") and session.can_redo("b")
    assert ("in_progress", "a") in seen and ("changed", "b") in seen
    assert session.save_dirty() == ["a", "b"]
    assert session.project.load("a", session.annotator).entities[0].negated


def test_review_order_threshold_and_low_confidence_first(session):
    note = session.note("a")
    note.entities = [Entity(0, 5, "PROBLEM", "Cough", source="model", confidence=0.3), Entity(10, 15, "PROBLEM", "fever", source="model", confidence=0.8)]
    note.assign_ids()
    assert session.review_order("a") == ["T1", "T2"]
    assert session.review_order("a", low_confidence_first=True) == ["T1", "T2"]
    assert session.review_order("a", threshold=0.5) == ["T2"]
    assert session.neighbour("a", None, 1) == "T1" and session.neighbour("a", "T1", 1) == "T2" and session.neighbour("a", "T1", -1) == "T2"
    session.reject_all("a", below=0.5)
    assert [e.text for e in session.note("a").entities] == ["fever"]


@given(st.text(alphabet="ab .\n", max_size=30), st.integers(0, 30), st.integers(0, 30))
def test_snap_to_words_keeps_whole_words(text, a, b):
    start, end = snap_to_words(text, a, b)
    assert 0 <= start <= end <= len(text)
    if start < end:
        chunk = text[start:end]
        assert chunk == chunk.strip()
        assert start == 0 or not (text[start - 1].isalnum() and text[start].isalnum())
        assert end == len(text) or not (text[end - 1].isalnum() and text[end].isalnum())


@given(
    text=st.text(alphabet="abc xyz\n", max_size=39).map(lambda t: "a" + t),  # a note is never blank
    raw=st.lists(st.tuples(st.integers(-2, 45), st.integers(-2, 45), st.sampled_from(list(LABELS) + ["NOPE"]), st.booleans()), max_size=4),
)
def test_jsonl_spans_become_gold_or_a_clear_error(text, raw):
    spans = [{"start": s, "end": e, "label": label, "negated": negated} for s, e, label, negated in raw]
    line = json.dumps({"id": "n1", "text": text, "spans": spans})
    valid = all(0 <= s < e <= len(text) and label in LABELS for s, e, label, _n in raw)
    if not valid or not spans:
        if spans and not valid:
            with pytest.raises(UnreadableFileError, match="line 3, span"):
                parse_jsonl_line(line, 3)
        return
    note = parse_jsonl_line(line, 3)
    got = sorted((e.start, e.end, e.label, e.negated, e.text) for e in note.gold.entities)
    assert got == sorted((s, e, label, negated, text[s:e]) for s, e, label, negated in raw)
    assert isinstance(note.gold, AnnotatedNote) and note.gold.text == text
