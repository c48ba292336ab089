"""The trained NER tagger (models/ner_clinical.onnx) run over spaCy Docs, sentence by sentence,
through the model registry. Featurisation is ner_features (``TokenEncoder`` caches what
``encode_tokens``, the function the training script uses, gives for each token string).

Rows are batched only with rows of the same length, so no row is ever padded: a recurrent
tagger reads padding as input (the bidirectional LSTM's backward pass starts at the end of the
padded row), so a padded row's tags depended on which other rows shared its batch, i.e. on
which notes were annotated together. Unpadded, a sentence gets the tags it gets alone, whatever
the batch, and whatever the architecture behind the manifest's interface (inputs word_ids,
char_ids, shape_ids and, for a tagger with static word vectors, piece_ids; output logits
[batch, tokens, tags])."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from spacy.attrs import IDX, IS_SPACE, LENGTH, SENT_START
from spacy.tokens import Doc

from healthfm_desktop.core.records.ner_features import StaticPieces, TokenEncoder, build_word_index, decode_bio
from healthfm_desktop.core.records.tag_decoding import bio_transitions, viterbi_bio_rows

MODEL_NAME = "ner_clinical"
MAX_ROW_TOKENS = 96  # as in training; longer sentences are cut into rows of this size
BATCH_ROWS = 256  # rows of one length per onnxruntime call


class NerTagger:
    """Loads the model once (sha256 checked by the registry) and tags token rows."""

    def __init__(self, registry=None):
        from healthfm_desktop.core.inference.registry import load_registry

        registry = registry or load_registry()
        self.session, self.manifest, self.provider = registry.session(MODEL_NAME, threads=1)
        self.tags = list(self.manifest.labels)
        self.word_index = build_word_index(self.manifest.preprocessing["word_vocabulary"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        static = None
        if "piece_ids" in self.input_names:
            # static word vectors: the table is in the graph, the featuriser finds each token's
            # rows with the text encoder's WordPiece tokenizer (a side file, sha256-checked)
            static = StaticPieces.from_file(self.manifest.side_file("tokenizer"), self.manifest.preprocessing["static_vectors"]["static_words"])
        self.encoder = TokenEncoder(self.word_index, static=static)
        self.transitions = bio_transitions(self.tags)
        # for each tag id, the tag ids allowed right before it (-1: any): I-X only after B-X / I-X
        self._allowed_before = np.array([[self.tags.index("B-" + t[2:]), k] if t.startswith("I-") else [-1, -1] for k, t in enumerate(self.tags)], dtype=np.int64)

    def tag_rows(self, rows: list[list[str]]) -> list[list[int]]:
        """Tag ids per token for each row of words; rows of equal length share a call."""
        return [ids for ids, _probabilities in self.tag_rows_with_probabilities(rows)]

    def tag_rows_with_probabilities(self, rows: list[list[str]]) -> list[tuple[list[int], list[float]]]:
        """Tag ids per token and the softmax probability of each chosen tag. Tags are the
        per-token argmax where it forms valid BIO; a row where it does not (an I-X after O or
        after another label) is decoded by the BIO-constrained Viterbi search of tag_decoding
        (on a valid row both give the same tags)."""
        results: list[tuple[list[int], list[float]]] = [([], []) for _ in rows]
        by_length: dict[int, list[int]] = {}
        for i, row in enumerate(rows):
            if row:
                by_length.setdefault(len(row), []).append(i)
        tagged = []  # (rows of the batch, logits, argmax tags)
        broken = []  # (batch number, row in it) of rows whose argmax is not valid BIO
        for _length, members in sorted(by_length.items()):
            for begin in range(0, len(members), BATCH_ROWS):
                batch = members[begin : begin + BATCH_ROWS]
                feeds = dict(zip(("word_ids", "char_ids", "shape_ids", "piece_ids"), self.encoder.encode([rows[i] for i in batch])))
                (logits,) = self.session.run(None, {name: feeds[name] for name in self.input_names})
                best = np.argmax(logits, axis=-1)
                broken.extend((len(tagged), k) for k in np.flatnonzero(self._breaks_bio(best)).tolist())
                tagged.append((batch, logits, best))
        if broken:  # all in one Viterbi search, whatever their lengths
            lengths = [tagged[b][1].shape[1] for b, _k in broken]
            stacked = np.zeros((len(broken), max(lengths), len(self.tags)), dtype=tagged[0][1].dtype)
            for n, (b, k) in enumerate(broken):
                stacked[n, : lengths[n]] = tagged[b][1][k]
            paths = viterbi_bio_rows(stacked, self.tags, self.transitions, lengths)
            for n, (b, k) in enumerate(broken):
                tagged[b][2][k] = paths[n, : lengths[n]]
        for batch, logits, best in tagged:
            shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
            chosen = np.take_along_axis(shifted, best[..., None], axis=-1)[..., 0] / shifted.sum(axis=-1)
            for k, i in enumerate(batch):
                results[i] = (best[k].tolist(), chosen[k].tolist())
        return results

    def _breaks_bio(self, best: np.ndarray) -> np.ndarray:
        """[rows] True where a row's argmax tags have an I-X not after B-X or I-X."""
        allowed = self._allowed_before[best]  # [rows, tokens, 2]
        previous = np.concatenate([np.zeros((best.shape[0], 1), dtype=best.dtype), best[:, :-1]], axis=1)
        bad = (allowed[..., 0] >= 0) & (previous != allowed[..., 0]) & (previous != allowed[..., 1])
        return bad.any(axis=1)

    def spans(self, doc: Doc) -> Iterator[tuple[int, int, str, float]]:
        """(start_token, end_token, label, confidence) predicted in the doc; the confidence is
        the least probability the model gave any of the span's tags."""
        return iter(self.spans_many([doc])[0])

    def spans_many(self, docs: list[Doc]) -> list[list[tuple[int, int, str, float]]]:
        """Spans of several docs, their sentences tagged in shared batches (fewer, fuller
        onnxruntime calls)."""
        rows: list[list[int]] = []
        words: list[list[str]] = []
        owners: list[int] = []
        for k, doc in enumerate(docs):
            texts = _token_texts(doc)
            for row in self._rows(doc):
                rows.append(row)
                words.append([texts[i] for i in row])
                owners.append(k)
        results: list[list[tuple[int, int, str, float]]] = [[] for _ in docs]
        if not rows:
            return results
        tagged = self.tag_rows_with_probabilities(words)
        for owner, row, (tag_ids, probabilities) in zip(owners, rows, tagged):
            if not any(tag_ids):
                continue  # all "O" (tag 0)
            for a, b, label in decode_bio(tag_ids, self.tags):
                results[owner].append((row[a], row[b - 1] + 1, label, round(min(probabilities[a:b]), 3)))
        return results

    @staticmethod
    def _rows(doc: Doc) -> list[list[int]]:
        """Token indices of each sentence without its whitespace tokens, cut into rows of at
        most MAX_ROW_TOKENS."""
        if not len(doc):
            return []
        flags = doc.to_array([IS_SPACE, SENT_START])
        starts = np.flatnonzero(flags[:, 1] == 1).tolist()
        if not starts or starts[0] != 0:
            starts.insert(0, 0)
        bounds = starts + [len(doc)]
        kept = np.flatnonzero(flags[:, 0] == 0)
        rows: list[list[int]] = []
        for a, b in zip(bounds, bounds[1:]):
            lo, hi = np.searchsorted(kept, [a, b])
            sentence = kept[lo:hi].tolist()
            for begin in range(0, len(sentence), MAX_ROW_TOKENS):
                rows.append(sentence[begin : begin + MAX_ROW_TOKENS])
        return rows


def _token_texts(doc: Doc) -> list[str]:
    """Every token's text, read from the Doc's text by offset (no Token objects)."""
    text = doc.text
    return [text[start : start + length] for start, length in doc.to_array([IDX, LENGTH]).tolist()]
