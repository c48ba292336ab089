"""Adaptation and embedding speed, as the app runs them, in one process:

1. `adapt train` on 1,000 labelled items per kind (embedding included; the head search is
   5-fold CV over 5 candidates) against the strongest simple baseline a user could pick on the
   same items (pixels / TF-IDF / Morgan bits + one logistic regression or random forest fit),
   and against the 60 s budget of issue 15;
2. embedding throughput of each encoder against the shipped task model of the same kind on the
   same inputs, its own preprocessing + inference included (pneumonia classifier; NER tagger;
   Tox21 featurisation + model).

    python benchmarks/bench_adapt.py [--items 1000] [--kinds image,text,molecule]

Prints lines ``<what>: <ratio>x <baseline name> (<ours> vs <baseline>)``."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO / "models" / "training" / "data"


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def report(what: str, ours: float, baseline: float, name: str) -> None:
    print(f"{what}: {baseline / ours:.2f}x {name} ({ours:.2f} s vs {baseline:.2f} s)", flush=True)


def items_of(kind: str, count: int):
    from healthfm_desktop.core.foundation.datasets import Items

    items = Items(kind)
    if kind == "image":
        with np.load(DATA / "images" / "pneumoniamnist_28.npz") as d:
            images, labels = d["train_images"], d["train_labels"].ravel()
        for i in np.random.default_rng(0).permutation(len(labels))[:count]:
            items.add(str(i), images[i], str(int(labels[i])))
    elif kind == "text":
        rows = [json.loads(line) for line in (DATA / "text" / "negex_context.jsonl").open(encoding="utf-8")][:count]
        for r in rows:
            items.add(r["id"], r["text"], r["meta"]["negation"])
    else:
        import csv
        import gzip

        from healthfm_desktop.core.chemistry.reading import parse_smiles

        with gzip.open(DATA / "molecules" / "bbbp.csv.gz", "rt", newline="") as handle:
            for row in csv.DictReader(handle):
                mol, _ = parse_smiles(row["smiles"])
                if mol is not None:
                    items.add(row["num"], mol, row["p_np"])
                if len(items) == count:
                    break
    return items


def baseline_fit(kind: str, items) -> None:
    from sklearn.linear_model import LogisticRegression

    y = np.array(items.labels)
    if kind == "image":
        x = np.stack([p.reshape(-1) for p in items.payloads]) / 255.0
        LogisticRegression(C=0.1, max_iter=2000).fit(x, y)
    elif kind == "text":
        from sklearn.feature_extraction.text import TfidfVectorizer

        LogisticRegression(C=10.0, max_iter=2000).fit(TfidfVectorizer(ngram_range=(1, 2)).fit_transform(items.payloads), y)
    else:
        from rdkit import DataStructs
        from sklearn.ensemble import RandomForestClassifier

        from healthfm_desktop.core.chemistry.fingerprints import morgan_fingerprint

        bits = np.zeros((len(items), 2048), dtype=np.uint8)
        for i, mol in enumerate(items.payloads):
            DataStructs.ConvertToNumpyArray(morgan_fingerprint(mol), bits[i])
        RandomForestClassifier(500, n_jobs=-1, random_state=0).fit(bits, y)


def task_model_seconds(kind: str, items) -> tuple[str, float]:
    """The shipped task model of the kind on the same inputs, as the app runs it."""
    if kind == "image":
        from healthfm_desktop.core.imaging.ai.classification import classify
        from healthfm_desktop.core.imaging.ai.models import default_classifier, load_model
        from healthfm_desktop.core.imaging.ai.preprocessing import SourceImage

        model = load_model(default_classifier(), quantized=False)
        return "pneumonia classifier", timed(lambda: [classify(SourceImage(p), model) for p in items.payloads])[0]
    if kind == "text":
        from healthfm_desktop.core.records.pipeline import build_pipeline

        nlp = build_pipeline()
        notes = [(str(i), t) for i, t in enumerate(items.payloads)]
        return "clinical NER pipeline", timed(lambda: list(nlp.annotate_many(notes)))[0]
    from healthfm_desktop.core.chemistry.predictors import predict_mols

    return "Tox21 + ESOL predictors (featurise + ONNX)", timed(lambda: predict_mols(items.payloads))[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--kinds", default="image,text,molecule", help="comma-separated kinds to measure")
    args = parser.parse_args()
    if not set(args.kinds.split(",")) <= {"image", "text", "molecule"}:
        parser.error("--kinds: image, text and/or molecule, comma-separated")
    from healthfm_desktop.core.foundation.adaptation import train_adapted_model
    from healthfm_desktop.core.foundation.encoders import load_encoder

    with tempfile.TemporaryDirectory() as folder:
        for kind in args.kinds.split(","):
            items = items_of(kind, args.items)
            load_encoder(kind)  # loading the encoder once is not the training's cost
            ours, summary = timed(lambda: train_adapted_model(kind, items, f"bench_{kind}", folder=Path(folder)))
            base, _ = timed(lambda: baseline_fit(kind, items))
            report(f"adapt train {kind} ({len(items)} items, {summary.fit.head})", ours, base,
                   "simple baseline fit on the same items (no embedding, no CV, no calibration)")
            report(f"adapt train {kind} vs the issue's budget", ours, 60.0, "60 s budget")
            encoder = load_encoder(kind)
            embed, _ = timed(lambda: encoder.embed(items.payloads))
            name, task = task_model_seconds(kind, items)
            report(f"embedding throughput {kind} ({len(items) / embed:.0f} items/s)", embed, task, name)


if __name__ == "__main__":
    main()
