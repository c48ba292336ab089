"""Hostile notes, patient tables and interrupted writes (issue 18, cases 6, 7 and 9): a lone
surrogate in one JSONL note, duplicate patient rows and spaced ids, stale temporaries."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from healthfm_desktop.core.patients.importing import read_long_csv
from healthfm_desktop.core.records.notes_io import BadRecord, read_notes
from healthfm_desktop.core.storage.atomic import atomic_write_text, remove_stale_temporaries

REPO = Path(__file__).resolve().parents[2]
TIMESERIES = REPO / "tests" / "data" / "patients" / "timeseries.csv.gz"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "healthfm_desktop", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))


# --- case 6 ---------------------------------------------------------------------------------

SURROGATE_BATCH = ('{"id":"n1","text":"Patient denies chest pain."}\n'
                   '{"id":"n2","text":"bad \\ud800 here"}\n'
                   '{"id":"n3","text":"History of pneumonia."}\n')


def test_a_lone_surrogate_is_that_notes_error(tmp_path):
    path = tmp_path / "batch.jsonl"
    path.write_text(SURROGATE_BATCH)
    items = list(read_notes([path]))
    assert [type(i).__name__ for i in items] == ["Note", "BadRecord", "Note"]
    assert items[1] == BadRecord(str(path), "line 2: the note holds an invalid character (lone surrogate U+D800 at "
                                            "offset 4, from a JSON escape): not Unicode text")


@pytest.mark.timeout(600)
def test_cli_annotate_writes_every_other_note(tmp_path):
    path = tmp_path / "batch.jsonl"
    path.write_text(SURROGATE_BATCH)
    out = tmp_path / "out.jsonl"
    done = _cli("notes", "annotate", str(path), "--format", "jsonl", "--out", str(out))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"{path}: line 2: the note holds an invalid character" in done.stderr
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [n["id"] for n in written] == ["n1", "n3"]
    assert any(s["text"] == "chest pain" and s["negated"] for s in written[0]["spans"])


# --- case 7 ---------------------------------------------------------------------------------


def _patient_files(tmp_path: Path) -> tuple[Path, Path, Path, int]:
    lines = gzip.open(TIMESERIES, "rt").read().splitlines()
    header, rows = lines[0], lines[1:]
    first = rows[0].split(",")[0]
    mine = [r for r in rows if r.split(",")[0] == first]
    others = [r for r in rows if r.split(",")[0] != first][:2000]
    clean, dup, spaced = tmp_path / "clean.csv", tmp_path / "dup.csv", tmp_path / "spaced.csv"
    clean.write_text("\n".join([header] + mine + others) + "\n")
    dup.write_text("\n".join([header] + mine + mine[:10] + others) + "\n")
    spaced.write_text("\n".join([header] + mine + [" " + r for r in mine[:10]] + others) + "\n")
    return clean, dup, spaced, len(mine)


def _observations(cohort) -> list[tuple]:
    return [(r.patient_id, tuple(r.time.tolist()), tuple(r.variable.tolist()), tuple(r.value.tolist())) for r in cohort.records]


def test_exact_duplicate_rows_are_removed_and_reported(tmp_path):
    clean, dup, spaced, n = _patient_files(tmp_path)
    reference = read_long_csv(clean)
    assert not reference.bad_rows
    for path in (dup, spaced):
        cohort = read_long_csv(path)
        assert _observations(cohort) == _observations(reference)
        assert [b.line for b in cohort.bad_rows] == list(range(n + 2, n + 12))
        assert cohort.bad_rows[0].reason == "duplicate of line 2 (same patient, time, variable and value): ignored"


@pytest.mark.timeout(600)
def test_cli_risk_is_unchanged_by_duplicates_and_exits_1(tmp_path):
    clean, dup, spaced, n = _patient_files(tmp_path)
    expected = _cli("patients", "risk", str(clean), "--json")
    assert expected.returncode == 0
    for path in (dup, spaced):
        done = _cli("patients", "risk", str(path), "--json")
        assert done.returncode == 1
        assert done.stdout == expected.stdout  # was 0.0154 -> 0.0099 for the repeated stay, exit 0
        assert f"{path}:{n + 2}: duplicate of line 2" in done.stderr


# --- case 9: temporaries of interrupted writes -------------------------------------------


def test_stale_temporaries_are_removed_fresh_ones_kept(tmp_path):
    stale = tmp_path / ".export.json.ab12CD_9.tmp"
    fresh = tmp_path / ".export.json.zz12CD_9.tmp"
    other = tmp_path / "notes.tmp"  # not one of ours
    for f in (stale, fresh, other):
        f.write_text("partial")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert fresh.exists() and other.exists()


def test_the_next_write_of_a_file_clears_its_killed_writes_debris(tmp_path):
    debris = tmp_path / ".export.json.Q1w2E3r4.tmp"  # a kill -9 during an earlier export
    debris.write_text("{")
    old = time.time() - 3600
    os.utime(debris, (old, old))
    atomic_write_text(tmp_path / "export.json", "{}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.json"]


def test_killed_writer_leaves_no_temporary_after_the_app_starts(tmp_path):
    """kill -9 a process in the middle of atomic writes, then start the GUI once: no temporary left."""
    home = tmp_path / "home"
    home.mkdir()
    script = ("import os, sys\n"
              "from healthfm_desktop.core.storage import atomic\n"
              "real = os.replace\n"
              "def hang(*a):\n"
              "    print('written', flush=True); sys.stdin.read()\n"
              "os.replace = hang\n"
              f"atomic.atomic_write_text({str(home / 'export.json')!r}, '{{}}')\n")
    writer = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "written"
    writer.kill()
    writer.wait()
    (debris,) = [p for p in home.iterdir() if p.name.endswith(".tmp")]
    old = time.time() - 3600
    os.utime(debris, (old, old))
    done = subprocess.run([sys.executable, "-m", "healthfm_desktop", "gui", "--quit-after-show"], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, HEALTHFM_HOME=str(home), QT_QPA_PLATFORM="offscreen"))
    assert done.returncode == 0, done.stderr
    assert not debris.exists()
