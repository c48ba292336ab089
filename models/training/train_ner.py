"""Train the clinical NER tagger (ner_clinical): word + character-CNN embeddings -> residual
dilated convolutions -> BIO tags over the CLI.md clinical labels; export to ONNX with manifest and model card.

Data (models/training/data/text/, see its README): MACCROBAT2020 case reports (CC BY 4.0) with
the label mapping of healthfm_desktop.core.records.labels, split by document as in
maccrobat_split.json (train / dev / test), plus the NCBI disease training abstracts (public
domain) whose unlabelled tokens only say "not a PROBLEM" (partial-label loss, see
``allowed_tags``). Seeded, CPU only.

    nice -n 10 python models/training/train_ner.py            # full run (about 15-25 min on 2 shared cores)
    python models/training/train_ner.py --tiny --out /tmp/x   # seconds, for the test
"""

from __future__ import annotations

import argparse
import json
import math
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
sys.path.insert(0, str(Path(__file__).resolve().parent))  # model_cards beside this script
from model_cards import with_when_not_to_use  # noqa: E402  (beside this script)

from healthfm_desktop.core.records.labels import CLINICAL_LABELS, MACCROBAT_TO_LABEL, NCBI_TO_LABEL  # noqa: E402
from healthfm_desktop.core.records.ner_features import (  # noqa: E402
    CHAR_VOCAB_SIZE,
    MAX_CHARS,
    MAX_PIECES,
    SHAPES,
    StaticPieces,
    TokenEncoder,
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
    """Word + character-CNN + shape embeddings -> residual dilated 1-D convolutions -> tag logits.

    Convolutions instead of the first release's BiLSTM: onnxruntime runs a Conv over a whole
    row at once, where an LSTM walks the row one time step at a time, and the receptive field
    (1 + 2 * sum(dilations) = 31 tokens) covers a clinical sentence. Every layer multiplies its
    input by the token mask (word id > 0), so padding never leaks into real tokens: a sentence
    gets the same logits alone or batched with longer ones."""

    def __init__(self, word_count: int, tag_count: int, word_dim=80, char_dim=24, char_filters=64, shape_dim=8, hidden=128, dilations=(1, 2, 4, 8), dropout=0.3, static_table: np.ndarray | None = None):
        super().__init__()
        # frozen static word vectors (ner_static_vectors): a buffer, not a parameter, so the
        # vectors of words never seen in training stay where the text encoder put them
        static_dim = 0 if static_table is None else static_table.shape[1]
        self.register_buffer("static_table", None if static_table is None else torch.from_numpy(np.ascontiguousarray(static_table, dtype=np.float32)))
        self.words = nn.Embedding(word_count, word_dim, padding_idx=0)
        self.chars = nn.Embedding(CHAR_VOCAB_SIZE, char_dim, padding_idx=0)
        self.char_conv = nn.Conv1d(char_dim, char_filters, kernel_size=3, padding=1)
        self.shapes = nn.Embedding(len(SHAPES), shape_dim)
        self.dropout = nn.Dropout(dropout)
        self.project = nn.Conv1d(word_dim + char_filters + shape_dim + static_dim, hidden, kernel_size=1)
        self.convs = nn.ModuleList(nn.Conv1d(hidden, hidden, kernel_size=3, dilation=d, padding=d) for d in dilations)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in dilations)  # over channels only: padding-free
        self.out = nn.Conv1d(hidden, tag_count, kernel_size=1)

    def forward(self, word_ids, char_ids, shape_ids, piece_ids=None):
        batch, length = word_ids.shape
        mask = (word_ids > 0).unsqueeze(1).to(torch.float32)  # [B, 1, T]
        chars = self.chars(char_ids.reshape(batch * length, MAX_CHARS)).transpose(1, 2)
        chars = torch.relu(self.char_conv(chars)).max(dim=2).values.reshape(batch, length, -1)
        parts = [self.words(word_ids), chars, self.shapes(shape_ids)]
        if self.static_table is not None:
            parts.append(static_mean(self.static_table, piece_ids))
        x = torch.cat(parts, dim=-1).transpose(1, 2)
        x = self.project(self.dropout(x)) * mask
        for conv, norm in zip(self.convs, self.norms):
            x = (x + torch.relu(norm(conv(x).transpose(1, 2)).transpose(1, 2))) * mask
        return self.out(self.dropout(x)).transpose(1, 2)


def static_mean(table: torch.Tensor, piece_ids: torch.Tensor) -> torch.Tensor:
    """[B, T, MAX_PIECES] table rows -> [B, T, dims]: the mean of each token's rows (row 0, the
    padding row, is zeros and not counted)."""
    count = (piece_ids > 0).sum(dim=-1, keepdim=True).clamp(min=1).to(torch.float32)
    return table[piece_ids].sum(dim=2) / count


class ShiftedLinear(nn.Module):
    """A kernel-3 dilated Conv1d over [batch, tokens, channels] written as one MatMul over the
    token and its two neighbours ``dilation`` away (zeros beyond the row)."""

    def __init__(self, conv: nn.Conv1d):
        super().__init__()
        self.dilation = conv.dilation[0]
        weight = conv.weight.detach()  # [out, in, 3]
        self.linear = nn.Linear(3 * weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(torch.cat([weight[:, :, 0], weight[:, :, 1], weight[:, :, 2]], dim=1))
            self.linear.bias.copy_(conv.bias.detach())

    def forward(self, x):
        d = self.dilation
        padded = nn.functional.pad(x, (0, 0, d, d))  # zeros beyond both ends, as the Conv1d pads
        left = padded[:, : x.shape[1]]
        right = padded[:, 2 * d :]
        return self.linear(torch.cat([left, x, right], dim=-1))


class InferenceTagger(nn.Module):
    """The trained Tagger in the layout that onnxruntime runs fastest: [batch, tokens, channels]
    throughout, every convolution over tokens a MatMul (ShiftedLinear), no transposes. Same
    weights, same logits (to float rounding); this is what is exported to ONNX."""

    def __init__(self, tagger: Tagger):
        super().__init__()
        self.words, self.chars, self.char_conv, self.shapes = tagger.words, tagger.chars, tagger.char_conv, tagger.shapes
        self.project = nn.Linear(tagger.project.in_channels, tagger.project.out_channels)
        self.out = nn.Linear(tagger.out.in_channels, tagger.out.out_channels)
        with torch.no_grad():
            for linear, conv in ((self.project, tagger.project), (self.out, tagger.out)):
                linear.weight.copy_(conv.weight.detach()[:, :, 0])
                linear.bias.copy_(conv.bias.detach())
        self.convs = nn.ModuleList(ShiftedLinear(conv) for conv in tagger.convs)
        self.norms = tagger.norms
        self.register_buffer("static_int8", None)
        self.register_buffer("static_scale", None)
        if tagger.static_table is not None:
            # stored int8 with one scale per row (the trained values are exactly these products)
            from ner_static_vectors import quantise

            table, scale = quantise(tagger.static_table.numpy())
            assert np.allclose(table.astype(np.float32) * scale[:, None], tagger.static_table.numpy(), atol=1e-6), "static table is not int8-exact"
            self.register_buffer("static_int8", torch.from_numpy(table))
            self.register_buffer("static_scale", torch.from_numpy(scale[:, None]))

    def forward(self, word_ids, char_ids, shape_ids, piece_ids=None):
        batch, length = word_ids.shape
        mask = (word_ids > 0).unsqueeze(-1).to(torch.float32)  # [B, T, 1]
        chars = self.chars(char_ids.reshape(batch * length, MAX_CHARS)).transpose(1, 2)
        chars = torch.relu(self.char_conv(chars)).max(dim=2).values.reshape(batch, length, -1)
        parts = [self.words(word_ids), chars, self.shapes(shape_ids)]
        if self.static_int8 is not None:
            rows = self.static_int8[piece_ids].to(torch.float32) * self.static_scale[piece_ids]
            count = (piece_ids > 0).sum(dim=-1, keepdim=True).clamp(min=1).to(torch.float32)
            parts.append(rows.sum(dim=2) / count)
        x = self.project(torch.cat(parts, dim=-1)) * mask
        for conv, norm in zip(self.convs, self.norms):
            x = (x + torch.relu(norm(conv(x)))) * mask
        return self.out(x)


def export_onnx(model: Tagger, word_index: dict[str, int], path: Path, static: StaticPieces | None = None) -> None:
    """Write the model as ONNX (InferenceTagger layout) with the interface core.records.ner_model
    expects: int64 word_ids [batch, tokens], char_ids [batch, tokens, MAX_CHARS], shape_ids
    [batch, tokens] (and, with static vectors, piece_ids [batch, tokens, MAX_PIECES]) -> float32
    logits [batch, tokens, tags]; batch and tokens dynamic."""
    model.eval()
    fast = InferenceTagger(model).eval()
    example = tuple(torch.from_numpy(a) for a in encode_tokens([["No", "fever", "."], ["Aspirin", "81", "mg", "daily", "for", "hepatosplenomegaly", "."]], word_index, static))
    with torch.no_grad():
        assert torch.allclose(fast(*example), model(*example), atol=1e-4), "InferenceTagger differs from the trained Tagger"
    names = ["word_ids", "char_ids", "shape_ids", "piece_ids"][: len(example)]
    torch.onnx.export(
        fast,
        example,
        str(path),
        input_names=names,
        output_names=["logits"],
        dynamic_axes={**{name: {0: "batch", 1: "tokens"} for name in names}, "logits": {0: "batch", 1: "tokens"}},
        opset_version=17,
        dynamo=False,
        external_data=False,
    )


def relaxed_overlap_scores(gold_docs, pred_docs, labels):
    """Micro and per-label precision/recall/F1 where a prediction is right if it overlaps a gold
    span of the same label (each gold span matched at most once)."""
    from healthfm_desktop.core.records.evaluation import relaxed_overlap_f1

    return relaxed_overlap_f1(gold_docs, pred_docs, labels)


def predict_document(model, nlp, text: str, word_index, decoder: str = "argmax", static: StaticPieces | None = None) -> list[tuple[int, int, str]]:
    """Spans the model finds in a document, its sentence chunks tagged in one batch (the
    convolutional tagger's logits do not depend on the padding). ``decoder``: "argmax" (what
    the app's ner_model does today: per-token argmax + decode_bio) or "viterbi" (BIO-constrained
    search, core.records.tag_decoding)."""
    from healthfm_desktop.core.records.ner_features import decode_bio
    from healthfm_desktop.core.records.tag_decoding import viterbi_bio

    doc = nlp.make_doc(text)
    chunks = tokenise_document(nlp, {"text": text, "spans": []}, {}, None)
    if not chunks:
        return []
    positions = [t.i for t in doc if not t.is_space]  # chunk words are the doc's non-space tokens, in order
    model.eval()
    with torch.no_grad():
        tensors = (torch.from_numpy(a) for a in encode_tokens([words for words, _, _ in chunks], word_index, static))
        logits = model(*tensors).numpy()
    spans = []
    cursor = 0
    for row, (words, _, _) in enumerate(chunks):
        idx = positions[cursor : cursor + len(words)]
        cursor += len(words)
        scores = logits[row, : len(words)]
        tag_ids = viterbi_bio(scores, TAGS) if decoder == "viterbi" else scores.argmax(-1).tolist()
        for a, b, label in decode_bio(tag_ids, TAGS):
            spans.append((doc[idx[a]].idx, doc[idx[b - 1]].idx + len(doc[idx[b - 1]]), label))
    return spans


def gold_spans(record: dict) -> list[tuple[int, int, str]]:
    return [(s["start"], s["end"], MACCROBAT_TO_LABEL[s["label"]]) for s in record["spans"] if s["label"] in MACCROBAT_TO_LABEL]


def batch_loss(model, examples, batch, encoder: TokenEncoder, word_dropout: float) -> torch.Tensor:
    """Partial-label cross-entropy: -log of the probability mass on the token's allowed tags
    (its gold tag, or for NCBI's unlabelled tokens every tag but PROBLEM's)."""
    words = [examples[i][0] for i in batch]
    w, c, s, *pieces = (torch.from_numpy(a) for a in encoder.encode(words))  # = encode_tokens, cached
    if word_dropout:
        # word dropout: unknown-word behaviour is learned from the training data itself
        w = torch.where((torch.rand(w.shape) < word_dropout) & (w > 1), torch.ones_like(w), w)
    allowed = torch.zeros(w.shape[0], w.shape[1], len(TAGS), dtype=torch.bool)
    valid = torch.zeros(w.shape, dtype=torch.bool)
    for b, i in enumerate(batch):
        n = len(examples[i][0])
        allowed[b, :n] = torch.from_numpy(examples[i][2])
        valid[b, :n] = True
    logits = model(w, c, s, *pieces)
    log_z = torch.logsumexp(logits, dim=-1)
    log_allowed = torch.logsumexp(logits.masked_fill(~allowed, -1e9), dim=-1)
    return ((log_z - log_allowed) * valid).sum() / valid.sum()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=16, help="most epochs (the cosine schedule spans them); early stopping may end sooner")
    parser.add_argument("--patience", type=int, default=4, help="stop after this many epochs without a better dev F1")
    parser.add_argument("--tiny", action="store_true", help="a few documents, one epoch (for the test)")
    parser.add_argument("--out", type=Path, default=REPO / "models")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (results are reproducible for a fixed count; 1 wastes least on a loaded machine)")
    parser.add_argument("--max-minutes", type=float, default=24.0, help="safety stop after the epoch that passes this wall-clock budget (reported in the card when it fires)")
    parser.add_argument("--ncbi-sentences", type=int, default=3000, help="NCBI sentences used (disease-only labels; fewer = faster)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (linear warm-up over the first epoch, then cosine decay)")
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--hidden", type=int, default=128, help="channels of the dilated convolutions")
    parser.add_argument("--word-dropout", type=float, default=0.05)
    parser.add_argument("--dev-only", action="store_true", help="a tuning run: stop after choosing the epoch on dev, never score the test documents, write nothing")
    parser.add_argument("--static-dims", type=int, default=128, help="dimensions of the frozen static word vectors (ner_static_vectors; 0: none)")
    parser.add_argument("--static-vectors", type=Path, help="vectors written by ner_static_vectors.py (else built here, a few minutes)")
    args = parser.parse_args(argv)

    import spacy

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
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
    static = static_info = static_table = None
    if args.static_dims:
        import ner_static_vectors

        vectors = ner_static_vectors.load(args.static_vectors) if args.static_vectors else ner_static_vectors.build(threads=args.threads, tiny=args.tiny)
        _, _, static_table = ner_static_vectors.trained_table(vectors, args.static_dims)
        static_words = list(vectors["static_words"])
        static = StaticPieces.from_file(ner_static_vectors.TOKENIZER, static_words)
        static_info = {"dims": args.static_dims, "rows": int(static_table.shape[0]), "static_words": static_words,
                       "explained_variance": round(float(vectors["explained_variance"][args.static_dims - 1]), 3)}
        print(f"static vectors: {static_table.shape[0]} rows x {args.static_dims} ({static_info['explained_variance']:.3f} of the variance)", flush=True)
    encoder = TokenEncoder(word_index, max_tokens=10**7, static=static)

    model = Tagger(len(vocabulary) + 2, len(TAGS), hidden=args.hidden, dropout=args.dropout, static_table=static_table)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = (len(examples) + args.batch - 1) // args.batch
    total_steps = max(1, steps_per_epoch * args.epochs)

    def schedule(step: int) -> float:
        if step < steps_per_epoch:
            return (step + 1) / steps_per_epoch
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - steps_per_epoch) / max(1, total_steps - steps_per_epoch))))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
    shuffler = random.Random(args.seed + 1)
    started = time.time()
    best = {"f1": -1.0, "epoch": 0, "state": None}
    history = []
    stopped_by = "max epochs"
    dev_gold = [gold_spans(maccrobat[i]) for i in dev_ids]
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]) + shuffler.random() * 8)
        batches = [order[i : i + args.batch] for i in range(0, len(order), args.batch)]
        shuffler.shuffle(batches)
        total = 0.0
        done = 0
        for batch in batches:
            loss = batch_loss(model, examples, batch, encoder, args.word_dropout)
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimiser.step()
            scheduler.step()
            total += float(loss.detach())
            done += 1
            if done % 50 == 0:
                print(f"  step {done}/{len(batches)} loss {total / done:.3f} ({time.time() - started:.0f} s)", flush=True)
        dev_pred = [predict_document(model, nlp, maccrobat[i]["text"], word_index, static=static) for i in dev_ids]
        dev_f1 = relaxed_overlap_scores(dev_gold, dev_pred, CLINICAL_LABELS)["micro"]["f1"]
        history.append({"epoch": epoch, "loss": round(total / len(batches), 4), "dev_f1": round(dev_f1, 4)})
        print(f"epoch {epoch}: loss {total / len(batches):.3f} dev relaxed F1 {dev_f1:.3f} lr {scheduler.get_last_lr()[0]:.2e} ({time.time() - started:.0f} s)", flush=True)
        if dev_f1 > best["f1"]:
            best = {"f1": dev_f1, "epoch": epoch, "state": {k: v.clone() for k, v in model.state_dict().items() if k != "static_table"}}
        elif epoch - best["epoch"] >= args.patience:
            stopped_by = f"early stopping (no better dev F1 for {args.patience} epochs)"
            break
        if (time.time() - started) / 60 > args.max_minutes:
            stopped_by = f"wall-clock safety stop at {args.max_minutes:g} min"
            break
    print(f"{stopped_by}; best dev F1 {best['f1']:.3f} at epoch {best['epoch']}", flush=True)
    if args.dev_only:
        return 0
    model.load_state_dict(best["state"], strict=False)  # all but the frozen static table
    model.eval()

    from healthfm_desktop.core.records.evaluation import bootstrap_relaxed_f1

    test_gold = [gold_spans(maccrobat[i]) for i in test_ids]
    results = {}
    for decoder in ("argmax", "viterbi"):
        test_pred = [predict_document(model, nlp, maccrobat[i]["text"], word_index, decoder, static) for i in test_ids]
        scores = relaxed_overlap_scores(test_gold, test_pred, CLINICAL_LABELS)
        scores["ci95"] = bootstrap_relaxed_f1(test_gold, test_pred, CLINICAL_LABELS, seed=args.seed)
        results[decoder] = scores
        print(f"test relaxed-overlap micro F1 ({decoder}) {scores['micro']['f1']:.3f} (95% CI {scores['ci95'][0]:.3f}-{scores['ci95'][1]:.3f})", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / f"{MODEL_NAME}.onnx"
    export_onnx(model, word_index, onnx_path, static)
    if static is not None and not (args.out / ner_static_vectors.TOKENIZER.name).exists():
        import shutil

        shutil.copyfile(ner_static_vectors.TOKENIZER, args.out / ner_static_vectors.TOKENIZER.name)  # the manifest's side file
    training = {
        "epochs_run": len(history), "best_epoch": best["epoch"], "stopped_by": stopped_by, "history": history,
        "seed": args.seed, "threads": args.threads, "hidden": args.hidden, "command": " ".join(["nice -n 10 python models/training/train_ner.py", *(f"--{k.replace('_', '-')} {v}" for k, v in sorted(vars(args).items()) if k not in ("out", "tiny", "dev_only", "static_vectors") and v != parser.get_default(k))]).strip(), "lr": args.lr, "dropout": args.dropout, "word_dropout": args.word_dropout,
        "batch": args.batch, "minutes": round((time.time() - started) / 60, 1),
    }
    write_outputs(args, onnx_path, vocabulary, results, len(train_ids), len(dev_ids), len(test_ids), len(ncbi), best["f1"], training, static_info)
    return 0


def _label_rows(scores: dict) -> str:
    return "\n".join(f"| {label} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['support']} |" for label, s in scores["per_label"].items())


def write_outputs(args, onnx_path, vocabulary, results, n_train, n_dev, n_test, n_ncbi, dev_f1, training, static_info=None):
    from healthfm_desktop.core.inference.registry import sha256_of, write_manifest
    import ner_static_vectors

    test, viterbi = results["argmax"], results["viterbi"]
    ci = test["ci95"]
    per_label = {k: {m: round(v, 4) for m, v in s.items()} for k, s in test["per_label"].items()}
    manifest = {
        "name": MODEL_NAME,
        "version": "3.0.0",
        "file": onnx_path.name,
        "task": "token-classification",
        "task_description": "token-classification (BIO tags over CLI.md clinical labels)",
        "inputs": [
            {"name": "word_ids", "shape": ["batch", "tokens"], "dtype": "int64"},
            {"name": "char_ids", "shape": ["batch", "tokens", MAX_CHARS], "dtype": "int64"},
            {"name": "shape_ids", "shape": ["batch", "tokens"], "dtype": "int64"},
            *([{"name": "piece_ids", "shape": ["batch", "tokens", MAX_PIECES], "dtype": "int64"}] if static_info else []),
        ],
        "outputs": [{"name": "logits", "shape": ["batch", "tokens", len(TAGS)], "dtype": "float32"}],
        "labels": TAGS,
        "preprocessing": {
            "featurisation": "healthfm_desktop.core.records.ner_features.encode_tokens",
            "tokenizer": "spaCy 3.7 blank('en') tokenizer, one sentence per row",
            "max_chars": MAX_CHARS,
            "padding": "word id 0 marks padding; logits of real tokens do not depend on it (masked convolutions)",
            "decoding": "the app (core.records.ner_model): per-token argmax where it forms valid BIO, else the BIO-constrained Viterbi search of core.records.tag_decoding.viterbi_bio (scored alone as metrics.viterbi_decoding); then ner_features.decode_bio",
            "word_vocabulary": vocabulary,
            **({"static_vectors": {
                "what": f"frozen word vectors inside the graph (int8, one scale per row; {static_info['rows']} rows x {static_info['dims']}): all-MiniLM-L6-v2 (the text encoder) run on each WordPiece piece alone and on each word of static_words whole, mean-pooled, PCA to {static_info['dims']} dims ({static_info['explained_variance']:.3f} of the variance); models/training/ner_static_vectors.py",
                "piece_ids": "healthfm_desktop.core.records.ner_features.StaticPieces: a token (lower-cased) in static_words -> its own row 1 + vocab size + k; any other -> rows 1 + id of its first MAX_PIECES pieces (files.tokenizer, no special tokens), averaged in the graph",
                "max_pieces": MAX_PIECES,
                "static_words": static_info["static_words"],
            }} if static_info else {}),
        },
        **({"files": {"tokenizer": {"file": ner_static_vectors.TOKENIZER.name, "sha256": sha256_of(ner_static_vectors.TOKENIZER)}}} if static_info else {}),
        "training_data": {
            "source": "MACCROBAT2020 (Caufield et al., doi 10.6084/m9.figshare.9764942) + NCBI disease corpus train (Dogan et al. 2014)",
            "license": "MACCROBAT2020 CC BY 4.0; NCBI disease US public domain",
            "split": f"MACCROBAT by document: {n_train} train / {n_dev} dev / {n_test} test (models/training/data/text/maccrobat_split.json); NCBI {n_ncbi} train abstracts ({args.ncbi_sentences} sentences drawn with the seed)",
            "label_mapping": MACCROBAT_TO_LABEL,
        },
        "training": training,
        "metrics": {
            "test_split": f"MACCROBAT shared test documents ({n_test}), model alone, argmax decoding",
            "relaxed_overlap_micro_f1": round(test["micro"]["f1"], 4),
            "relaxed_overlap_micro_f1_ci95": [round(ci[0], 4), round(ci[1], 4)],
            "relaxed_overlap_micro_precision": round(test["micro"]["precision"], 4),
            "relaxed_overlap_micro_recall": round(test["micro"]["recall"], 4),
            "per_label": per_label,
            "viterbi_decoding": {
                "relaxed_overlap_micro_f1": round(viterbi["micro"]["f1"], 4),
                "relaxed_overlap_micro_f1_ci95": [round(viterbi["ci95"][0], 4), round(viterbi["ci95"][1], 4)],
                "relaxed_overlap_micro_precision": round(viterbi["micro"]["precision"], 4),
                "relaxed_overlap_micro_recall": round(viterbi["micro"]["recall"], 4),
            },
            "dev_relaxed_micro_f1": round(dev_f1, 4),
            "published_baseline": "none published for MACCROBAT2020 NER (README)",
        },
        "license": "MIT (weights trained on CC BY 4.0 and public-domain data; attribute MACCROBAT2020)" + ("; its static word-vector table is derived from all-MiniLM-L6-v2, Apache-2.0" if static_info else ""),
        "intended_use": "pre-annotation of clinical notes and case reports for human correction in the Notes workspace",
        "limitations": "trained on published case reports, not on hospital notes; no PHI labels; boundaries are approximate (relaxed-overlap metric)",
        "training_script": "models/training/train_ner.py",
    }
    write_manifest(onnx_path.with_suffix(".json"), manifest)
    static_line = "" if not static_info else (
        f" + frozen static word vectors ({static_info['dims']}; all-MiniLM-L6-v2 run on each word or WordPiece piece alone,"
        f" PCA, int8 in the graph, {static_info['rows']} rows: {len(static_info['static_words'])} words of the training"
        " texts and bundled vocabularies embedded whole, other words the mean of their pieces' rows; a table lookup at run time)")
    card = f"""# ner_clinical — clinical NER tagger (dilated CNN + character CNN{' + static word vectors' if static_info else ''}, ONNX)

Tags tokens with BIO tags over the clinical labels of CLI.md ({", ".join(CLINICAL_LABELS)}).
Run by `healthfm_desktop.core.records.ner_model` inside the notes pipeline, where bundled
vocabularies, rules and the user's own terms take precedence over it.

## Training data
* MACCROBAT2020 case reports (CC BY 4.0; Caufield et al. 2019, doi 10.6084/m9.figshare.9764942),
  split by document (seeded): {n_train} train / {n_dev} dev / {n_test} test. Label mapping:
  {", ".join(f"{k}→{v}" for k, v in MACCROBAT_TO_LABEL.items())}. Other MACCROBAT types are not tagged.
* NCBI disease corpus training abstracts ({n_ncbi}; public domain; Doğan et al. 2014; {args.ncbi_sentences} of
  their sentences, drawn with the seed), mentions → PROBLEM; its unlabelled tokens are trained only as "not PROBLEM" (partial-label loss).

## Training
Seed {args.seed}, {args.threads} torch thread(s) (deterministic algorithms), AdamW (peak lr {args.lr:g},
weight decay 1e-4), linear warm-up over the first epoch then cosine decay over {args.epochs} epochs,
dropout {args.dropout:g}, word dropout {args.word_dropout:g}, batches of {args.batch} length-bucketed
sentences. Early stopping on the relaxed micro F1 of the {n_dev} dev documents (patience
{args.patience}): {training['epochs_run']} epochs run (stopped by {training['stopped_by']}), weights of epoch
{training['best_epoch']} kept (dev F1 {dev_f1:.3f}); {training['minutes']} min wall on a shared 2-core machine.

## Metrics (MACCROBAT test documents, relaxed overlap, model alone)
Micro F1 **{test['micro']['f1']:.3f}** (95% bootstrap CI over documents {ci[0]:.3f}–{ci[1]:.3f}),
precision {test['micro']['precision']:.3f}, recall {test['micro']['recall']:.3f}, with the app's decoding
(per-token argmax, an I- tag without its B- starts a span). With the BIO-constrained Viterbi
decoder of `core.records.tag_decoding`: {viterbi['micro']['f1']:.3f} ({viterbi['ci95'][0]:.3f}–{viterbi['ci95'][1]:.3f}),
P {viterbi['micro']['precision']:.3f}, R {viterbi['micro']['recall']:.3f}. No published NER baseline exists for MACCROBAT2020.
The first release (BiLSTM, 3 epochs) scored 0.621 (0.580–0.655) on the same documents.

| label | precision | recall | F1 | gold spans |
|---|---|---|---|---|
{_label_rows(test)}

## Intended use and limits
Pre-annotation for human correction. Case reports are not hospital notes; abbreviations and
templated EHR text are under-represented. No PHI labels (PHI is found by rules). Architecture:
word embedding (80, {len(vocabulary)} words) + char CNN (64) + shape (8){static_line} → 1×1 projection ({args.hidden}) →
4 residual dilated convolutions (kernel 3, dilations 1-2-4-8, layer norm, receptive field 31
tokens) → 1×1 output. Convolutions are masked, so a row's logits do not depend on batch padding.
Exported as `InferenceTagger`: the same weights in [batch, tokens, channels] layout, each
convolution over tokens one MatMul, no transposes (same logits to 1e-4).
Retrain: `{training['command']}`, then
`python models/training/evaluate_ner_pipeline.py` (the pipeline section below).
"""
    onnx_path.with_suffix(".md").write_text(with_when_not_to_use(card, "ner_clinical"), encoding="utf-8")
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
