"""Adaptation end to end through the CLI (CLI.md "Models and adaptation") on real tasks no
shipped model was trained for: NegEx negated-vs-affirmed sentences (text), the fraction of the
frame an expert-outlined fetal head covers in HC18 ultrasound (image regression and a derived
large/small classification), ClinTox clinical-trial toxicity (molecule)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from healthfm_desktop.cli import main
from healthfm_desktop.core.foundation.adaptation import auc_score, train_adapted_model
from healthfm_desktop.core.foundation.datasets import Items, read_labelled, read_unlabelled
from healthfm_desktop.core.foundation.model_files import export_model, import_model
from healthfm_desktop.core.inference.registry import load_registry

REPO = Path(__file__).resolve().parents[2]
TRAINING = REPO / "models" / "training" / "data"
CLINTOX = REPO / "tests" / "data" / "molecules" / "clintox_sample.csv"
XRAY = REPO / "tests" / "data" / "images" / "pneumoniamnist_test_045_pneumonia.png"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HEALTHFM_HOME", str(tmp_path / "home"))
    return tmp_path


def _json_lines(capsys):
    captured = capsys.readouterr()
    return [json.loads(line) for line in captured.out.splitlines() if line.strip()], captured.err


def _negex(count_train=160, count_test=80):
    rows = [json.loads(line) for line in (TRAINING / "text" / "negex_context.jsonl").open(encoding="utf-8")]
    order = np.random.default_rng(0).permutation(len(rows))
    pick = [rows[i] for i in order[: count_train + count_test]]
    return pick[:count_train], pick[count_train:]


def test_text_adaptation_learns_negation_and_predicts_held_out_sentences(home, capsys):
    train, test = _negex()
    data = home / "negation.jsonl"
    data.write_text("".join(json.dumps({"id": r["id"], "text": r["text"], "label": r["meta"]["negation"]}) + "\n"
                            for r in train), encoding="utf-8")
    queries = home / "queries.jsonl"
    queries.write_text("".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in test), encoding="utf-8")
    assert main(["adapt", "train", "--kind", "text", "--data", str(data), "--name", "negation", "--json"]) == 0
    (summary,), _ = _json_lines(capsys)
    assert summary["name"] == "negation" and summary["kind"] == "text" and summary["task"] == "classification"
    assert summary["n"] == len(train) and summary["classes"] == ["Affirmed", "Negated"]
    assert summary["cv"]["auc"] > 0.85 and summary["seconds"] > 0

    assert main(["adapt", "predict", "negation", str(queries), "--json", "--force"]) == 0
    results, _ = _json_lines(capsys)
    assert [r["id"] for r in results] == [r["id"] for r in test]
    truth = np.array([r["meta"]["negation"] == "Negated" for r in test])
    p = np.array([r["probabilities"]["Negated"] for r in results])
    assert roc_auc_score(truth, p) > 0.85  # held out: never seen in training
    covered = [("Negated" if t else "Affirmed") in r["prediction_set"] for r, t in zip(results, truth)]
    assert np.mean(covered) >= 0.8  # 90 % sets on 80 items
    assert np.mean([r["in_domain"] for r in results]) > 0.7  # the same kind of sentence


def _hc18_pngs(folder: Path, split: str, count: int):
    with np.load(TRAINING / "images" / "hc18_seg_144x208.npz") as data:
        images, masks = data[f"{split}_images"][:count], data[f"{split}_masks"][:count]
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (image, mask) in enumerate(zip(images, masks)):
        name = f"{split}_{i:03d}.png"
        cv2.imwrite(str(folder / name), image)
        rows.append((name, float((mask > 0).mean())))
    return rows


def _write_csv(path: Path, rows, header=("path", "label")):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def test_image_regression_head_fraction_with_intervals_and_domain(home, capsys):
    train = _hc18_pngs(home / "img", "train", 120)
    test = _hc18_pngs(home / "img", "test", 40)
    _write_csv(home / "train.csv", [(f"img/{n}", v) for n, v in train])
    assert main(["adapt", "train", "--kind", "image", "--data", str(home / "train.csv"), "--name", "head_fraction",
                 "--task", "regression", "--json"]) == 0
    (summary,), _ = _json_lines(capsys)
    assert summary["classes"] is None and set(summary["cv"]) == {"mae", "rmse", "r2"}
    paths = [str(home / "img" / name) for name, _ in test] + [str(XRAY)]
    assert main(["adapt", "predict", "head_fraction", *paths, "--json", "--force"]) == 0
    results, _ = _json_lines(capsys)
    truth = np.array([v for _, v in test])
    values = np.array([r["value"] for r in results[:-1]])
    baseline = np.abs(truth - np.mean([v for _, v in train])).mean()  # predicting the training mean
    assert np.abs(values - truth).mean() < 0.8 * baseline
    inside = [r["interval"][0] <= t <= r["interval"][1] for r, t in zip(results, truth)]
    assert np.mean(inside) >= 0.75
    assert np.mean([r["in_domain"] for r in results[:-1]]) > 0.7
    assert results[-1]["id"] == str(XRAY) and results[-1]["in_domain"] is False  # a chest X-ray is not an ultrasound
    assert results[-1]["forced"] is True
    # without --force the answer outside the domain is withheld (CLI.md "Trust in every prediction")
    assert main(["adapt", "predict", "head_fraction", str(XRAY), "--json"]) == 0
    (xray,), _ = _json_lines(capsys)
    assert xray["value"] is None and xray["interval"] is None and xray["in_domain"] is False and xray["forced"] is False


def test_adapted_image_classifier_runs_in_images_classify(home, capsys):
    rows = _hc18_pngs(home / "img", "train", 200)
    median = float(np.median([v for _, v in rows]))
    _write_csv(home / "train.csv", [(f"img/{n}", "large" if v > median else "small") for n, v in rows])
    assert main(["adapt", "train", "--kind", "image", "--data", str(home / "train.csv"), "--name", "head_size"]) == 0
    capsys.readouterr()
    test = _hc18_pngs(home / "held", "test", 60)
    assert main(["images", "classify", *[str(home / "held" / n) for n, _ in test], "--model", "head_size", "--json"]) == 0
    results, _ = _json_lines(capsys)
    assert {r["model"] for r in results} == {"head_size"}
    assert all(set(r["probabilities"]) == {"large", "small"} for r in results)
    answered = [r for r in results if r["in_domain"]]
    assert len(answered) >= 0.8 * len(results) and all(r["label"] in r["prediction_set"] for r in answered)
    # outside the head's domain the answer is withheld (CLI.md "Trust in every prediction")
    assert all(r["label"] is None for r in results if not r["in_domain"])
    truth = np.array([v > median for _, v in test])
    assert roc_auc_score(truth, [r["probabilities"]["large"] for r in results]) > 0.75


def test_molecule_adaptation_on_clintox_and_similar_search(home, capsys):
    with CLINTOX.open() as handle:
        rows = list(csv.DictReader(handle))
    train, test = rows[:150], rows[150:]
    _write_csv(home / "train.csv", [(r["id"], r["smiles"], r["CT_TOX"]) for r in train], ("id", "smiles", "CT_TOX"))
    _write_csv(home / "test.csv", [(r["id"], r["smiles"]) for r in test], ("id", "smiles"))
    assert main(["adapt", "train", "--kind", "molecule", "--data", str(home / "train.csv"), "--name", "ct_tox",
                 "--label-column", "CT_TOX", "--json"]) == 0
    (summary,), _ = _json_lines(capsys)
    assert summary["classes"] == ["0", "1"] and summary["cv"]["auc"] > 0.6
    assert main(["adapt", "predict", "ct_tox", str(home / "test.csv"), "--json", "--force"]) == 0
    results, _ = _json_lines(capsys)
    assert [r["id"] for r in results] == [r["id"] for r in test]
    assert roc_auc_score([r["CT_TOX"] == "1" for r in test], [r["probabilities"]["1"] for r in results]) > 0.6
    assert np.mean([r["in_domain"] for r in results]) > 0.6  # drugs like the training ones (a scaffold shift aside)

    # salt, water, a metal, a fullerene: nothing like a drug; the head must not answer for them
    junk = ["[Na+].[Cl-]", "O", "[Fe]", "c12c3c4c5c1c1c6c7c2c2c8c3c3c9c4c4c%10c5c5c1c1c6c6c%11c7c2c2c7c8c3c3c8c9c4c4c9c%10c5"
            "c5c1c1c6c6c%11c2c2c7c3c3c8c4c4c9c5c1c1c6c2c3c41"]
    _write_csv(home / "odd.csv", [(f"odd{i}", smiles) for i, smiles in enumerate(junk)] + [("known", train[3]["smiles"])],
               ("id", "smiles"))
    assert main(["adapt", "predict", "ct_tox", str(home / "odd.csv"), "--json"]) == 0
    odd, _ = _json_lines(capsys)
    assert [(r["in_domain"], r["label"] is None) for r in odd] == [(False, True)] * 4 + [(True, False)]

    query = train[7]["smiles"]
    _write_csv(home / "library.csv", [(r["id"], r["smiles"], r["CT_TOX"]) for r in train], ("id", "smiles", "label"))
    assert main(["similar", "--kind", "molecule", "--library", str(home / "library.csv"), "--query", query,
                 "--top", "3", "--json"]) == 0
    hits, _ = _json_lines(capsys)
    assert hits[0]["id"] == train[7]["id"] and hits[0]["score"] == pytest.approx(1.0, abs=1e-6)
    assert hits[0]["label"] == train[7]["CT_TOX"] and len(hits) == 3
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


def test_similar_notes_and_images_find_the_query_itself_first(home, capsys):
    train, _ = _negex(40, 0)
    library = home / "notes.jsonl"
    library.write_text("".join(json.dumps({"id": r["id"], "text": r["text"], "label": r["meta"]["negation"]}) + "\n"
                               for r in train), encoding="utf-8")
    query = home / "query.txt"
    query.write_text(train[5]["text"], encoding="utf-8")
    assert main(["similar", "--kind", "text", "--library", str(library), "--query", str(query), "--json"]) == 0
    hits, _ = _json_lines(capsys)
    assert hits[0]["id"] == train[5]["id"] and hits[0]["score"] > 0.999 and len(hits) == 10
    rows = _hc18_pngs(home / "img", "val", 12)
    images = [str(home / "img" / n) for n, _ in rows]
    assert main(["similar", "--kind", "image", "--library", *images, str(XRAY), "--query", images[3], "--top", "13", "--json"]) == 0
    hits, _ = _json_lines(capsys)
    assert hits[0]["id"] == images[3] and hits[-1]["id"] == str(XRAY)  # the X-ray is the least like an ultrasound


def test_export_import_round_trip_and_refusals(home, tmp_path, monkeypatch):
    with CLINTOX.open() as handle:
        rows = list(csv.DictReader(handle))[:60]
    items = Items("molecule")
    from healthfm_desktop.core.chemistry.reading import parse_smiles

    for r in rows:
        items.add(r["id"], parse_smiles(r["smiles"])[0], r["CT_TOX"])
    steps = []
    summary = train_adapted_model("molecule", items, "tox_small", progress=lambda f, s: steps.append(f))
    assert steps == sorted(steps) and steps[-1] == 1.0
    manifest = load_registry().get("tox_small")
    assert manifest.source == "user" and manifest.version == "1" and manifest.encoder == "molecule_features"
    card = manifest.manifest_path.with_suffix(".md").read_text()
    assert "## Metrics" in card and "When not to use" in card and str(summary.fit.label_counts["1"]) in card
    from healthfm_desktop.core.foundation.adaptation import AdaptedModel

    before = AdaptedModel.load(manifest).predict(items.payloads[:10])
    exported = export_model("tox_small", tmp_path / "tox_small")
    assert exported.name == "tox_small.healthfm-model"

    monkeypatch.setenv("HEALTHFM_HOME", str(tmp_path / "colleague"))
    imported = import_model(exported)
    after = AdaptedModel.load(load_registry().get("tox_small")).predict(items.payloads[:10])
    assert imported.name == "tox_small" and after == before
    with pytest.raises(Exception, match="installed already"):
        import_model(exported)

    import zipfile

    damaged = tmp_path / "damaged.healthfm-model"
    with zipfile.ZipFile(exported) as source, zipfile.ZipFile(damaged, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            target.writestr(info.filename, data[:-1] + bytes([data[-1] ^ 1]) if info.filename.endswith(".onnx") else data)
    with pytest.raises(Exception, match="does not match its manifest"):
        import_model(damaged, replace=True)
    with pytest.raises(Exception, match="name of a shipped model"):
        train_adapted_model("molecule", items, "pneumonia_resnet")
    # a second training makes version 2 of the same model
    train_adapted_model("molecule", items, "tox_small")
    assert load_registry().get("tox_small").version == "2"


def test_training_can_be_cancelled(home):
    train, _ = _negex(60, 0)
    items = Items("text")
    for r in train:
        items.add(r["id"], r["text"], r["meta"]["negation"])
    with pytest.raises(InterruptedError):
        train_adapted_model("text", items, "never", cancelled=lambda: True)
    assert "never" not in load_registry().manifests


def test_bad_inputs_are_reported_and_the_rest_goes_on(home, capsys):
    data = home / "bad.csv"
    _write_csv(data, [("x", "C")], ("id", "smiles"))
    assert main(["adapt", "train", "--kind", "molecule", "--data", str(data), "--name", "m"]) == 1
    assert "no 'label' column" in capsys.readouterr().err
    assert main(["adapt", "predict", "nosuchmodel", str(data), "--json"]) == 1
    assert "not installed" in capsys.readouterr().err
    rows = [(f"r{i}", s, l) for i, (s, l) in enumerate([("CCO", "a"), ("CCN", "a"), ("CCC", "a"), ("c1ccccc1", "b"),
                                                         ("c1ccncc1", "b"), ("c1ccoc1", "b"), ("C1CC(", "b")])]
    _write_csv(data, rows, ("id", "smiles", "label"))
    assert main(["adapt", "train", "--kind", "molecule", "--data", str(data), "--name", "tiny", "--json"]) == 1
    out, err = _json_lines(capsys)
    assert out[0]["n"] == 6 and "r6: SMILES not readable" in err
    missing = home / "missing.png"
    assert main(["adapt", "predict", "tiny", str(data), str(missing), "--json"]) == 1
    out, err = _json_lines(capsys)
    assert [r["id"] for r in out] == [f"r{i}" for i in range(6)] + ["r6", str(missing)]
    assert "error" in out[-1] and f"{missing}: no such file" in err


def test_rank_auc_equals_scikit_learn():
    rng = np.random.default_rng(2)
    for _ in range(20):
        y = rng.integers(0, 2, 50)
        scores = np.round(rng.random(50), 1)  # many ties
        if 0 < y.sum() < 50:
            assert auc_score(y == 1, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)


_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(lambda t: t.strip())


@given(st.lists(st.tuples(st.text(min_size=1, max_size=8).filter(lambda t: t.strip()), _text,
                          st.one_of(st.none(), _text)), max_size=12), st.lists(st.integers(0, 12), max_size=3))
def test_text_label_file_reader_keeps_every_record_or_says_why(tmp_path_factory, records, garbage_at):
    lines = [json.dumps({"id": i, "text": t, **({} if label is None else {"label": label})}) for i, t, label in records]
    for position in garbage_at:
        lines.insert(min(position, len(lines)), "{not json")
    path = tmp_path_factory.mktemp("jsonl") / "notes.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = read_labelled("text", path)
    labelled = [(i, t, label.strip()) for i, t, label in records if label is not None and label.strip()]
    assert list(zip(items.ids, items.payloads, items.labels)) == labelled
    assert len(items.errors) == len(records) - len(labelled) + len(garbage_at)
    unlabelled = read_unlabelled("text", [str(path)])
    assert unlabelled.ids == [i for i, _, _ in records]
