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
