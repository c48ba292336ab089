"""Decoding of the tagger's per-token logits into BIO tag ids that form valid spans: a
first-order Viterbi search over the BIO grammar (an I-X tag may only follow B-X or I-X), with
no learned transition weights. It replaces the per-token argmax, whose slips ("B-TEST I-PROBLEM",
an I- after O) ``ner_features.decode_bio`` can only patch afterwards."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_FORBIDDEN = -1e9


def bio_transitions(tags: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(start [K], transition [K, K]) scores: 0 where the BIO grammar allows the tag (pair),
    a large negative number where it does not."""
    count = len(tags)
    start = np.zeros(count, dtype=np.float32)
    transition = np.zeros((count, count), dtype=np.float32)
    for j, tag in enumerate(tags):
        if not tag.startswith("I-"):
            continue
        start[j] = _FORBIDDEN
        label = tag[2:]
        for i, previous in enumerate(tags):
            if previous not in (f"B-{label}", f"I-{label}"):
                transition[i, j] = _FORBIDDEN
    return start, transition


def viterbi_bio(logits: np.ndarray, tags: Sequence[str], transitions: tuple[np.ndarray, np.ndarray] | None = None) -> list[int]:
    """The best valid tag sequence for one row's logits [T, K] (sum of per-token
    log-probabilities under the BIO grammar)."""
    if len(logits) == 0:
        return []
    start, transition = transitions if transitions is not None else bio_transitions(tags)
    scores = np.asarray(logits, dtype=np.float64)
    scores = scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)  # log-softmax per token
    best = scores[0] + start
    back = np.zeros(scores.shape, dtype=np.int64)
    for t in range(1, len(scores)):
        candidates = best[:, None] + transition  # [previous, current]
        back[t] = np.argmax(candidates, axis=0)
        best = candidates[back[t], np.arange(scores.shape[1])] + scores[t]
    path = [int(np.argmax(best))]
    for t in range(len(scores) - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return path[::-1]
