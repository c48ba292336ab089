"""Notes pipeline figures, each against a baseline measured in the same process:

* throughput (notes/s) of the full HealthFM pipeline (sentences, vocabularies + rules + ONNX NER,
  PHI, sections, ConText, linking) vs plain medspaCy (TargetMatcher with the same target terms + ConText) with spaCy's
  ``sentencizer`` (the fair baseline) and with its default PyRuSH sentences, on the same case
  reports, medians of alternating runs;
* resident memory over a stream of many notes (spaCy 3.7 has no memory_zone: the pipeline is
  rebuilt once the notes have added enough new strings): RSS at the start of the stream, after
  1k (the warm-up: every text seen once), 5k and 10k notes; growth is measured from 1k. The stream cycles the case reports (and,
  with --extra-notes, more real notes, e.g. the shared MTSamples/Ada JSONL) with every number
  redrawn and a fresh MRN line per note, so that, as in real notes, new strings keep coming;
* negation / historical F1 on the shared NegEx/ConText kit vs medspaCy's ConText with its
  packaged rules (same sentence splitter), beside the published GeneralNegEx / genConText bars;
* MACCROBAT relaxed-overlap micro F1 on our test documents: full pipeline vs the model alone;
* PHI recall per type on the surrogate-PHI notes.

    python benchmarks/bench_notes.py [--notes 60] [--repeats 3] [--memory-notes 10000]
        [--extra-notes <data>/text/mtsamples_subset/mtsamples_subset.jsonl ...] [--only throughput ...]

The throughput lines give both goals: issue 19 asks >= 2x the fair baseline (medspaCy with
spaCy's sentencizer), issue 21 >= 3x plain medspaCy (its default PyRuSH sentences). Each repeat
times every pipeline once, alternating, so their ratios hold under load; the per-repeat ratios
are printed too.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import resource
import statistics
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


_NUMBER = re.compile(r"\d+")


def perturbed_stream(texts: list[str], count: int, seed: int = 7):
    """(id, text) for ``count`` notes: the texts cycled, each number redrawn (same digit count)
    and an MRN line added, so that most notes bring strings the pipeline has not seen."""
    rng = random.Random(seed)
    for i in range(count):
        text = _NUMBER.sub(lambda m: str(rng.randrange(10 ** (len(m.group()) - 1), 10 ** len(m.group()))) if len(m.group()) > 1 else str(rng.randrange(10)), texts[i % len(texts)])
        yield str(i), f"MRN: {rng.randrange(10**7, 10**8)}\n{text}"


def read_texts(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line)["text"] for line in handle if line.strip()]


def plain_medspacy(terms, sentencizer: bool = True):
    """medspaCy's TargetMatcher with the same terms + ConText; sentences by spaCy's rule-based
    ``sentencizer`` (the fair baseline: what a user picks for speed), or by medspaCy's default
    PyRuSH (``sentencizer=False``, for disclosure: PyRuSH is most of that pipeline's time)."""
    import medspacy
    from loguru import logger
    from medspacy.ner import TargetRule

    logger.disable("PyRuSH")
    if sentencizer:
        nlp = medspacy.load(medspacy_enable=["medspacy_target_matcher", "medspacy_context"])
        nlp.add_pipe("sentencizer", first=True)
    else:
        nlp = medspacy.load()  # medspacy_pyrush, medspacy_target_matcher, medspacy_context
    nlp.get_pipe("medspacy_target_matcher").add([TargetRule(term, label) for term, label in terms])
    return nlp


PARTS = ("throughput", "memory", "assertions", "ner", "phi")
GOALS = {"fair": ("medspaCy with spaCy's sentencizer (the fair baseline)", 2.0, "issue 19"),
         "pyrush": ("plain medspaCy (its default PyRuSH sentences)", 3.0, "issue 21")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notes", type=int, default=60, help="case reports timed for throughput")
    parser.add_argument("--repeats", type=int, default=3, help="throughput measurements (each: ours, then the baseline)")
    parser.add_argument("--memory-notes", type=int, default=2000, help="notes streamed for the memory figure")
    parser.add_argument("--extra-notes", type=Path, nargs="*", default=[], help="more JSONL files of notes ({\"text\": ...}) for the memory stream")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="the parts to run (default: all)")
    args = parser.parse_args()

    from healthfm_desktop.core.records.pipeline import build_pipeline

    records = [json.loads(l) for l in (DATA / "maccrobat2020.jsonl").open(encoding="utf-8")]
    texts = [r["text"] for r in records][: args.notes]
    ours = build_pipeline()
    if "throughput" in args.only:
        throughput(ours, texts, args.repeats)
        gc.collect()  # the baselines' memory is not part of the stream's figure
    if "memory" in args.only:
        memory(ours, records, args)
    if "assertions" in args.only:
        assertions(ours)
    by_id = {r["id"]: r for r in records}
    test = [by_id[i] for i in json.loads((DATA / "maccrobat_split.json").read_text())["test"]]
    if "ner" in args.only:
        ner(ours, test)
    if "phi" in args.only:
        phi(ours, test)
    return 0


def throughput(ours, texts: list[str], repeats: int) -> None:
    from healthfm_desktop.core.records.terminology import load_bundled_terms

    terms = load_bundled_terms()
    baselines = {"fair": plain_medspacy(terms), "pyrush": plain_medspacy(terms, sentencizer=False)}
    # warm all (first-call costs are not throughput)
    list(ours.annotate_many([("w", texts[0])]))
    for baseline in baselines.values():
        baseline(texts[0])
    seconds: dict[str, list[float]] = {"ours": [], **{name: [] for name in baselines}}
    loads = []
    for _repeat in range(repeats):  # ABAB: ours, then each baseline, per repeat
        started = time.perf_counter()
        list(ours.annotate_many((str(i), t) for i, t in enumerate(texts)))
        seconds["ours"].append(time.perf_counter() - started)
        for name, baseline in baselines.items():
            started = time.perf_counter()
            for _doc in baseline.pipe(texts):
                pass
            seconds[name].append(time.perf_counter() - started)
        loads.append(os.getloadavg()[0])
    ours_rate = len(texts) / statistics.median(seconds["ours"])
    for name in baselines:
        what, goal, issue = GOALS[name]
        base_rate = len(texts) / statistics.median(seconds[name])
        per_repeat = ", ".join(f"{b / o:.2f}" for o, b in zip(seconds["ours"], seconds[name]))
        ratio = ours_rate / base_rate
        print(f"throughput vs {what}: {ratio:.2f}x ({ours_rate:.1f} vs {base_rate:.1f} notes/s on {len(texts)} MACCROBAT case reports, "
              f"medians of {repeats} alternating runs; per run {per_repeat}; load {min(loads):.1f}-{max(loads):.1f}); "
              f"{issue} goal >= {goal:g}x: {'met' if ratio >= goal else 'NOT met'}", flush=True)


def memory(ours, records, args) -> None:
    """Stream many notes with new strings in each and sample RSS."""
    stream_texts = [r["text"] for r in records] + [t for path in args.extra_notes for t in read_texts(path)]
    checkpoints = sorted({*(k for k in (1000, 5000, 10000) if k <= args.memory_notes), args.memory_notes})
    samples = [(0, rss_mb(), len(ours.nlp.vocab.strings))]
    started = time.perf_counter()
    for k, _note in enumerate(ours.annotate_many(perturbed_stream(stream_texts, args.memory_notes)), start=1):
        if k in checkpoints:
            samples.append((k, rss_mb(), len(ours.nlp.vocab.strings)))
    rate = args.memory_notes / (time.perf_counter() - started)
    print(f"memory over {args.memory_notes} notes ({len(stream_texts)} texts cycled, numbers redrawn; {rate:.1f} notes/s; pipeline rebuilt {ours.rebuilds} times): RSS "
          + ", ".join(f"{mb:.0f} MB after {k}" for k, mb, _ in samples)
          + "; strings in the vocabulary at those points " + ", ".join(str(n) for *_, n in samples))
    warm = samples[1] if len(samples) > 2 else samples[0]  # the first 1,000 notes are the warm-up (every text seen once)
    line(f"memory growth from note {warm[0]} to {samples[-1][0]} (MB RSS)", samples[-1][1], warm[1], f"RSS after {warm[0]} notes", ".0f")


def assertions(ours) -> None:
    from healthfm_desktop.core.records.evaluation import evaluate_assertions, read_negex_kit
    from healthfm_desktop.core.records.pipeline import ClinicalPipeline

    kit = read_negex_kit(DATA / "negex_context.jsonl")
    ours_kit = evaluate_assertions(ours, kit)
    medspacy_context = ClinicalPipeline(use_model=False, use_vocabulary=False, context_extra=False)  # medspaCy's packaged rules only
    base_kit = evaluate_assertions(medspacy_context, kit)
    n = ours_kit["negated"]
    print(f"NegEx kit (shared part, {len(kit)} sentences): negation P {n['precision']:.3f} R {n['recall']:.3f} F1 {n['f1']:.3f} (95% CI {n['ci95'][0]:.3f}-{n['ci95'][1]:.3f}); historical F1 {ours_kit['historical']['f1']:.3f} (95% CI {ours_kit['historical']['ci95'][0]:.3f}-{ours_kit['historical']['ci95'][1]:.3f}); hypothetical F1 {ours_kit['hypothetical']['f1']:.3f}; family F1 {ours_kit['family']['f1']:.3f}")
    line("negation F1", n["f1"], base_kit["negated"]["f1"], "medspaCy ConText packaged rules")
    line("negation F1", n["f1"], 0.981, "genConText published (full kit)")
    line("negation F1", n["f1"], 0.947, "GeneralNegEx published (full kit)")
    line("historical F1", ours_kit["historical"]["f1"], base_kit["historical"]["f1"], "medspaCy ConText packaged rules")


def ner(ours, test) -> None:
    from healthfm_desktop.core.records.evaluation import evaluate_ner
    from healthfm_desktop.core.records.labels import MACCROBAT_TO_LABEL
    from healthfm_desktop.core.records.pipeline import ClinicalPipeline

    full = evaluate_ner(ours, test, MACCROBAT_TO_LABEL)
    model_only = ClinicalPipeline(use_vocabulary=False)
    alone = evaluate_ner(model_only, test, MACCROBAT_TO_LABEL)
    print(f"MACCROBAT test ({len(test)} docs) relaxed-overlap micro F1 {full['micro']['f1']:.3f} (95% CI {full['ci95'][0]:.3f}-{full['ci95'][1]:.3f}), P {full['micro']['precision']:.3f} R {full['micro']['recall']:.3f}")
    for label, s in full["per_label"].items():
        print(f"  {label:<10} P {s['precision']:.3f} R {s['recall']:.3f} F1 {s['f1']:.3f} n={s['support']}")
    line("MACCROBAT relaxed micro F1", full["micro"]["f1"], alone["micro"]["f1"], "rules + ONNX model without vocabularies")


def phi(ours, test) -> None:
    phi_notes = [json.loads(l) for l in (REPO / "tests" / "data" / "text" / "phi_surrogate_notes.jsonl").open()]
    notes = {n.id: n for n in ours.annotate_many((r["id"], r["text"]) for r in phi_notes)}
    totals: dict[str, list[int]] = {}
    for record in phi_notes:
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


if __name__ == "__main__":
    sys.exit(main())
