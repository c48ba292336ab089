"""`healthfm molecules describe | predict | index | search` exactly as CLI.md, on real files,
compared with RDKit; bad input gives `path: reason` on stderr and exit 1."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import QED, Crippen, Descriptors, Lipinski, rdFingerprintGenerator, rdMolDescriptors

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "molecules"
SAMPLES = REPO / "resources" / "samples" / "molecules"
KEYS = ["id", "smiles", "mw", "logp", "tpsa", "hbd", "hba", "rotb", "qed", "lipinski_violations", "alerts"]


def healthfm(*args):
    return subprocess.run([sys.executable, "-m", "healthfm_desktop", "molecules", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def lines(result):
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_describe_json_matches_rdkit():
    result = healthfm("describe", SAMPLES / "approved_drugs.csv", "--json")
    assert result.returncode == 0, result.stderr
    rows = lines(result)
    assert len(rows) == 19
    for row in rows:
        assert list(row) == KEYS
        mol = Chem.MolFromSmiles(row["smiles"])
        assert row["mw"] == pytest.approx(Descriptors.MolWt(mol), abs=1e-9)
        assert row["logp"] == pytest.approx(Crippen.MolLogP(mol), abs=1e-9)
        assert row["tpsa"] == pytest.approx(rdMolDescriptors.CalcTPSA(mol), abs=1e-9)
        assert (row["hbd"], row["hba"], row["rotb"]) == (Lipinski.NumHDonors(mol), Lipinski.NumHAcceptors(mol),
                                                         rdMolDescriptors.CalcNumRotatableBonds(mol))
        assert row["qed"] == pytest.approx(QED.qed(mol), abs=1e-12)
    assert rows[0]["id"] == "CHEMBL25" and rows[0]["alerts"] == ["Brenk:phenol_ester"]


def test_describe_csv_keeps_bad_records_and_exits_1(tmp_path):
    out = tmp_path / "props.csv"
    result = healthfm("describe", DATA / "malformed" / "good_bad_good_bad.sdf", "--out", out)
    assert result.returncode == 1
    assert "good_bad_good_bad.sdf: record" in result.stderr and "valence" in result.stderr
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 4 and [bool(r["error"]) for r in rows] == [False, True, False, True]
    assert list(rows[0])[: len(KEYS)] == KEYS


def test_predict_json_keys():
    result = healthfm("predict", SAMPLES / "approved_drugs.sdf", "--json")
    assert result.returncode == 0, result.stderr
    rows = lines(result)
    assert len(rows) == 19 and rows[0]["id"] == "CHEMBL25"
    for row in rows:
        assert set(row) == {"id", "smiles", "predictions", "in_domain", "intervals", "prediction_sets", "forced"}
        assert "solubility_logS" in row["predictions"] and "tox21:NR-AR" in row["predictions"]
        assert set(row["in_domain"]) == set(row["predictions"])
        # out of a model's domain: that model's answer withheld (null), the flag says why
        assert all((row["predictions"][k] is None) == (not row["in_domain"][k]) for k in row["predictions"])


def test_index_then_search_equals_rdkit(tmp_path):
    library = tmp_path / "lib.smi"
    drugs = [r for r in csv.DictReader(open(SAMPLES / "approved_drugs.csv"))]
    library.write_text("".join(f"{d['smiles']} {d['id']}\n" for d in drugs))
    index = tmp_path / "index"
    result = healthfm("index", library, "--out", index)
    assert result.returncode == 0 and "19 molecules" in result.stdout
    query = "CC(C)Cc1ccc(cc1)C(C)C(=O)N"
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    sims = DataStructs.BulkTanimotoSimilarity(gen.GetFingerprint(Chem.MolFromSmiles(query)),
                                              [gen.GetFingerprint(Chem.MolFromSmiles(d["smiles"])) for d in drugs])
    expected = sorted(((s, i) for i, s in enumerate(sims)), key=lambda t: (-t[0], t[1]))[:5]
    for source in (index, library):
        hits = lines(healthfm("search", source, "--similar", query, "--top", "5", "--json"))
        assert [(h["id"], h["score"]) for h in hits] == [(drugs[i]["id"], s) for s, i in expected]
    hits = lines(healthfm("search", index, "--substructure", "C(=O)[OH]", "--json"))
    acid = Chem.MolFromSmarts("C(=O)[OH]")
    assert [h["id"] for h in hits] == [d["id"] for d in drugs if Chem.MolFromSmiles(d["smiles"]).HasSubstructMatch(acid)]
    assert all(h["score"] == 1.0 for h in hits)


def _on_a_terminal(*args) -> tuple[subprocess.CompletedProcess, str]:
    """Run the CLI with stderr on a pseudo-terminal (stdout piped): the result and what the terminal got."""
    import os
    import pty

    master, slave = pty.openpty()
    try:
        result = subprocess.run([sys.executable, "-m", "healthfm_desktop", "molecules", *map(str, args)],
                                stdout=subprocess.PIPE, stderr=slave, text=True, timeout=300)
    finally:
        os.close(slave)
    shown = b""
    try:
        while chunk := os.read(master, 4096):
            shown += chunk
    except OSError:  # EIO: the terminal's other end is closed and everything was read
        pass
    os.close(master)
    return result, shown.decode()


def test_the_first_substructure_search_shows_its_data_build_on_a_terminal(tmp_path):
    library = tmp_path / "lib.smi"
    drugs = [r for r in csv.DictReader(open(SAMPLES / "approved_drugs.csv"))]
    library.write_text("".join(f"{d['smiles']} {d['id']}\n" for d in drugs))
    index = tmp_path / "index"
    result, shown = _on_a_terminal("index", library, "--out", index)
    assert result.returncode == 0 and "indexing: 19 molecules" in shown
    result, shown = _on_a_terminal("search", index, "--substructure", "C(=O)[OH]", "--json")
    assert result.returncode == 0 and lines(result)
    assert "preparing substructure search (once per index): 19/19 molecules" in shown
    result, shown = _on_a_terminal("search", index, "--substructure", "C(=O)[OH]", "--json")
    assert result.returncode == 0 and "preparing" not in shown  # built once, kept in the index
    quiet = healthfm("search", tmp_path / "index", "--substructure", "c1ccccc1", "--json")
    assert quiet.returncode == 0 and quiet.stderr == ""  # not a terminal: no progress (CLI.md)


def test_the_progress_line_gives_count_rate_and_time_left(capsys, monkeypatch):
    from healthfm_desktop.batch import output

    clock = iter([0.0, 2.0, 2.1, 4.0, 60.0])
    monkeypatch.setattr(output.time, "perf_counter", lambda: next(clock))
    line = output.ProgressLine("preparing", 1000, "molecules", enabled=True)
    line(100)  # at 2 s: 50/s, 900 left
    line(150)  # 0.1 s later: not redrawn
    line(200)  # at 4 s: 50/s
    line(1000)  # at 60 s: the final count is always drawn
    line.close()
    err = capsys.readouterr().err
    assert "preparing: 100/1000 molecules, 50/s, about 18 s left" in err
    assert "150/1000" not in err and "about 16 s left" in err
    assert "1000/1000 molecules, 17/s, 1 min 00 s" in err and err.endswith("\n")
    clock = iter([0.0, 0.0, 0.1, 0.1])
    line = output.ProgressLine("indexing", unit="molecules", enabled=True)  # no total: count and rate
    line(0)
    line(19)  # too soon to redraw: close() draws it
    line.close()
    err = capsys.readouterr().err
    assert "indexing: 0 molecules, 0/s" in err and "indexing: 19 molecules, 190/s" in err


@pytest.mark.parametrize("args,message", [
    (["search", "{lib}", "--similar", "C1CC", "--json"], "invalid query SMILES"),
    (["search", "{lib}", "--substructure", "[C", "--json"], "invalid SMARTS"),
    (["describe", "{missing}", "--json"], "No such file"),
    (["predict", "{empty}", "--json"], "no molecule"),
])
def test_bad_input_is_a_clear_message_and_exit_1(tmp_path, args, message):
    names = {"lib": SAMPLES / "approved_drugs.csv", "missing": tmp_path / "nope.sdf", "empty": DATA / "malformed" / "empty.sdf"}
    result = healthfm(*[a.format(**names) for a in args])
    assert result.returncode == 1 and message in result.stderr and result.stdout == ""
