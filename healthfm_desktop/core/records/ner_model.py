"""The trained NER tagger (models/ner_clinical.onnx) run over a spaCy Doc, sentence by
sentence, through the model registry. Featurisation is ner_features.encode_tokens, the same
function the training script uses."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from spacy.tokens import Doc

from healthfm_desktop.core.records.ner_features import build_word_index, decode_bio, encode_tokens

MODEL_NAME = "ner_clinical"
MAX_ROW_TOKENS = 96  # as in training; longer sentences are cut into rows of this size
BATCH_ROWS = 128


class NerTagger:
    """Loads the model once (sha256 checked by the registry) and tags token rows."""

    def __init__(self, registry=None):
        from healthfm_desktop.core.inference.registry import load_registry

        registry = registry or load_registry()
        self.session, self.manifest, self.provider = registry.session(MODEL_NAME, threads=1)
        self.tags = list(self.manifest.labels)
        self.word_index = build_word_index(self.manifest.preprocessing["word_vocabulary"])

    def tag_rows(self, rows: list[list[str]]) -> list[list[int]]:
        """Tag ids per token for each row of words (batched by similar length)."""
        results: list[list[int]] = [[] for _ in rows]
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        for begin in range(0, len(order), BATCH_ROWS):
            batch = [order[k] for k in range(begin, min(begin + BATCH_ROWS, len(order)))]
            word_ids, char_ids, shape_ids = encode_tokens([rows[i] for i in batch], self.word_index)
            (logits,) = self.session.run(None, {"word_ids": word_ids, "char_ids": char_ids, "shape_ids": shape_ids})
            best = np.argmax(logits, axis=-1)
            for k, i in enumerate(batch):
                results[i] = best[k, : len(rows[i])].tolist()
        return results

    def spans(self, doc: Doc) -> Iterator[tuple[int, int, str]]:
        """(start_token, end_token, label) predicted in the doc."""
        return iter(self.spans_many([doc])[0])

    def spans_many(self, docs: list[Doc]) -> list[list[tuple[int, int, str]]]:
        """Spans of several docs, their sentences tagged in shared batches (fewer, fuller
        onnxruntime calls: the LSTM's cost is mostly per time step, not per row)."""
        rows: list[list[int]] = []
        owners: list[int] = []
        for k, doc in enumerate(docs):
            before = len(rows)
            rows.extend(self._rows(doc))
            owners.extend([k] * (len(rows) - before))
        results: list[list[tuple[int, int, str]]] = [[] for _ in docs]
        if not rows:
            return results
        tagged = self.tag_rows([[docs[owner][i].text for i in row] for owner, row in zip(owners, rows)])
        for owner, row, tag_ids in zip(owners, rows, tagged):
            for a, b, label in decode_bio(tag_ids, self.tags):
                results[owner].append((row[a], row[b - 1] + 1, label))
        return results

    @staticmethod
    def _rows(doc: Doc) -> list[list[int]]:
        rows: list[list[int]] = []
        for sentence in doc.sents:
            current: list[int] = []
            for token in sentence:
                if token.is_space:
                    continue
                current.append(token.i)
                if len(current) >= MAX_ROW_TOKENS:
                    rows.append(current)
                    current = []
            if current:
                rows.append(current)
        return rows
