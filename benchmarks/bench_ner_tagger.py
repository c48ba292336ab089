"""Latency of the ner_clinical ONNX tagger alone (onnxruntime, one thread), per sentence of the
MACCROBAT test documents, against another release of the same model run in the same process.

The baseline is a folder holding that release's ner_clinical.onnx and ner_clinical.json, e.g.
the first release (BiLSTM), taken from git:

    mkdir -p /tmp/ner_v1
    git show 009707e:models/ner_clinical.onnx > /tmp/ner_v1/ner_clinical.onnx
    git show 009707e:models/ner_clinical.json > /tmp/ner_v1/ner_clinical.json
    python benchmarks/bench_ner_tagger.py --baseline /tmp/ner_v1 --name "first release (BiLSTM, 009707e)"

Two regimes: one sentence per call (an annotator's edit), and rows batched 128 at a time by
length (what core.records.ner_model does for whole notes; featurisation included).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "models" / "training"))
DATA = REPO / "models" / "training" / "data" / "text"


def session(folder: Path):
    """(onnxruntime session, rows -> feeds): a release with static word vectors also gets its
    piece_ids (the tokenizer side file beside it)."""
    import onnxruntime as ort

    from healthfm_desktop.core.records.ner_features import StaticPieces, build_word_index, encode_tokens

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    manifest = json.loads((folder / "ner_clinical.json").read_text(encoding="utf-8"))
    model = ort.InferenceSession(str(folder / "ner_clinical.onnx"), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in model.get_inputs()]
    word_index = build_word_index(manifest["preprocessing"]["word_vocabulary"])
    static = None
    if "piece_ids" in names:
        static = StaticPieces.from_file(folder / manifest["files"]["tokenizer"]["file"], manifest["preprocessing"]["static_vectors"]["static_words"])
    return model, lambda rows: dict(zip(names, encode_tokens(rows, word_index, static)))


def per_sentence_ms(run, rows, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run(rows)
        best = min(best, (time.perf_counter() - started) / len(rows) * 1000)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="folder with the baseline release's ner_clinical.onnx/.json")
    parser.add_argument("--name", default="baseline release", help="what the baseline is, for the printed lines")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--card", action="store_true", help="also write the figures into models/ner_clinical.md (section Speed)")
    args = parser.parse_args()

    import spacy
    import train_ner

    split = json.loads((DATA / "maccrobat_split.json").read_text())
    records = {r["id"]: r for r in (json.loads(line) for line in (DATA / "maccrobat2020.jsonl").open(encoding="utf-8"))}
    nlp = spacy.blank("en")
    rows = [words for i in split["test"] for words, _, _ in train_ner.tokenise_document(nlp, records[i], {}, None)]
    print(f"{len(rows)} sentences of the {len(split['test'])} MACCROBAT test documents, {sum(map(len, rows)) / len(rows):.1f} tokens on average")

    figures = {}
    for name, folder in (("ours", REPO / "models"), ("baseline", args.baseline)):
        model, feeds = session(folder)

        def one_by_one(batch, model=model, feeds=feeds):
            for row in batch:
                model.run(None, feeds([row]))

        def batched(batch, model=model, feeds=feeds):
            order = sorted(batch, key=len)
            for begin in range(0, len(order), 128):
                model.run(None, feeds(order[begin : begin + 128]))

        one_by_one(rows[:20])  # warm-up
        figures[name] = (per_sentence_ms(one_by_one, rows, args.repeats), per_sentence_ms(batched, rows, args.repeats))
    lines = []
    for k, regime in enumerate(("one sentence per call", "128 rows per call")):
        ours, base = figures["ours"][k], figures["baseline"][k]
        lines.append(f"tagger speed, {regime} (ms/sentence, 1 thread): {base / ours:.2f}x {args.name} ({ours:.3f} vs {base:.3f})")
        print(lines[-1])
    if args.card:
        from evaluate_ner_pipeline import replace_section

        card = REPO / "models" / "ner_clinical.md"
        section = "## Speed\n" + (
            f"`python benchmarks/bench_ner_tagger.py --baseline DIR --name NAME --card` (onnxruntime, one thread, featurisation\n"
            f"included, {len(rows)} test sentences, best of {args.repeats}; a shared, loaded 2-core machine, so compare the ratio):\n\n"
        ) + "\n".join(f"* {line}" for line in lines) + "\n"
        card.write_text(replace_section(card.read_text(encoding="utf-8"), "## Speed", section), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
