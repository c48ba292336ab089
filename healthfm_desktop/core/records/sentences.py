"""A fast rule-based sentence splitter for clinical text (the pipeline's first component).

Why not PyRuSH: its character rules cost ~3/4 of a plain medspaCy pipeline's time. Clinical
notes split well on a few token rules: end punctuation before a non-lower-case token, blank
lines, a line break before a capitalised word, a list number or a bullet, and a line break after
a header colon. A wrapped line (line break before a lower-case word) continues the sentence."""

from __future__ import annotations

import numpy as np
from spacy.attrs import IDX, IS_SPACE, LENGTH, SENT_START
from spacy.language import Language
from spacy.tokens import Doc

_END = {".", "!", "?"}
_BULLETS = {"-", "*", "•", "·", "o"}
_NOT_ENDING = {"dr.", "mr.", "mrs.", "ms.", "e.g.", "i.e.", "vs.", "approx.", "no.", "st.", "fig.", "al."}


def split_sentences(doc: Doc) -> Doc:
    count = len(doc)
    if not count:
        return doc
    text = doc.text_with_ws
    attrs = doc.to_array([IDX, LENGTH, IS_SPACE]).tolist()
    starts = [False] * count
    starts[0] = True
    previous_text = ""
    pending_break = 0  # 1: a line break before this token, 2: a blank line
    header_colon = False
    list_number = False  # "1." at the start of a line is a list marker, not a sentence
    for i, (offset, length, is_space) in enumerate(attrs):
        token_text = text[offset : offset + length]
        if is_space:
            newlines = token_text.count("\n")
            if newlines:
                pending_break = max(pending_break, 2 if newlines > 1 else 1)
            continue
        if i > 0:
            first = token_text[0]
            if pending_break == 2 or header_colon and pending_break:
                starts[i] = True
            elif pending_break == 1:
                starts[i] = first.isupper() or first.isdigit() or token_text in _BULLETS
            elif previous_text in _END and not first.islower() and not list_number:
                starts[i] = True
            elif previous_text.endswith(".") and len(previous_text) > 2 and previous_text.lower() not in _NOT_ENDING and first.isupper() and previous_text[-2].isalpha() and previous_text.count(".") == 1:
                starts[i] = True
        if token_text == ".":
            list_number = i >= 1 and starts[i - 1] and text[attrs[i - 1][0] : attrs[i - 1][0] + attrs[i - 1][1]].isdigit()
        else:
            list_number = False
        # spaCy's trailing whitespace of a token is one plain space at most (line breaks are
        # whitespace tokens of their own), so a token never carries a line break after it
        header_colon = False
        pending_break = 0
        previous_text = token_text
    # a whitespace token never starts a sentence: it belongs to the one before it
    flags = np.array([1 if (start and not attrs[i][2]) or i == 0 else -1 for i, start in enumerate(starts)], dtype=np.int64)
    doc.from_array([SENT_START], flags.reshape(-1, 1).astype(np.uint64))
    return doc


@Language.component("healthfm_sentences")
def healthfm_sentences(doc: Doc) -> Doc:
    return split_sentences(doc)
