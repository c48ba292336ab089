"""Token featurisation of the NER tagger, defined once: the training script
(models/training/train_ner.py) and the app (ner_model.py) both call ``encode_tokens``.

A token becomes (word id, character ids, shape id[, static rows]). Words are lower-cased with
digits folded to 0, so "12.5" and "37.0" share an id; characters are bytes of the first MAX_CHARS
characters of the token (code points above 255 fold to one id); static rows index the tagger's
frozen word-vector table (``StaticPieces``)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

MAX_CHARS = 16
MAX_PIECES = 8  # static rows per token: a word's own row, or its first 8 WordPiece pieces
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


class StaticPieces:
    """Rows of the tagger's frozen static word vectors (vectors distilled from the text encoder,
    all-MiniLM-L6-v2, one word at a time; the table is inside the ONNX graph). Row 0 is padding,
    row 1 + p is WordPiece piece p run alone, row 1 + vocab size + k is ``static_words[k]`` run
    whole. A token listed in ``static_words`` gets its own row; any other token gets the rows of
    its pieces (up to MAX_PIECES), whose mean the graph takes: a table lookup, no transformer."""

    def __init__(self, tokenizer, static_words: Sequence[str]):
        self.tokenizer = tokenizer  # a tokenizers.Tokenizer (the text encoder's WordPiece)
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        offset = 1 + tokenizer.get_vocab_size()
        self.word_row = {word: offset + k for k, word in enumerate(static_words)}

    @classmethod
    def from_file(cls, tokenizer_path, static_words: Sequence[str]) -> "StaticPieces":
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(tokenizer_path)), static_words)

    def rows(self, tokens: Sequence[str]) -> np.ndarray:
        """[len(tokens), MAX_PIECES] int64 table rows, 0-padded."""
        out = np.zeros((len(tokens), MAX_PIECES), dtype=np.int64)
        pieces = []
        for k, token in enumerate(tokens):
            row = self.word_row.get(token.lower())
            if row is None:
                pieces.append(k)
            else:
                out[k, 0] = row
        if pieces:
            for k, encoding in zip(pieces, self.tokenizer.encode_batch([tokens[k] for k in pieces], add_special_tokens=False)):
                ids = encoding.ids[:MAX_PIECES]
                out[k, : len(ids)] = np.asarray(ids, dtype=np.int64) + 1
        return out


def encode_tokens(
    sentences: Sequence[Sequence[str]], word_index: dict[str, int], static: StaticPieces | None = None
) -> tuple[np.ndarray, ...]:
    """A batch of token lists -> (word_ids [B,T], char_ids [B,T,MAX_CHARS], shape_ids [B,T]),
    int64, right-padded with 0 to the longest sentence; with ``static``, also piece_ids
    [B,T,MAX_PIECES] (rows of the static word-vector table)."""
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
    if static is None:
        return word_ids, char_ids, shape_ids
    piece_ids = np.zeros((batch, length, MAX_PIECES), dtype=np.int64)
    for b, tokens in enumerate(sentences):
        if tokens:
            piece_ids[b, : len(tokens)] = static.rows(list(tokens))
    return word_ids, char_ids, shape_ids, piece_ids


class TokenEncoder:
    """``encode_tokens`` with the features of each distinct token string computed once and
    kept (at most ``max_tokens`` strings, then the cache starts afresh, so memory stays
    bounded over any number of notes). Gives exactly the arrays ``encode_tokens`` gives."""

    def __init__(self, word_index: dict[str, int], max_tokens: int = 50_000, static: StaticPieces | None = None):
        self.word_index = word_index
        self.max_tokens = max_tokens
        self.static = static
        self._reset()

    def _reset(self) -> None:
        self._row_of: dict[str, int] = {}
        # row 0 is padding: word, shape and character ids 0
        self._words = np.zeros(1024, dtype=np.int64)
        self._shapes = np.zeros(1024, dtype=np.int64)
        self._chars = np.zeros((1024, MAX_CHARS), dtype=np.int64)
        self._pieces = np.zeros((1024, MAX_PIECES), dtype=np.int64)
        self._rows = 1

    def _add(self, tokens: list[str]) -> None:
        needed = self._rows + len(tokens)
        if needed > len(self._words):
            size = max(needed, 2 * len(self._words))
            self._words = np.resize(self._words, size)
            self._shapes = np.resize(self._shapes, size)
            self._chars = np.resize(self._chars, (size, MAX_CHARS))
            self._pieces = np.resize(self._pieces, (size, MAX_PIECES))
        word_ids, char_ids, shape_ids, *pieces = encode_tokens([tokens], self.word_index, self.static)
        end = self._rows + len(tokens)
        self._words[self._rows : end] = word_ids[0]
        self._shapes[self._rows : end] = shape_ids[0]
        self._chars[self._rows : end] = char_ids[0]
        if pieces:
            self._pieces[self._rows : end] = pieces[0][0]
        for k, token in enumerate(tokens):
            self._row_of[token] = self._rows + k
        self._rows = end

    def encode(self, sentences: Sequence[Sequence[str]]) -> tuple[np.ndarray, ...]:
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
        if self.static is None:
            return self._words[rows], self._chars[rows], self._shapes[rows]
        return self._words[rows], self._chars[rows], self._shapes[rows], self._pieces[rows]


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
