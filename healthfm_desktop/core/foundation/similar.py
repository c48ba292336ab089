"""Similar cases: the library items nearest to a query by cosine similarity of the encoder's
embeddings (molecule features standardised over the library first, since fingerprint counts and
descriptors live on unlike scales), or for molecules by Tanimoto on the Morgan bits they begin with."""

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


#: the metrics of find-similar per kind, the default first: cosine on the encoder's embedding,
#: and for molecules also Tanimoto on the Morgan fingerprint that the embedding begins with
METRICS = {"image": ("cosine",), "text": ("cosine",), "molecule": ("cosine", "tanimoto")}


def nearest_tanimoto(query: np.ndarray, library: np.ndarray, top: int = 10) -> list[Neighbour]:
    """``nearest`` by Tanimoto on the Morgan bits molecule embeddings begin with (a count > 0
    is a set bit), through the applicability domain's one Tanimoto implementation."""
    from healthfm_desktop.core.chemistry.featurize import MORGAN_SIZE
    from healthfm_desktop.core.inference.domain import EmbeddingDomain

    library = np.asarray(library, dtype=np.float32)
    if len(library) == 0 or top <= 0:
        return []
    domain = EmbeddingDomain(library, threshold=1.0, k=1, metric="tanimoto", fingerprint_bits=MORGAN_SIZE)
    query = np.packbits(np.asarray(query, dtype=np.float32).reshape(1, -1)[:, :MORGAN_SIZE] > 0, axis=1)
    scores = domain.similarities(query).ravel()
    order = np.argsort(-scores, kind="stable")[:top]
    return [Neighbour(int(i), float(scores[i])) for i in order]


def similar_records(kind: str, library, query_payload, top: int = 10, exclude: str | None = None,
                    encoder=None, metric: str = "cosine") -> list[dict]:
    """``similar``'s records ({id, score, label?}) for one query over ``library`` (Items), best
    first; ``exclude`` leaves the query's own id out of the neighbours; ``metric`` one of
    ``METRICS[kind]``."""
    from healthfm_desktop.core.errors import UserFacingError
    from healthfm_desktop.core.foundation.encoders import load_encoder

    if metric not in METRICS.get(kind, ()):
        raise UserFacingError(f"{kind} items are compared by {' or '.join(METRICS.get(kind, ('cosine',)))}, not {metric!r}")
    encoder = encoder or load_encoder(kind)
    embeddings = encoder.embed(list(library.payloads) + [query_payload])
    records = []
    wanted = top + (exclude is not None)
    hits = nearest_tanimoto(embeddings[-1], embeddings[:-1], wanted) if metric == "tanimoto" else \
        nearest(embeddings[-1], embeddings[:-1], wanted, standardise=kind == "molecule")
    for hit in hits:
        if library.ids[hit.index] == exclude or len(records) == top:
            continue
        record = {"id": library.ids[hit.index], "score": round(hit.score, 6)}
        if library.labels[hit.index] is not None:
            record["label"] = library.labels[hit.index]
        records.append(record)
    return records
