"""Notes pipeline figures, each against a baseline measured in the same process:

* throughput (notes/s) of the full HealthFM pipeline (sentences, vocabularies + rules + ONNX NER,
  PHI, sections, ConText, linking) vs a plain medspaCy pipeline (medspacy.load(): PyRuSH
  sentences + TargetMatcher with the same target terms + ConText), on the same case reports;
* resident memory over many notes (spaCy 3.7 has no memory_zone: RSS is sampled instead);
* negation / historical F1 on the shared NegEx/ConText kit vs medspaCy's ConText with its
  packaged rules (same sentence splitter), beside the published GeneralNegEx / genConText bars;
* MACCROBAT relaxed-overlap micro F1 on our test documents: full pipeline vs the model alone;
* PHI recall per type on the surrogate-PHI notes.

    python benchmarks/bench_notes.py [--notes 60] [--memory-notes 2000]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO / "models" / "training" / "data" / "text"


def rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def line(what: str, ours: float, base: float, name: str, fmt: str = ".3f") -> None:
    ratio = ours / base if base else float("inf")
    print(f"{what}: {ratio:.2f}x {name} ({ours:{fmt}} vs {base:{fmt}})", flush=True)


def plain_medspacy(terms):
    import medspacy
    from loguru import logger
    from medspacy.ner import TargetRule

    logger.disable("PyRuSH")
    nlp = medspacy.load()  # medspacy_pyrush, medspacy_target_matcher, medspacy_context
    nlp.get_pipe("medspacy_target_matcher").add([TargetRule(term, label) for term, label in terms])
    return nlp


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notes", type=int, default=60, help="case reports timed for throughput")
    parser.add_argument("--memory-notes", type=int, default=2000, help="notes streamed for the memory figure")
    args = parser.parse_args()

    from healthfm_desktop.core.records.evaluation import evaluate_assertions, evaluate_ner, read_negex_kit
    from healthfm_desktop.core.records.labels import MACCROBAT_TO_LABEL
    from healthfm_desktop.core.records.pipeline import ClinicalPipeline, build_pipeline
    from healthfm_desktop.core.records.terminology import load_bundled_terms

    records = [json.loads(l) for l in (DATA / "maccrobat2020.jsonl").open(encoding="utf-8")]
    texts = [r["text"] for r in records][: args.notes]
    ours = build_pipeline()
    baseline = plain_medspacy(load_bundled_terms())

    # warm both (first-call costs are not throughput)
    list(ours.annotate_many([("w", texts[0])]))
    baseline(texts[0])
    started = time.perf_counter()
    list(ours.annotate_many((str(i), t) for i, t in enumerate(texts)))
    ours_rate = len(texts) / (time.perf_counter() - started)
    started = time.perf_counter()
    for text in texts:
        baseline(text)
    base_rate = len(texts) / (time.perf_counter() - started)
    line(f"throughput on {len(texts)} MACCROBAT case reports (notes/s)", ours_rate, base_rate, "plain medspaCy pipeline", ".1f")

    # memory: stream many notes (the case reports, cycled) and sample RSS
    samples = []
    stream = ((str(i), records[i % len(records)]["text"]) for i in range(args.memory_notes))
    for k, _note in enumerate(ours.annotate_many(stream), start=1):
        if k in (args.memory_notes // 4, args.memory_notes // 2, args.memory_notes):
            samples.append((k, rss_mb(), len(ours.nlp.vocab.strings)))
    first, last = samples[0], samples[-1]
    print(f"memory: RSS {', '.join(f'{mb:.0f} MB after {k}' for k, mb, _ in samples)} notes; StringStore {first[2]} -> {last[2]} strings")
    line(f"memory growth from note {first[0]} to {last[0]} (MB RSS)", last[1], first[1], "RSS earlier in the stream", ".0f")

    # assertions on the whole shared kit
    kit = read_negex_kit(DATA / "negex_context.jsonl")
    ours_kit = evaluate_assertions(ours, kit)
    medspacy_context = ClinicalPipeline(use_model=False, use_vocabulary=False)
    medspacy_context.nlp.remove_pipe("medspacy_context")
    from healthfm_desktop.core.records.context import build_context

    build_context(medspacy_context.nlp, extra=False)  # medspaCy's packaged rules only
    base_kit = evaluate_assertions(medspacy_context, kit)
    n = ours_kit["negated"]
    print(f"NegEx kit (shared part, {len(kit)} sentences): negation P {n['precision']:.3f} R {n['recall']:.3f} F1 {n['f1']:.3f} (95% CI {n['ci95'][0]:.3f}-{n['ci95'][1]:.3f}); historical F1 {ours_kit['historical']['f1']:.3f} (95% CI {ours_kit['historical']['ci95'][0]:.3f}-{ours_kit['historical']['ci95'][1]:.3f}); hypothetical F1 {ours_kit['hypothetical']['f1']:.3f}; family F1 {ours_kit['family']['f1']:.3f}")
    line("negation F1", n["f1"], base_kit["negated"]["f1"], "medspaCy ConText packaged rules")
    line("negation F1", n["f1"], 0.981, "genConText published (full kit)")
    line("negation F1", n["f1"], 0.947, "GeneralNegEx published (full kit)")
    line("historical F1", ours_kit["historical"]["f1"], base_kit["historical"]["f1"], "medspaCy ConText packaged rules")

    # NER on MACCROBAT test documents
    split = json.loads((DATA / "maccrobat_split.json").read_text())
    by_id = {r["id"]: r for r in records}
    test = [by_id[i] for i in split["test"]]
    full = evaluate_ner(ours, test, MACCROBAT_TO_LABEL)
    model_only = ClinicalPipeline(use_vocabulary=False)
    model_only.nlp.get_pipe("healthfm_entities").user_matcher = None
    alone = evaluate_ner(model_only, test, MACCROBAT_TO_LABEL)
    print(f"MACCROBAT test ({len(test)} docs) relaxed-overlap micro F1 {full['micro']['f1']:.3f} (95% CI {full['ci95'][0]:.3f}-{full['ci95'][1]:.3f}), P {full['micro']['precision']:.3f} R {full['micro']['recall']:.3f}")
    for label, s in full["per_label"].items():
        print(f"  {label:<10} P {s['precision']:.3f} R {s['recall']:.3f} F1 {s['f1']:.3f} n={s['support']}")
    line("MACCROBAT relaxed micro F1", full["micro"]["f1"], alone["micro"]["f1"], "rules + ONNX model without vocabularies")

    # PHI recall on surrogate notes
    phi = [json.loads(l) for l in (REPO / "tests" / "data" / "text" / "phi_surrogate_notes.jsonl").open()]
    notes = {n.id: n for n in ours.annotate_many((r["id"], r["text"]) for r in phi)}
    totals: dict[str, list[int]] = {}
    for record in phi:
        for span in record["spans"]:
            hit = any(e.label == span["label"] and e.start < span["end"] and span["start"] < e.end for e in notes[record["id"]].entities)
            totals.setdefault(span["label"], [0, 0])
            totals[span["label"]][0] += hit
            totals[span["label"]][1] += 1
    print("PHI recall (surrogate notes): " + ", ".join(f"{k} {h / t:.3f} ({h}/{t})" for k, (h, t) in sorted(totals.items())))
    all_hits = sum(h for h, _ in totals.values())
    all_total = sum(t for _, t in totals.values())
    line("PHI recall overall", all_hits / all_total, 0.95, "target")
    phi_in_reports = sum(e.label.startswith("PHI_") for note in ours.annotate_many((r["id"], r["text"]) for r in test) for e in note.entities)
    print(f"PHI spans flagged in {len(test)} MACCROBAT case reports (published, de-identified text): {phi_in_reports}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
