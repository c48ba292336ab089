"""Train the clinical NER tagger (ner_clinical): word + character-CNN embeddings -> BiLSTM ->
BIO tags over the CLI.md clinical labels; export to ONNX with manifest and model card.

Data (models/training/data/text/, see its README): MACCROBAT2020 case reports (CC BY 4.0) with
the label mapping of healthfm_desktop.core.records.labels, split by document as in
maccrobat_split.json (train / dev / test), plus the NCBI disease training abstracts (public
domain) whose unlabelled tokens only say "not a PROBLEM" (partial-label loss, see
``allowed_tags``). Seeded, CPU only.

    nice -n 10 python models/training/train_ner.py            # full run (~10 min on 2 cores)
    python models/training/train_ner.py --tiny --out /tmp/x   # seconds, for the test
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from healthfm_desktop.core.records.labels import CLINICAL_LABELS, MACCROBAT_TO_LABEL, NCBI_TO_LABEL  # noqa: E402
from healthfm_desktop.core.records.ner_features import (  # noqa: E402
    CHAR_VOCAB_SIZE,
    MAX_CHARS,
    SHAPES,
    bio_tags,
    build_word_index,
    encode_tokens,
    normalise_word,
)

DATA = REPO / "models" / "training" / "data" / "text"
MODEL_NAME = "ner_clinical"
TAGS = bio_tags(CLINICAL_LABELS)
MAX_SENTENCE_TOKENS = 96


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def tokenise_document(nlp, record: dict, mapping: dict[str, str], partial_label: str | None):
    """-> list of (words, tag ids or -1 per token, allowed mask per token) per sentence chunk.

    For fully labelled corpora a token's allowed set is its one gold tag. For a partially
    labelled corpus (NCBI: diseases only) an unlabelled token may be any tag except the
    partial label's B-/I- tags."""
    text = record["text"]
    doc = nlp.make_doc(text)
    tags = ["O"] * len(doc)
    spans = sorted(
        ((s["start"], s["end"], mapping[s["label"]]) for s in record["spans"] if s["label"] in mapping),
        key=lambda s: (s[0], -(s[1] - s[0])),
    )
    taken = [False] * len(doc)
    for start, end, label in spans:
        span = doc.char_span(start, end, alignment_mode="expand")
        if span is None or any(taken[span.start : span.end]):
            continue  # nested/overlapping gold spans: keep the first, longest one
        for i in range(span.start, span.end):
            taken[i] = True
            tags[i] = ("B-" if i == span.start else "I-") + label
    chunks = []
    current: list[int] = []
    for token in doc:
        if not token.is_space:
            current.append(token.i)
        ends_line = "\n" in token.whitespace_ or (token.i + 1 < len(doc) and doc[token.i + 1].is_space and "\n" in doc[token.i + 1].text)
        if current and (ends_line or (token.text in {".", "?", "!"} and len(current) > 5) or len(current) >= MAX_SENTENCE_TOKENS):
            chunks.append(current)
            current = []
    if current:
        chunks.append(current)
    partial_forbidden = {TAGS.index(f"B-{partial_label}"), TAGS.index(f"I-{partial_label}")} if partial_label else set()
    out = []
    for chunk in chunks:
        words = [doc[i].text for i in chunk]
        gold = []
        allowed = np.zeros((len(chunk), len(TAGS)), dtype=bool)
        for k, i in enumerate(chunk):
            tag = tags[i]
            if partial_label and tag == "O":
                allowed[k, :] = True
                allowed[k, list(partial_forbidden)] = False
                gold.append(-1)
            else:
                allowed[k, TAGS.index(tag)] = True
                gold.append(TAGS.index(tag))
        out.append((words, gold, allowed))
    return out


class Tagger(nn.Module):
    def __init__(self, word_count: int, tag_count: int, word_dim=64, char_dim=24, char_filters=48, shape_dim=8, hidden=128):
        super().__init__()
        self.words = nn.Embedding(word_count, word_dim, padding_idx=0)
        self.chars = nn.Embedding(CHAR_VOCAB_SIZE, char_dim, padding_idx=0)
        self.char_conv = nn.Conv1d(char_dim, char_filters, kernel_size=3, padding=1)
        self.shapes = nn.Embedding(len(SHAPES), shape_dim)
        self.dropout = nn.Dropout(0.3)
        self.lstm = nn.LSTM(word_dim + char_filters + shape_dim, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, tag_count)

    def forward(self, word_ids, char_ids, shape_ids):
        batch, length = word_ids.shape
        chars = self.chars(char_ids.reshape(batch * length, MAX_CHARS)).transpose(1, 2)
        chars = torch.relu(self.char_conv(chars)).max(dim=2).values.reshape(batch, length, -1)
        x = torch.cat([self.words(word_ids), chars, self.shapes(shape_ids)], dim=-1)
        x, _ = self.lstm(self.dropout(x))
        return self.out(self.dropout(x))


def relaxed_overlap_scores(gold_docs, pred_docs, labels):
    """Micro and per-label precision/recall/F1 where a prediction is right if it overlaps a gold
    span of the same label (each gold span matched at most once)."""
    from healthfm_desktop.core.records.evaluation import relaxed_overlap_f1

    return relaxed_overlap_f1(gold_docs, pred_docs, labels)


def predict_document(model, nlp, text: str, word_index) -> list[tuple[int, int, str]]:
    from healthfm_desktop.core.records.ner_features import decode_bio

    doc = nlp.make_doc(text)
    record = {"text": text, "spans": []}
    spans = []
    chunks = tokenise_document(nlp, record, {}, None)
    # map chunk words back to doc tokens in order
    positions = [t.i for t in doc if not t.is_space]
    cursor = 0
    model.eval()
    with torch.no_grad():
        for words, _, _ in chunks:
            idx = positions[cursor : cursor + len(words)]
            cursor += len(words)
            w, c, s = (torch.from_numpy(a) for a in encode_tokens([words], word_index))
            tag_ids = model(w, c, s)[0].argmax(-1).tolist()
            for a, b, label in decode_bio(tag_ids, TAGS):
                spans.append((doc[idx[a]].idx, doc[idx[b - 1]].idx + len(doc[idx[b - 1]]), label))
    return spans


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--tiny", action="store_true", help="a few documents, one epoch (for the test)")
    parser.add_argument("--out", type=Path, default=REPO / "models")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-minutes", type=float, default=11.0, help="wall-clock budget; training stops after the epoch that passes it")
    parser.add_argument("--ncbi-sentences", type=int, default=100_000, help="NCBI sentences used (disease-only labels; fewer = faster)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    args = parser.parse_args(argv)

    import spacy

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    nlp = spacy.blank("en")

    split = json.loads((DATA / "maccrobat_split.json").read_text())
    maccrobat = {r["id"]: r for r in read_jsonl(DATA / "maccrobat2020.jsonl")}
    ncbi = read_jsonl(DATA / "ncbi_disease_train.jsonl")
    train_ids, dev_ids, test_ids = split["train"], split["dev"], split["test"]
    if args.tiny:
        train_ids, dev_ids, test_ids, ncbi = train_ids[:3], dev_ids[:1], test_ids[:2], ncbi[:5]
        args.epochs = 1

    examples = []
    for doc_id in train_ids:
        examples += tokenise_document(nlp, maccrobat[doc_id], MACCROBAT_TO_LABEL, None)
    maccrobat_examples = len(examples)
    ncbi_examples = []
    for record in ncbi:
        ncbi_examples += tokenise_document(nlp, record, NCBI_TO_LABEL, "PROBLEM")
    random.Random(args.seed).shuffle(ncbi_examples)
    examples += ncbi_examples[: args.ncbi_sentences]
    counts = Counter(normalise_word(w) for words, _, _ in examples for w in words)
    vocabulary = [w for w, n in counts.most_common(8000) if n >= 2]
    word_index = build_word_index(vocabulary)
    print(f"{maccrobat_examples} MACCROBAT + {len(examples) - maccrobat_examples} NCBI sentences, vocabulary {len(vocabulary)}", flush=True)

    model = Tagger(len(vocabulary) + 2, len(TAGS))
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    started = time.time()
    best_f1, best_state = -1.0, None
    dev_gold = [[(s["start"], s["end"], MACCROBAT_TO_LABEL[s["label"]]) for s in maccrobat[i]["spans"] if s["label"] in MACCROBAT_TO_LABEL] for i in dev_ids]
    for epoch in range(args.epochs):
        model.train()
        order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]) + random.random() * 8)
        batches = [order[i : i + args.batch] for i in range(0, len(order), args.batch)]
        random.shuffle(batches)
        total = 0.0
        for batch in batches:
            words = [examples[i][0] for i in batch]
            w, c, s = (torch.from_numpy(a) for a in encode_tokens(words, word_index))
            # word dropout: unknown-word behaviour is learned from the training data itself
            w = torch.where((torch.rand(w.shape) < 0.05) & (w > 1), torch.ones_like(w), w)
            allowed = torch.zeros(w.shape[0], w.shape[1], len(TAGS), dtype=torch.bool)
            valid = torch.zeros(w.shape, dtype=torch.bool)
            for b, i in enumerate(batch):
                n = len(examples[i][0])
                allowed[b, :n] = torch.from_numpy(examples[i][2])
                valid[b, :n] = True
            logits = model(w, c, s)
            log_z = torch.logsumexp(logits, dim=-1)
            log_allowed = torch.logsumexp(logits.masked_fill(~allowed, -1e9), dim=-1)
            loss = ((log_z - log_allowed) * valid).sum() / valid.sum()
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimiser.step()
            total += float(loss.detach())
        dev_pred = [predict_document(model, nlp, maccrobat[i]["text"], word_index) for i in dev_ids]
        dev = relaxed_overlap_scores(dev_gold, dev_pred, CLINICAL_LABELS)
        print(f"epoch {epoch + 1}: loss {total / len(batches):.3f} dev relaxed F1 {dev['micro']['f1']:.3f} ({time.time() - started:.0f} s)", flush=True)
        if dev["micro"]["f1"] > best_f1:
            best_f1 = dev["micro"]["f1"]
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        if (time.time() - started) / 60 > args.max_minutes:
            print("time budget reached", flush=True)
            break
    model.load_state_dict(best_state)
    model.eval()

    from healthfm_desktop.core.records.evaluation import bootstrap_relaxed_f1

    test_gold = [[(s["start"], s["end"], MACCROBAT_TO_LABEL[s["label"]]) for s in maccrobat[i]["spans"] if s["label"] in MACCROBAT_TO_LABEL] for i in test_ids]
    test_pred = [predict_document(model, nlp, maccrobat[i]["text"], word_index) for i in test_ids]
    test = relaxed_overlap_scores(test_gold, test_pred, CLINICAL_LABELS)
    low, high = bootstrap_relaxed_f1(test_gold, test_pred, CLINICAL_LABELS, seed=args.seed)
    print(f"test relaxed-overlap micro F1 {test['micro']['f1']:.3f} (95% CI {low:.3f}-{high:.3f})", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / f"{MODEL_NAME}.onnx"
    example = tuple(torch.from_numpy(a) for a in encode_tokens([["No", "fever", "."], ["Aspirin", "81", "mg", "daily", "."]], word_index))
    torch.onnx.export(
        model,
        example,
        str(onnx_path),
        input_names=["word_ids", "char_ids", "shape_ids"],
        output_names=["logits"],
        dynamic_axes={"word_ids": {0: "batch", 1: "tokens"}, "char_ids": {0: "batch", 1: "tokens"}, "shape_ids": {0: "batch", 1: "tokens"}, "logits": {0: "batch", 1: "tokens"}},
        opset_version=17,
        dynamo=False,
        external_data=False,
    )
    write_outputs(args, onnx_path, vocabulary, test, (low, high), len(train_ids), len(dev_ids), len(test_ids), len(ncbi), best_f1)
    return 0


def write_outputs(args, onnx_path, vocabulary, test, ci, n_train, n_dev, n_test, n_ncbi, dev_f1):
    from healthfm_desktop.core.inference.registry import write_manifest

    per_label = {k: {m: round(v, 4) for m, v in s.items()} for k, s in test["per_label"].items()}
    manifest = {
        "name": MODEL_NAME,
        "version": "1.0.0",
        "file": onnx_path.name,
        "task": "token-classification (BIO tags over CLI.md clinical labels)",
        "inputs": [
            {"name": "word_ids", "shape": ["batch", "tokens"], "dtype": "int64"},
            {"name": "char_ids", "shape": ["batch", "tokens", MAX_CHARS], "dtype": "int64"},
            {"name": "shape_ids", "shape": ["batch", "tokens"], "dtype": "int64"},
        ],
        "outputs": [{"name": "logits", "shape": ["batch", "tokens", len(TAGS)], "dtype": "float32"}],
        "labels": TAGS,
        "preprocessing": {
            "featurisation": "healthfm_desktop.core.records.ner_features.encode_tokens",
            "tokenizer": "spaCy 3.7 blank('en') tokenizer, one sentence per row",
            "max_chars": MAX_CHARS,
            "word_vocabulary": vocabulary,
        },
        "training_data": {
            "source": "MACCROBAT2020 (Caufield et al., doi 10.6084/m9.figshare.9764942) + NCBI disease corpus train (Dogan et al. 2014)",
            "license": "MACCROBAT2020 CC BY 4.0; NCBI disease US public domain",
            "split": f"MACCROBAT by document: {n_train} train / {n_dev} dev / {n_test} test (models/training/data/text/maccrobat_split.json); NCBI {n_ncbi} train abstracts",
            "label_mapping": MACCROBAT_TO_LABEL,
        },
        "metrics": {
            "test_split": f"MACCROBAT shared test documents ({n_test})",
            "relaxed_overlap_micro_f1": round(test["micro"]["f1"], 4),
            "relaxed_overlap_micro_f1_ci95": [round(ci[0], 4), round(ci[1], 4)],
            "relaxed_overlap_micro_precision": round(test["micro"]["precision"], 4),
            "relaxed_overlap_micro_recall": round(test["micro"]["recall"], 4),
            "per_label": per_label,
            "dev_relaxed_micro_f1": round(dev_f1, 4),
            "published_baseline": "none published for MACCROBAT2020 NER (README)",
        },
        "license": "MIT (weights trained on CC BY 4.0 and public-domain data; attribute MACCROBAT2020)",
        "intended_use": "pre-annotation of clinical notes and case reports for human correction in the Notes workspace",
        "limitations": "trained on published case reports, not on hospital notes; no PHI labels; boundaries are approximate (relaxed-overlap metric)",
        "training_script": "models/training/train_ner.py",
    }
    write_manifest(onnx_path.with_suffix(".json"), manifest)
    rows = "\n".join(
        f"| {label} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['support']} |" for label, s in test["per_label"].items()
    )
    card = f"""# ner_clinical — clinical NER tagger (BiLSTM + character CNN, ONNX)

Tags tokens with BIO tags over the clinical labels of CLI.md ({", ".join(CLINICAL_LABELS)}).
Run by `healthfm_desktop.core.records.ner_model` inside the notes pipeline, where bundled
vocabularies, rules and the user's own terms take precedence over it.

## Training data
* MACCROBAT2020 case reports (CC BY 4.0; Caufield et al. 2019, doi 10.6084/m9.figshare.9764942),
  split by document (seeded): {n_train} train / {n_dev} dev / {n_test} test. Label mapping:
  {", ".join(f"{k}→{v}" for k, v in MACCROBAT_TO_LABEL.items())}. Other MACCROBAT types are not tagged.
* NCBI disease corpus training abstracts ({n_ncbi}; public domain; Doğan et al. 2014), mentions →
  PROBLEM; its unlabelled tokens are trained only as "not PROBLEM" (partial-label loss).

## Metrics (MACCROBAT test documents, relaxed overlap, model alone)
Micro F1 **{test['micro']['f1']:.3f}** (95% bootstrap CI over documents {ci[0]:.3f}–{ci[1]:.3f}),
precision {test['micro']['precision']:.3f}, recall {test['micro']['recall']:.3f}. No published NER
baseline exists for MACCROBAT2020.

| label | precision | recall | F1 | gold spans |
|---|---|---|---|---|
{rows}

The full pipeline (model + vocabularies + rules) is measured by `benchmarks/bench_notes.py`.

## Intended use and limits
Pre-annotation for human correction. Case reports are not hospital notes; abbreviations and
templated EHR text are under-represented. No PHI labels (PHI is found by rules). Architecture:
word embedding (64, {len(vocabulary)} words) + char CNN (48) + shape → BiLSTM (2×128) → linear.
Retrain: `nice -n 10 python models/training/train_ner.py`.
"""
    onnx_path.with_suffix(".md").write_text(card, encoding="utf-8")
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
