"""Static word vectors for the NER tagger, distilled from the shipped text encoder
(all-MiniLM-L6-v2) à la model2vec: each word or WordPiece piece embedded alone, PCA-reduced.

Rows (see ``ner_features.StaticPieces``): 0 padding, 1 + p for piece p of the text encoder's
vocabulary run alone ([CLS] p [SEP]), then one row per multi-piece word of the word list run
whole. A word in neither is the mean of its pieces' rows at run time. Words come from the
training documents only (MACCROBAT train part, NCBI train abstracts), the NegEx kit sentences,
the bundled vocabularies and the bundled discharge summary, never from the dev or test case
reports. Stored int8 with one scale per row (the values the tagger is trained on are these).

    python models/training/ner_static_vectors.py --out /tmp/vectors.npz   # about 2-3 min, 1 thread
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
DATA = REPO / "models" / "training" / "data" / "text"
ENCODER = REPO / "models" / "text_encoder.onnx"
TOKENIZER = REPO / "models" / "text_encoder.tokenizer.json"
MAX_WORD_CHARS = 40


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def word_counts(nlp) -> Counter:
    """Lower-cased tokens (the tagger's spaCy tokenizer) of the texts the vectors may know."""
    split = json.loads((DATA / "maccrobat_split.json").read_text())
    maccrobat = {r["id"]: r for r in _read_jsonl(DATA / "maccrobat2020.jsonl")}
    texts = [maccrobat[i]["text"] for i in split["train"]]
    texts += [r["text"] for r in _read_jsonl(DATA / "ncbi_disease_train.jsonl")]
    texts += [r["text"] for r in _read_jsonl(DATA / "negex_context.jsonl")]
    texts.append((REPO / "resources" / "samples" / "notes" / "discharge_summary.txt").read_text(encoding="utf-8"))
    for tsv in sorted((REPO / "resources" / "terminology").glob("*.tsv")):
        texts += [line.split("\t", 1)[0] for line in tsv.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    counts: Counter = Counter()
    for doc in nlp.tokenizer.pipe(texts, batch_size=256):
        counts.update(t.text.lower() for t in doc if not t.is_space and len(t.text) <= MAX_WORD_CHARS)
    return counts


def _usable_piece(piece: str) -> bool:
    # [unused*] slots and non-Latin scripts stay zero rows (clinical English never reaches them
    # but through [UNK])
    return not piece.startswith("[unused") and all(ord(c) < 0x250 for c in piece.replace("##", "", 1))


def build(dims: int = 128, threads: int = 1, log=print, tiny: bool = False) -> dict:
    """-> {"vectors": float32 [rows, dims] (PCA components in order), "static_words": [...],
    "explained_variance": cumulative per component}. ``tiny``: the 300 commonest words and only
    their pieces (seconds, for the test)."""
    import spacy
    from sklearn.decomposition import PCA

    from healthfm_desktop.core.foundation.text import TextEmbedder

    started = time.time()
    embedder = TextEmbedder(ENCODER, TOKENIZER, threads=threads)
    tokenizer = embedder.tokenizer
    tokenizer.no_truncation()
    vocab = tokenizer.get_vocab()
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    counts = word_counts(spacy.blank("en"))
    words = sorted(counts, key=lambda w: (-counts[w], w))[: 300 if tiny else None]
    encodings = tokenizer.encode_batch(words, add_special_tokens=False)
    static_words = [w for w, e in zip(words, encodings) if len(e.ids) >= 2]
    single = {e.ids[0] for e in encodings if len(e.ids) == 1}
    log(f"{len(words)} words: {len(static_words)} of several pieces (embedded whole), {len(single)} single pieces", flush=True)

    n_pieces = tokenizer.get_vocab_size()
    full = np.zeros((1 + n_pieces + len(static_words), embedder.dim), dtype=np.float32)
    id_to_piece = {i: p for p, i in vocab.items()}
    needed = {i for e in encodings for i in e.ids} if tiny else set(range(n_pieces))
    for k, p in enumerate(range(n_pieces)):
        if p in needed and _usable_piece(id_to_piece[p]):
            full[1 + p] = embedder._run([cls_id, p, sep_id])
        if k % 5000 == 4999:
            log(f"  {k + 1}/{n_pieces} pieces ({time.time() - started:.0f} s)", flush=True)
    by_word = dict(zip(words, encodings))
    for k, word in enumerate(static_words):
        full[1 + n_pieces + k] = embedder._run([cls_id, *by_word[word].ids, sep_id])
        if k % 5000 == 4999:
            log(f"  {k + 1}/{len(static_words)} words ({time.time() - started:.0f} s)", flush=True)

    # PCA fitted on the vectors of the word list's words (whole-word rows and single pieces)
    fit_rows = np.concatenate([1 + np.array(sorted(single), dtype=np.int64), 1 + n_pieces + np.arange(len(static_words))])
    pca = PCA(n_components=dims, random_state=0).fit(full[fit_rows])
    reduced = np.zeros((full.shape[0], dims), dtype=np.float32)
    used = np.flatnonzero(np.abs(full).sum(axis=1) > 0)
    reduced[used] = pca.transform(full[used])
    # one global scale so a dimension's values are about unit size (the first ones a little more)
    reduced /= float(np.sqrt(pca.explained_variance_.mean()))
    log(f"PCA {embedder.dim} -> {dims}: {pca.explained_variance_ratio_.sum():.3f} of the variance; {time.time() - started:.0f} s", flush=True)
    return {"vectors": reduced, "static_words": np.array(static_words, dtype=object),
            "explained_variance": np.cumsum(pca.explained_variance_ratio_), "seconds": time.time() - started}


def quantise(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 [rows, dims] -> (int8 [rows, dims], float32 scale [rows]), symmetric per row."""
    scale = np.abs(vectors).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    return np.round(vectors / scale[:, None]).astype(np.int8), scale.astype(np.float32)


def trained_table(vectors: dict, dims: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``dims`` PCA components, int8 per row: (int8, scale, the float32 values the
    tagger is trained on, which are exactly what the exported graph computes)."""
    table, scale = quantise(np.ascontiguousarray(vectors["vectors"][:, :dims]))
    return table, scale, table.astype(np.float32) * scale[:, None]


def load(path: Path) -> dict:
    data = np.load(path, allow_pickle=True)
    return {k: data[k] for k in data.files} | {"static_words": list(data["static_words"])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dims", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    vectors = build(args.dims, args.threads)
    np.savez(args.out, **vectors)
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
