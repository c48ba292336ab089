"""Inter-annotator agreement between two versions of the same notes: span F1 (exact and
relaxed overlap, one annotator as reference) and Cohen's kappa over character labels."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from healthfm_desktop.core.records.annotation import AnnotatedNote
from healthfm_desktop.core.records.evaluation import relaxed_overlap_f1

OUTSIDE = "O"


def _character_labels(note: AnnotatedNote) -> list[str]:
    labels = [OUTSIDE] * len(note.text)
    for entity in sorted(note.entities, key=lambda e: e.end - e.start, reverse=True):
        for i in range(max(entity.start, 0), min(entity.end, len(labels))):
            labels[i] = entity.label
    return labels


def cohens_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's kappa of two label sequences of equal length (1.0 when both are constant and equal)."""
    if len(a) != len(b):
        raise ValueError("the two annotations cover different texts")
    n = len(a)
    if n == 0:
        return 1.0
    observed = sum(x == y for x, y in zip(a, b)) / n
    count_a, count_b = Counter(a), Counter(b)
    expected = sum(count_a[k] * count_b.get(k, 0) for k in count_a) / (n * n)
    if expected >= 1.0:
        return 1.0 if observed == 1.0 else 0.0
    return (observed - expected) / (1.0 - expected)


def agreement(first: Sequence[AnnotatedNote], second: Sequence[AnnotatedNote]) -> dict:
    """Agreement of two annotators over the notes both annotated (matched by id)."""
    by_id = {n.id: n for n in second}
    pairs = [(a, by_id[a.id]) for a in first if a.id in by_id]
    if not pairs:
        raise ValueError("the two annotators have no note in common")
    for a, b in pairs:
        if a.text != b.text:
            raise ValueError(f"note {a.id} has different texts in the two versions")
    labels = sorted({e.label for a, b in pairs for e in a.entities + b.entities})
    gold = [[e.key() for e in a.entities] for a, _ in pairs]
    pred = [[e.key() for e in b.entities] for _, b in pairs]
    exact_true = sum(len(set(g) & set(p)) for g, p in zip(gold, pred))
    n_gold, n_pred = sum(len(set(g)) for g in gold), sum(len(set(p)) for p in pred)
    exact_f1 = 2 * exact_true / (n_gold + n_pred) if n_gold + n_pred else 1.0
    relaxed = relaxed_overlap_f1(gold, pred, labels)
    chars_a: list[str] = []
    chars_b: list[str] = []
    for a, b in pairs:
        chars_a += _character_labels(a)
        chars_b += _character_labels(b)
    return {
        "notes": len(pairs),
        "exact_span_f1": exact_f1,
        "relaxed_span_f1": relaxed["micro"]["f1"] if n_gold + n_pred else 1.0,
        "cohens_kappa": cohens_kappa(chars_a, chars_b),
        "per_label": {k: v["f1"] for k, v in relaxed["per_label"].items()},
    }
