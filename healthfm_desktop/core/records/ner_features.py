"""Token featurisation of the NER tagger, defined once: the training script
(models/training/train_ner.py) and the app (ner_model.py) both call ``encode_tokens``.

A token becomes (word id, character ids, shape id). Words are lower-cased with digits folded to
0, so "12.5" and "37.0" share an id; characters are bytes of the first MAX_CHARS characters of the
token (code points above 255 fold to one id)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

MAX_CHARS = 16
PAD, UNKNOWN = 0, 1
CHAR_VOCAB_SIZE = 258  # 0 pad, 1 other code point, 2..257 for code points 0..255
SHAPES = ("pad", "lower", "title", "upper", "digit", "mixed_digit", "punct", "other")
_DIGITS = re.compile(r"\d")


def normalise_word(word: str) -> str:
    return _DIGITS.sub("0", word.lower())


def word_shape(word: str) -> int:
    if word.isdigit() or (_DIGITS.search(word) and not any(c.isalpha() for c in word)):
        return SHAPES.index("digit")
    if _DIGITS.search(word):
        return SHAPES.index("mixed_digit")
    if word.islower():
        return SHAPES.index("lower")
    if word.istitle():
        return SHAPES.index("title")
    if word.isupper():
        return SHAPES.index("upper")
    if not any(c.isalnum() for c in word):
        return SHAPES.index("punct")
    return SHAPES.index("other")


def build_word_index(vocabulary: Sequence[str]) -> dict[str, int]:
    """Word -> id; ids 0 and 1 are padding and unknown."""
    return {word: i + 2 for i, word in enumerate(vocabulary)}


def encode_tokens(
    sentences: Sequence[Sequence[str]], word_index: dict[str, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A batch of token lists -> (word_ids [B,T], char_ids [B,T,MAX_CHARS], shape_ids [B,T]),
    int64, right-padded with 0 to the longest sentence."""
    batch = len(sentences)
    length = max((len(s) for s in sentences), default=0) or 1
    word_ids = np.zeros((batch, length), dtype=np.int64)
    char_ids = np.zeros((batch, length, MAX_CHARS), dtype=np.int64)
    shape_ids = np.zeros((batch, length), dtype=np.int64)
    for b, tokens in enumerate(sentences):
        for t, token in enumerate(tokens):
            word_ids[b, t] = word_index.get(normalise_word(token), UNKNOWN)
            shape_ids[b, t] = word_shape(token)
            for c, char in enumerate(token[:MAX_CHARS]):
                code = ord(char)
                char_ids[b, t, c] = code + 2 if code < 256 else UNKNOWN
    return word_ids, char_ids, shape_ids


class TokenEncoder:
    """``encode_tokens`` with the features of each distinct token string computed once and
    kept (at most ``max_tokens`` strings, then the cache starts afresh, so memory stays
    bounded over any number of notes). Gives exactly the arrays ``encode_tokens`` gives."""

    def __init__(self, word_index: dict[str, int], max_tokens: int = 50_000):
        self.word_index = word_index
        self.max_tokens = max_tokens
        self._reset()

    def _reset(self) -> None:
        self._row_of: dict[str, int] = {}
        # row 0 is padding: word, shape and character ids 0
        self._words = np.zeros(1024, dtype=np.int64)
        self._shapes = np.zeros(1024, dtype=np.int64)
        self._chars = np.zeros((1024, MAX_CHARS), dtype=np.int64)
        self._rows = 1

    def _add(self, tokens: list[str]) -> None:
        needed = self._rows + len(tokens)
        if needed > len(self._words):
            size = max(needed, 2 * len(self._words))
            self._words = np.resize(self._words, size)
            self._shapes = np.resize(self._shapes, size)
            self._chars = np.resize(self._chars, (size, MAX_CHARS))
        word_ids, char_ids, shape_ids = encode_tokens([tokens], self.word_index)
        end = self._rows + len(tokens)
        self._words[self._rows : end] = word_ids[0]
        self._shapes[self._rows : end] = shape_ids[0]
        self._chars[self._rows : end] = char_ids[0]
        for k, token in enumerate(tokens):
            self._row_of[token] = self._rows + k
        self._rows = end

    def encode(self, sentences: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if len(self._row_of) > self.max_tokens:
            self._reset()
        row_of = self._row_of
        new = list(dict.fromkeys(t for tokens in sentences for t in tokens if t not in row_of))
        if new:
            self._add(new)
        length = max((len(s) for s in sentences), default=0) or 1
        rows = np.zeros((len(sentences), length), dtype=np.int64)
        for b, tokens in enumerate(sentences):
            rows[b, : len(tokens)] = [row_of[t] for t in tokens]
        return self._words[rows], self._chars[rows], self._shapes[rows]


def bio_tags(labels: Sequence[str]) -> list[str]:
    """The tag set of the tagger: O, then B-/I- for each label, in this order."""
    tags = ["O"]
    for label in labels:
        tags += [f"B-{label}", f"I-{label}"]
    return tags


def decode_bio(tag_ids: Sequence[int], tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """Token-level tag ids -> (start_token, end_token_exclusive, label). An I- tag that does not
    continue a span of its label starts one (the tagger's usual slip)."""
    spans: list[tuple[int, int, str]] = []
    current: list | None = None
    for i, tag_id in enumerate(tag_ids):
        tag = tags[int(tag_id)]
        if tag == "O":
            if current:
                spans.append(tuple(current))
            current = None
            continue
        prefix, label = tag.split("-", 1)
        if prefix == "I" and current and current[2] == label:
            current[1] = i + 1
            continue
        if current:
            spans.append(tuple(current))
        current = [i, i + 1, label]
    if current:
        spans.append(tuple(current))
    return spans  # type: ignore[return-value]
