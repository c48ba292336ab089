"""Metrics of the notes pipeline: relaxed-overlap span F1 (NER), assertion F1 on the
NegEx/ConText kit, bootstrap confidence intervals. Used by tests, the training script and
benchmarks/bench_notes.py."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

Span = tuple[int, int, str]


def _match_counts(gold: Sequence[Span], pred: Sequence[Span], label: str) -> tuple[int, int, int, int]:
    """(matched predictions, predictions, matched gold, gold) for one label in one document;
    one-to-one greedy matching of overlapping spans."""
    g = sorted((s, e) for s, e, lab in gold if lab == label)
    p = sorted((s, e) for s, e, lab in pred if lab == label)
    used = [False] * len(g)
    matched = 0
    for ps, pe in p:
        for k, (gs, ge) in enumerate(g):
            if not used[k] and ps < ge and gs < pe:
                used[k] = True
                matched += 1
                break
    return matched, len(p), matched, len(g)


def _prf(tp_p: int, n_p: int, tp_g: int, n_g: int) -> dict:
    precision = tp_p / n_p if n_p else 0.0
    recall = tp_g / n_g if n_g else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": n_g}


def relaxed_overlap_f1(gold_docs: Sequence[Sequence[Span]], pred_docs: Sequence[Sequence[Span]], labels: Iterable[str]) -> dict:
    """Micro and per-label P/R/F1 where a predicted span counts when it overlaps an unmatched
    gold span of the same label."""
    labels = list(labels)
    totals = {label: [0, 0, 0, 0] for label in labels}
    for gold, pred in zip(gold_docs, pred_docs):
        for label in labels:
            counts = _match_counts(gold, pred, label)
            totals[label] = [a + b for a, b in zip(totals[label], counts)]
    micro = [sum(t[i] for t in totals.values()) for i in range(4)]
    return {"micro": _prf(*micro), "per_label": {label: _prf(*totals[label]) for label in labels if totals[label][3] or totals[label][1]}}


def bootstrap_relaxed_f1(gold_docs, pred_docs, labels, seed: int = 0, rounds: int = 500) -> tuple[float, float]:
    """95% percentile bootstrap interval of the micro F1, resampling documents."""
    labels = list(labels)
    per_doc = [[_match_counts(g, p, label) for label in labels] for g, p in zip(gold_docs, pred_docs)]
    rng = random.Random(seed)
    scores = []
    n = len(per_doc)
    for _ in range(rounds):
        sample = [per_doc[rng.randrange(n)] for _ in range(n)]
        totals = [sum(c[i] for doc in sample for c in doc) for i in range(4)]
        scores.append(_prf(*totals)["f1"])
    scores.sort()
    return scores[int(0.025 * rounds)], scores[int(0.975 * rounds) - 1]


def binary_scores(gold: Sequence[bool], pred: Sequence[bool]) -> dict:
    tp = sum(1 for g, p in zip(gold, pred) if g and p)
    fp = sum(1 for g, p in zip(gold, pred) if p and not g)
    fn = sum(1 for g, p in zip(gold, pred) if g and not p)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}


def bootstrap_binary_f1(gold: Sequence[bool], pred: Sequence[bool], seed: int = 0, rounds: int = 1000) -> tuple[float, float]:
    rng = random.Random(seed)
    n = len(gold)
    scores = []
    for _ in range(rounds):
        idx = [rng.randrange(n) for _ in range(n)]
        scores.append(binary_scores([gold[i] for i in idx], [pred[i] for i in idx])["f1"])
    scores.sort()
    return scores[int(0.025 * rounds)], scores[int(0.975 * rounds) - 1]


def read_negex_kit(path) -> list[dict]:
    """Records of the NegEx/ConText kit JSONL that have a target span."""
    import json

    with open(path, encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    return [r for r in records if r["spans"]]


def evaluate_assertions(pipeline, records: Sequence[dict]) -> dict:
    """Negation, historical, uncertain(hypothetical) and family F1 of ``pipeline.assert_spans``
    on kit records (the target phrase is lower-cased first: the kit writes it in capitals, a cue
    real notes do not give)."""
    gold = {"negated": [], "historical": [], "hypothetical": [], "family": []}
    pred = {"negated": [], "historical": [], "hypothetical": [], "family": []}
    errors = []
    for record in records:
        span = record["spans"][0]
        text = record["text"]
        text = text[: span["start"]] + text[span["start"] : span["end"]].lower() + text[span["end"] :]
        entities = pipeline.assert_spans(text, [(span["start"], span["end"], "PROBLEM")])
        entity = entities[0] if entities else None
        attrs = span["attrs"]
        values = {
            "negated": (attrs["is_negated"], bool(entity and entity.negated)),
            "historical": (attrs["is_historical"], bool(entity and entity.historical)),
            "hypothetical": (attrs["is_hypothetical"], bool(entity and entity.uncertain)),
            "family": (attrs["is_family"], bool(entity and entity.family)),
        }
        for key, (g, p) in values.items():
            gold[key].append(bool(g))
            pred[key].append(p)
            if g != p:
                errors.append((key, g, p, record["id"], text[: span["start"]] + "[[" + text[span["start"] : span["end"]] + "]]" + text[span["end"] :], [(t.attribute, t.text) for t in (entity.triggers if entity else [])]))
    result = {key: binary_scores(gold[key], pred[key]) for key in gold}
    result["negated"]["ci95"] = bootstrap_binary_f1(gold["negated"], pred["negated"])
    result["historical"]["ci95"] = bootstrap_binary_f1(gold["historical"], pred["historical"])
    result["errors"] = errors
    result["count"] = len(records)
    return result


def evaluate_ner(pipeline, records: Sequence[dict], label_map: dict[str, str]) -> dict:
    """Relaxed-overlap F1 of the pipeline's entities against gold spans mapped by label_map
    (PHI and unmapped labels are ignored on both sides)."""
    labels = sorted(set(label_map.values()))
    gold = [[(s["start"], s["end"], label_map[s["label"]]) for s in r["spans"] if s["label"] in label_map] for r in records]
    notes = pipeline.annotate_many((r["id"], r["text"]) for r in records)
    pred = [[(e.start, e.end, e.label) for e in note.entities if e.label in labels] for note in notes]
    result = relaxed_overlap_f1(gold, pred, labels)
    result["ci95"] = bootstrap_relaxed_f1(gold, pred, labels)
    return result
