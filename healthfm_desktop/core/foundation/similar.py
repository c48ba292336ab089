"""Similar cases: the library items nearest to a query by cosine similarity of the encoder's
embeddings (molecule features standardised over the library first, since fingerprint counts
and descriptors live on unlike scales)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Neighbour:
    index: int
    score: float


def nearest(query: np.ndarray, library: np.ndarray, top: int = 10, standardise: bool = False) -> list[Neighbour]:
    """The ``top`` library rows most similar to ``query`` (one embedding), best first; ties in library order."""
    library = np.asarray(library, dtype=np.float64)
    query = np.asarray(query, dtype=np.float64).reshape(1, -1)
    if len(library) == 0 or top <= 0:
        return []
    if standardise and len(library) > 1:
        center, scale = library.mean(axis=0), library.std(axis=0)
        scale[scale < 1e-9] = 1.0
        library, query = (library - center) / scale, (query - center) / scale
    library = library / np.maximum(np.linalg.norm(library, axis=1, keepdims=True), 1e-12)
    query = query / max(float(np.linalg.norm(query)), 1e-12)
    scores = (library @ query.T).ravel()
    order = np.argsort(-scores, kind="stable")[:top]
    return [Neighbour(int(i), float(scores[i])) for i in order]


def similar_records(kind: str, library, query_payload, top: int = 10, exclude: str | None = None,
                    encoder=None) -> list[dict]:
    """``similar``'s records ({id, score, label?}) for one query over ``library`` (Items), best
    first; ``exclude`` leaves the query's own id out of the neighbours."""
    from healthfm_desktop.core.foundation.encoders import load_encoder

    encoder = encoder or load_encoder(kind)
    embeddings = encoder.embed(list(library.payloads) + [query_payload])
    records = []
    for hit in nearest(embeddings[-1], embeddings[:-1], top + (exclude is not None), standardise=kind == "molecule"):
        if library.ids[hit.index] == exclude or len(records) == top:
            continue
        record = {"id": library.ids[hit.index], "score": round(hit.score, 6)}
        if library.labels[hit.index] is not None:
            record["label"] = library.labels[hit.index]
        records.append(record)
    return records
