"""`healthfm notes annotate` to contract (CLI.md) in all three formats with --terms, on real
notes, with bad inputs reported as `path: reason` and exit 1."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from healthfm_desktop.core.records.export import parse_brat


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, request):
    folder = tmp_path_factory.mktemp("notes_in")
    repo = request.config.rootpath
    (folder / "ds.txt").write_text((repo / "resources" / "samples" / "notes" / "discharge_summary.txt").read_text())
    (folder / "case.jsonl").write_text((repo / "resources" / "samples" / "notes" / "case_reports.jsonl").read_text() + '{"id": "zz", "text": "Started zebrafoxin for wobbly knee."}\n')
    (folder / "latin1.txt").write_bytes("caf\xe9 fever".encode("latin-1"))
    (folder / "empty.txt").write_text("")
    terms = folder / "terms.tsv"
    terms.write_text("zebrafoxin\tMEDICATION\nwobbly knee\n")
    return folder, terms


def _run(*args):
    return subprocess.run([sys.executable, "-m", "healthfm_desktop", "notes", "annotate", *map(str, args)], capture_output=True, text=True, timeout=600)


def test_jsonl_with_terms_and_bad_inputs(inputs, tmp_path):
    folder, terms = inputs
    out = tmp_path / "out.jsonl"
    result = _run(folder / "ds.txt", folder / "latin1.txt", folder / "case.jsonl", folder / "empty.txt", "--terms", terms, "--format", "jsonl", "--out", out)
    assert result.returncode == 1
    assert result.stdout == ""
    errors = result.stderr.strip().splitlines()
    assert f"{folder / 'latin1.txt'}: not UTF-8 text" in errors[0] and "Traceback" not in result.stderr
    assert any(line.startswith(f"{folder / 'empty.txt'}: ") for line in errors)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records][0] == "ds" and records[-1]["id"] == "zz" and len(records) == 4
    for record in records:
        for span in record["spans"]:
            assert record["text"][span["start"] : span["end"]] == span["text"]
            assert set(span) == {"start", "end", "label", "text", "negated", "uncertain", "historical", "family", "section"}
    zz = {s["text"]: s["label"] for s in records[-1]["spans"]}
    assert zz["zebrafoxin"] == "MEDICATION" and zz["wobbly knee"] == "PROBLEM"


def _run_in_process(capsys, *args):
    """The same entry point in this process (the pipeline is built once per process)."""
    from healthfm_desktop.cli import main

    code = main(["notes", "annotate", *map(str, args)])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


def test_brat_and_fhir(inputs, tmp_path, capsys):
    folder, terms = inputs
    for fmt in ("brat", "fhir"):
        out = tmp_path / fmt
        result = _run_in_process(capsys, folder / "ds.txt", folder / "case.jsonl", "--terms", terms, "--format", fmt, "--out", out)
        assert result.returncode == 0, result.stderr
        assert result.stdout == ""
        if fmt == "brat":
            assert {"ds.ann", "ds.txt", "zz.ann", "zz.txt"} <= {p.name for p in out.iterdir()}
            text = (out / "zz.txt").read_text()
            ann = parse_brat((out / "zz.ann").read_text(), text)
            assert {e.text: e.type for e in ann.entities.values()}["zebrafoxin"] == "MEDICATION"
        else:
            from fhir.resources.R4B.bundle import Bundle

            bundle = json.loads((out / "zz.json").read_text())
            Bundle.model_validate(bundle)
            kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
            assert kinds[0] == "DocumentReference" and "MedicationStatement" in kinds and "Condition" in kinds


def test_bad_terms_file_is_a_clear_error(inputs, tmp_path, capsys):
    folder, _ = inputs
    bad = tmp_path / "bad_terms.tsv"
    bad.write_text("foo\tNOPE\n")
    result = _run_in_process(capsys, folder / "ds.txt", "--terms", bad, "--format", "jsonl", "--out", tmp_path / "x.jsonl")
    assert result.returncode == 1 and "line 1: unknown label" in result.stderr and "Traceback" not in result.stderr
