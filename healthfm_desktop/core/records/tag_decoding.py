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
    return viterbi_bio_rows(np.asarray(logits)[None], tags, transitions)[0].tolist()


def viterbi_bio_rows(logits: np.ndarray, tags: Sequence[str], transitions: tuple[np.ndarray, np.ndarray] | None = None,
                     lengths: Sequence[int] | None = None) -> np.ndarray:
    """``viterbi_bio`` for many rows at once: logits [B, T, K] -> tag ids [B, T]; with
    ``lengths``, row b is its first lengths[b] tokens (the rest is padding, left out: past its
    length a row's scores stay as they were, and its tags there are 0). Each row goes through
    the same float64 operations as alone, so its tags are the ones it gets alone; one numpy
    step per token position for the whole batch instead of one per token of every row (the
    tagger's rows that break BIO are a few of each length)."""
    start, transition = transitions if transitions is not None else bio_transitions(tags)
    scores = np.asarray(logits, dtype=np.float64)
    rows, length, count = scores.shape
    if rows == 0 or length == 0:
        return np.zeros((rows, length), dtype=np.int64)
    lengths = np.full(rows, length, dtype=np.int64) if lengths is None else np.asarray(lengths, dtype=np.int64)
    scores = scores - np.logaddexp.reduce(scores, axis=2, keepdims=True)  # log-softmax per token
    best = scores[:, 0] + start  # [B, K]
    back = np.zeros(scores.shape, dtype=np.int64)
    every = np.arange(rows)
    pairs = _allowed_pairs(transition)
    for t in range(1, int(lengths.max())):
        step = None if pairs is None else _bio_step(best, pairs)
        if step is None:  # any grammar, or a forbidden transition that could win
            candidates = best[:, :, None] + transition  # [B, previous, current]
            back[:, t] = np.argmax(candidates, axis=1)
            reached = np.take_along_axis(candidates, back[:, t][:, None, :], axis=1)[:, 0, :]
        else:
            back[:, t], reached = step
        best = np.where((t < lengths)[:, None], reached + scores[:, t], best)
    path = np.zeros((rows, length), dtype=np.int64)
    path[every, lengths - 1] = np.argmax(best, axis=1)
    for t in range(length - 1, 0, -1):
        inside = every[t < lengths]
        path[inside, t - 1] = back[inside, t, path[inside, t]]
    return path


def _allowed_pairs(transition: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """For a BIO grammar's transitions (every column allows every previous tag, or exactly two:
    B-X and I-X before I-X): (restricted columns, their first and second allowed previous
    tag, in index order); None for any other grammar."""
    columns, first, second = [], [], []
    for j in range(transition.shape[1]):
        allowed = np.flatnonzero(transition[:, j] == 0)
        if len(allowed) == transition.shape[0]:
            continue
        if len(allowed) != 2 or (transition[:, j] != 0).sum() + 2 != transition.shape[0]:
            return None
        columns.append(j)
        first.append(allowed[0])
        second.append(allowed[1])
    return np.array(columns, dtype=np.int64), np.array(first, dtype=np.int64), np.array(second, dtype=np.int64)


def _bio_step(best: np.ndarray, pairs) -> tuple[np.ndarray, np.ndarray] | None:
    """One Viterbi step's (back pointers [B, K], best reached score [B, K]) under a BIO grammar,
    what ``best[:, :, None] + transition`` and its argmax give, in O(B*K) instead of O(B*K*K):
    a free column's best previous tag is the overall argmax (its transitions add 0.0, which
    changes no float); an I-X column's is the first of B-X / I-X holding their maximum, since a
    forbidden previous tag's score is lowered by 1e9. None when a forbidden tag could still
    come within reach of that maximum (then the full step decides, exactly as before)."""
    columns, first, second = pairs
    top = np.argmax(best, axis=1)  # first index of the maximum, as np.argmax over a column
    peak = best[np.arange(len(best)), top]
    a, b = best[:, first], best[:, second]
    pick_second = b > a  # a tie keeps the lower index, as np.argmax does
    restricted = np.where(pick_second, b, a)
    if (restricted <= peak[:, None] + _FORBIDDEN / 2).any():
        return None
    back = np.repeat(top[:, None], best.shape[1], axis=1)
    reached = np.repeat(peak[:, None], best.shape[1], axis=1)
    back[:, columns] = np.where(pick_second, second, first)
    reached[:, columns] = restricted
    return back, reached
