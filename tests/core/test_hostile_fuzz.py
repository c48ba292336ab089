"""Fuzz the user-file entry points (issue 18): zip archives, SMILES/CSV/SDF, JSONL notes and
patient CSVs. Each generated input must give a result per record (or a clear error for the
file), inside a time budget and with bounded memory: never another exception, never a hang."""

from __future__ import annotations

import io
import json
import time
import tracemalloc
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthfm_desktop.core.errors import UserFacingError
from tests.core.dicom_manifest import DICOM

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])
BUDGET_S = 20.0  # per generated input; each is a few KB, so anything near this is a hang
MEMORY_BYTES = 64 * 1024**2


@contextmanager
def bounded(budget_s: float = BUDGET_S, memory: int = MEMORY_BYTES):
    tracemalloc.start()
    started = time.monotonic()
    try:
        yield
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < budget_s, f"took {elapsed:.1f} s"
    assert peak < memory, f"peak {peak / 1024**2:.0f} MiB"


# --- zip archives ---------------------------------------------------------------------------

DICOM_SEED = (DICOM / "single" / "MR_small_explicit.dcm").read_bytes()
member_names = st.one_of(
    st.from_regex(r"[a-z]{1,8}(/[a-z]{1,8}){0,2}\.dcm", fullmatch=True),
    st.sampled_from(["../evil.dcm", "/abs.dcm", "a/../../b.dcm", "C:\\x.dcm", "dir/", "DICOMDIR", "inner.zip"]),
)
member_bodies = st.one_of(
    st.just(DICOM_SEED),
    st.binary(max_size=256),
    st.integers(0, len(DICOM_SEED)).map(lambda cut: DICOM_SEED[:cut]),
    st.tuples(st.integers(128, len(DICOM_SEED) - 1), st.binary(min_size=1, max_size=4)).map(
        lambda t: DICOM_SEED[: t[0]] + t[1] + DICOM_SEED[t[0] + len(t[1]):]),
)


@FUZZ
@given(st.lists(st.tuples(member_names, member_bodies, st.booleans()), min_size=0, max_size=12),
       st.integers(0, 64))
def test_fuzzed_zip_accounts_for_every_member(tmp_path_factory, members, cut_tail):
    from healthfm_desktop.core.imaging.scanning import scan_paths

    folder = tmp_path_factory.mktemp("zip")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, body, deflate in members:
            archive.writestr(name, body, zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED)
    data = buffer.getvalue()
    path = folder / "fuzz.zip"
    path.write_bytes(data[: len(data) - cut_tail] if cut_tail else data)
    with bounded():
        result = scan_paths([path])
    rejected = [where for where, _reason in result.rejected]
    if str(path) in rejected:  # the archive as a whole: unreadable or unsafe
        assert not result.series
        return
    indexed = {str(f.instance.source) for s in result.series for f in s.frames}
    for name, _body, _deflate in members:
        if name.endswith("/") or name.upper() == "DICOMDIR" or name.endswith(".zip"):
            continue
        where = f"{path}!{name}"
        assert where in indexed or where in rejected  # each member: a frame or its own error
    for series in result.series:
        for index in range(series.frame_count):
            try:
                pixels = series.load_frame(index)
            except UserFacingError:
                continue
            assert pixels.shape[:2] == (series.rows, series.columns)


# --- molecules ------------------------------------------------------------------------------

SMILES_SEEDS = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C1CC1C(=O)O", "[Na+].[Cl-]", "O=C(O)C1=CC=CC=C1"]
smiles_text = st.one_of(
    st.sampled_from(SMILES_SEEDS),
    st.text(alphabet="CNOcnos()[]=#123456789+-@/\\%.\t *", max_size=40),
    st.integers(1, 3000).map(lambda n: "C" * n),
    st.text(max_size=20),
)


def _records_or_refusal(path: Path):
    """Every record of a molecule file, or None when the file as a whole is refused (clearly)."""
    from healthfm_desktop.core.chemistry.reading import read_molecules

    try:
        return list(read_molecules(path))
    except UserFacingError as exc:
        assert str(exc)
        return None


@FUZZ
@given(st.lists(smiles_text, min_size=1, max_size=15), st.sampled_from(["smi", "csv"]))
def test_fuzzed_smiles_files_give_one_row_per_record(tmp_path_factory, texts, kind):
    from healthfm_desktop.core.chemistry.properties import describe_records

    folder = tmp_path_factory.mktemp("mol")
    path = folder / f"fuzz.{kind}"
    if kind == "csv":
        cells = ['"' + t.replace('"', '""') + '"' for t in texts]
        path.write_text("id,smiles\n" + "".join(f"r{k},{c}\n" for k, c in enumerate(cells)), encoding="utf-8",
                        errors="surrogatepass")
    else:
        path.write_text("".join(t.replace("\n", " ") + f" r{k}\n" for k, t in enumerate(texts)), encoding="utf-8",
                        errors="surrogatepass")
    with bounded():
        records = _records_or_refusal(path)
        rows = list(describe_records(records or [], workers=1))
    if records is None:
        return
    assert len(rows) == len(records)
    for record, row in zip(records, rows):
        assert row["id"] == record.id
        if "error" in row:
            assert row["error"] and isinstance(row["error"], str)
        else:
            assert row["mw"] > 0 and record.mol is not None
            assert not any(c.isspace() for c in record.source.strip())  # "CC\tCC" is never ethane


sd_block = st.one_of(
    st.just("ethanol\n     RDKit          2D\n\n  3  2  0  0  0  0  0  0  0  0999 V2000\n"
            "    0.0000    0.0000    0.0000 C   0  0\n    1.2990    0.7500    0.0000 C   0  0\n"
            "    2.5981   -0.0000    0.0000 O   0  0\n  1  2  1  0\n  2  3  1  0\nM  END\n"),
    st.integers(900, 60000).map(lambda n: f"big\n  x\n\n  0  0  0     0  0            999 V3000\nM  V30 BEGIN CTAB\n"
                                         f"M  V30 COUNTS {n} {n - 1} 0 0 0\nM  END\n"),
    st.text(alphabet="0123456789 .CNOVM\n-", max_size=200),
)


@FUZZ
@given(st.lists(sd_block, min_size=1, max_size=6))
def test_fuzzed_sd_files_give_one_row_per_record(tmp_path_factory, blocks):
    path = tmp_path_factory.mktemp("sdf") / "fuzz.sdf"
    path.write_text("".join(b + ("" if b.endswith("\n") else "\n") + "$$$$\n" for b in blocks))
    with bounded():
        records = _records_or_refusal(path)
    if records is None:
        return
    assert len(records) == len(blocks)  # an empty record is an error row, not dropped
    for record in records:
        assert (record.mol is None) == (record.error is not None)
        if record.mol is not None:
            assert record.mol.GetNumHeavyAtoms() <= 1000


# --- notes ----------------------------------------------------------------------------------

note_line = st.one_of(
    st.builds(lambda i, t: json.dumps({"id": i, "text": t}), st.text(min_size=1, max_size=8), st.text(max_size=80)),
    st.builds(lambda t: '{"id":"s","text":"' + t + '"}', st.sampled_from(["\\ud800", "a\\udfffb", "\\u0000", "ok \\ud83d\\ude00"])),
    st.text(max_size=40),
)


@FUZZ
@given(st.lists(note_line, min_size=1, max_size=10))
def test_fuzzed_jsonl_notes_give_a_note_or_an_error_per_line(tmp_path_factory, lines):
    from healthfm_desktop.core.records.notes_io import BadRecord, read_notes

    path = tmp_path_factory.mktemp("notes") / "fuzz.jsonl"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + b"\n")
    with bounded():
        items = list(read_notes([path]))
    assert items
    for item in items:
        if isinstance(item, BadRecord):
            assert item.reason
        else:
            item.text.encode("utf-8")  # every note that comes out can be written (no lone surrogate)
            item.id.encode("utf-8")
            assert item.text.strip()


# --- patient CSVs ---------------------------------------------------------------------------

patient_row = st.tuples(
    st.sampled_from(["132915", " 132915", "132915 ", "140001", "", "x" * 80]),
    st.one_of(st.integers(0, 3000).map(str), st.sampled_from(["00:05", "47:59", "-1", "abc", ""])),
    st.sampled_from(["HR", "Temp", "GCS", "pH", "NoSuchVar", "Weight"]),
    st.one_of(st.floats(-10, 300, allow_nan=False).map(lambda v: f"{v:.1f}"), st.sampled_from(["", "nan", "inf", "1e309"])),
)


@FUZZ
@given(st.lists(patient_row, min_size=1, max_size=40), st.integers(0, 5))
def test_fuzzed_patient_csv_scores_each_stay_once(tmp_path_factory, rows, repeats):
    from healthfm_desktop.core.patients.importing import read_long_csv

    rows = rows + rows[:repeats]  # exact duplicates among them
    path = tmp_path_factory.mktemp("patients") / "fuzz.csv"
    path.write_text("patient_id,time,variable,value\n" + "".join(",".join(r) + "\n" for r in rows))
    with bounded():
        try:
            cohort = read_long_csv(path)
        except UserFacingError as exc:
            assert str(exc)
            return
    ids = [r.patient_id for r in cohort.records]
    assert len(ids) == len(set(ids)) and all(i == i.strip() and i for i in ids)  # one record per normalised id
    for record in cohort.records:
        triples = list(zip(record.time.tolist(), record.variable.tolist(), record.value.tolist()))
        assert len(triples) == len(set(triples))  # no measurement counted twice
    lines = [b.line for b in cohort.bad_rows]
    assert all(2 <= line <= len(rows) + 1 for line in lines)
