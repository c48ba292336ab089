"""What core/records/medspacy_adapter.py buys: the notes pipeline with its fast ConText (pivoted
trigger matcher + indexed graph) against the same pipeline with medSpaCy's own ConText, same
rules, same notes, same process; the annotations must be identical.

    python benchmarks/bench_context_adapter.py [--notes 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO / "models" / "training" / "data" / "text"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notes", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from healthfm_desktop.core.records.pipeline import build_nlp, doc_to_note

    with (DATA / "maccrobat2020.jsonl").open(encoding="utf-8") as handle:
        texts = [json.loads(line)["text"] for line in handle][: args.notes]
    pipelines = {"fast ConText": build_nlp(fast_context=True), "medSpaCy ConText": build_nlp(fast_context=False)}
    best: dict[str, float] = {}
    results = {}
    for _round in range(args.rounds):
        for name, nlp in pipelines.items():
            start = time.perf_counter()
            notes = [doc_to_note(doc, str(k)).to_json() for k, doc in enumerate(nlp.pipe(texts))]
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
            results[name] = notes
    same = results["fast ConText"] == results["medSpaCy ConText"]
    ratio = best["medSpaCy ConText"] / best["fast ConText"]
    print(f"whole notes pipeline, {len(texts)} MACCROBAT case reports, best of {args.rounds}: {ratio:.2f}x medSpaCy's own ConText "
          f"({best['fast ConText']:.2f} s vs {best['medSpaCy ConText']:.2f} s); identical annotations: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
