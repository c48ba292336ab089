"""Note readers and the terms file: good input read exactly, bad input a clear message, and
hypothesis fuzzing that nothing else ever escapes."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthfm_desktop.core.errors import UnreadableFileError
from healthfm_desktop.core.records.notes_io import BadRecord, Note, read_note_file, read_notes, read_notes_jsonl
from healthfm_desktop.core.records.terminology import parse_terms_text, read_terms_file


def test_text_note_read_exactly(tmp_path):
    path = tmp_path / "n1.txt"
    path.write_bytes("\ufeffNo fever.\r\nCafé au lait spots.".encode("utf-8"))
    note = read_note_file(path)
    assert note.id == "n1" and note.text == "No fever.\r\nCafé au lait spots."


@pytest.mark.parametrize(
    "data, reason",
    [(b"", "empty"), (b"  \n\t", "empty"), (b"\xff\xfe\x00a", "not UTF-8"), (b"abc\x00def", "NUL"), (b"caf\xe9", "not UTF-8")],
)
def test_bad_text_notes_have_clear_reasons(tmp_path, data, reason):
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    with pytest.raises(UnreadableFileError, match=reason):
        read_note_file(path)


def test_huge_note_is_refused_with_a_message(tmp_path):
    path = tmp_path / "huge.txt"
    path.write_text("Patient denies chest pain. " * 200_000)  # 5.4 MB
    with pytest.raises(UnreadableFileError, match="split it"):
        read_note_file(path)


def test_jsonl_good_and_bad_lines(tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text('{"id": "a", "text": "No fever."}\n\n{"id": 7, "text": "Cough."}\n{"text": 3}\nnot json\n{"id": "e", "text": ""}\n')
    items = list(read_notes_jsonl(path))
    notes = [i for i in items if isinstance(i, Note)]
    bad = [i for i in items if isinstance(i, BadRecord)]
    assert [(n.id, n.text) for n in notes] == [("a", "No fever."), ("7", "Cough.")]
    assert [b.reason.split(":")[0] for b in bad] == ["line 4", "line 5", "line 6"]


def test_read_notes_folder_and_missing(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.txt").write_text("Rash.")
    (tmp_path / "d" / "x.ann").write_text("T1\tPROBLEM 0 4\tRash")
    items = list(read_notes([tmp_path / "d", tmp_path / "nope.txt"]))
    assert isinstance(items[0], Note) and items[0].text == "Rash."
    assert isinstance(items[1], BadRecord) and "no such file" in items[1].reason


def test_terms_file(tmp_path):
    path = tmp_path / "terms.tsv"
    path.write_text("# my terms\nzebra fever\nfoo-mab\tmedication\n\nleft ear\tANATOMY\n")
    assert read_terms_file(path) == [("zebra fever", "PROBLEM"), ("foo-mab", "MEDICATION"), ("left ear", "ANATOMY")]
    path.write_text("x\tNOT_A_LABEL\n")
    with pytest.raises(UnreadableFileError, match="line 1: unknown label"):
        read_terms_file(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
def test_fuzz_text_note_reader(tmp_path, data):
    path = tmp_path / "fuzz.txt"
    path.write_bytes(data)
    try:
        note = read_note_file(path)
    except UnreadableFileError as exc:
        assert str(exc)
    else:
        assert note.text.strip() and "\x00" not in note.text


jsonl_lines = st.one_of(
    st.binary(max_size=80),
    st.builds(lambda i, t: json.dumps({"id": i, "text": t}).encode(), st.one_of(st.text(max_size=5), st.integers(), st.none(), st.booleans()), st.one_of(st.text(max_size=40), st.integers(), st.none())),
    st.builds(lambda v: json.dumps(v).encode(), st.recursive(st.none() | st.booleans() | st.text(max_size=5), lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3), max_leaves=5)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(jsonl_lines, max_size=6))
def test_fuzz_jsonl_reader(tmp_path, lines):
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b"\n".join(lines))
    try:
        items = list(read_notes_jsonl(path))
    except UnreadableFileError as exc:
        assert str(exc)
        return
    for item in items:
        assert isinstance(item, (Note, BadRecord))
        if isinstance(item, Note):
            assert item.text.strip() and item.id


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300))
def test_fuzz_terms_parser(text):
    try:
        terms = parse_terms_text(text)
    except UnreadableFileError as exc:
        assert str(exc).startswith("line ")
    else:
        for term, label in terms:
            assert term and term == " ".join(term.split())
            assert label
