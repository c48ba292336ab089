"""MACCROBAT figures of the ner_clinical model *inside* the notes pipeline, on the test documents
of maccrobat_split.json: the full pipeline (user terms > PHI rules > attribute/lab rules >
bundled vocabularies > the ONNX tagger) and rules + tagger without the vocabularies. Relaxed-
overlap micro F1 with 95% bootstrap CIs over documents, per label.

Run after train_ner.py: it adds the figures to the model card (section "The model inside the
pipeline") and to the manifest (metrics.pipeline), whose sha256 it refreshes.

    python models/training/evaluate_ner_pipeline.py              # prints, updates card + manifest
    python models/training/evaluate_ner_pipeline.py --dry-run    # prints only
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
DATA = REPO / "models" / "training" / "data" / "text"
SECTION = "## The model inside the pipeline"


def replace_section(card: str, heading: str, section: str) -> str:
    """The card with the section under ``heading`` (up to the next "## " heading) replaced by
    ``section``, or with ``section`` appended when the card has none."""
    if heading not in card:
        return card.rstrip() + "\n\n" + section
    before, rest = card.split(heading, 1)
    after = rest.split("\n## ", 1)
    tail = "\n## " + after[1] if len(after) > 1 else ""
    return before + section.rstrip() + "\n" + tail


def _rows(result: dict) -> str:
    return "\n".join(f"| {label} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['support']} |" for label, s in result["per_label"].items())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=REPO / "models", help="folder of ner_clinical.onnx/.json/.md")
    parser.add_argument("--limit", type=int, help="only the first N test documents (a quick look)")
    parser.add_argument("--dry-run", action="store_true", help="print only; leave card and manifest alone")
    args = parser.parse_args(argv)

    from healthfm_desktop.core.inference.registry import load_registry, write_manifest
    from healthfm_desktop.core.records.evaluation import evaluate_ner
    from healthfm_desktop.core.records.labels import MACCROBAT_TO_LABEL
    from healthfm_desktop.core.records.pipeline import ClinicalPipeline

    split = json.loads((DATA / "maccrobat_split.json").read_text())
    records = {r["id"]: r for r in (json.loads(line) for line in (DATA / "maccrobat2020.jsonl").open(encoding="utf-8"))}
    test = [records[i] for i in split["test"]][: args.limit]
    dev = [records[i] for i in split["dev"]]
    registry = load_registry(args.models)
    pipeline = ClinicalPipeline(registry=registry)
    full = evaluate_ner(pipeline, test, MACCROBAT_TO_LABEL)
    on_dev = evaluate_ner(pipeline, dev, MACCROBAT_TO_LABEL)  # the documents its rules were chosen on
    rules_and_model = ClinicalPipeline(use_vocabulary=False, registry=registry)
    without_vocabulary = evaluate_ner(rules_and_model, test, MACCROBAT_TO_LABEL)
    for name, result in (("full pipeline", full), ("rules + model, no vocabularies", without_vocabulary)):
        m = result["micro"]
        print(f"MACCROBAT test ({len(test)} docs), {name}: relaxed-overlap micro F1 {m['f1']:.3f} (95% CI {result['ci95'][0]:.3f}-{result['ci95'][1]:.3f}), P {m['precision']:.3f} R {m['recall']:.3f}")
    print(f"MACCROBAT dev ({len(dev)} docs, used to choose the rules), full pipeline: relaxed-overlap micro F1 {on_dev['micro']['f1']:.3f}")
    for label, s in full["per_label"].items():
        print(f"  {label:<10} P {s['precision']:.3f} R {s['recall']:.3f} F1 {s['f1']:.3f} n={s['support']}")
    if args.dry_run:
        return 0

    manifest_path = args.models / "ner_clinical.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["metrics"]["pipeline"] = {
        "test_split": f"MACCROBAT shared test documents ({len(test)}), full notes pipeline (user terms > PHI rules > attribute/lab rules > bundled vocabularies > this model)",
        "relaxed_overlap_micro_f1": round(full["micro"]["f1"], 4),
        "relaxed_overlap_micro_f1_ci95": [round(v, 4) for v in full["ci95"]],
        "relaxed_overlap_micro_precision": round(full["micro"]["precision"], 4),
        "relaxed_overlap_micro_recall": round(full["micro"]["recall"], 4),
        "per_label": {k: {m: round(v, 4) for m, v in s.items()} for k, s in full["per_label"].items()},
        "dev_relaxed_overlap_micro_f1": round(on_dev["micro"]["f1"], 4),
        "rules_and_model_without_vocabularies_micro_f1": round(without_vocabulary["micro"]["f1"], 4),
        "rules_and_model_without_vocabularies_ci95": [round(v, 4) for v in without_vocabulary["ci95"]],
    }
    write_manifest(manifest_path, manifest)
    card_path = args.models / "ner_clinical.md"
    m = full["micro"]
    section = f"""{SECTION}
Measured by `python models/training/evaluate_ner_pipeline.py` on the same {len(test)} test documents:
the full pipeline (user terms > PHI rules > attribute/lab rules > bundled vocabularies > this model)
reaches relaxed micro F1 **{m['f1']:.3f}** (95% CI {full['ci95'][0]:.3f}–{full['ci95'][1]:.3f}; P {m['precision']:.3f}, R {m['recall']:.3f}),
against {without_vocabulary['micro']['f1']:.3f} ({without_vocabulary['ci95'][0]:.3f}–{without_vocabulary['ci95'][1]:.3f}) for rules + this model without the vocabularies
(release 2.0.0, without static word vectors: 0.730 and 0.706; first release: 0.665 and 0.602). On the {len(dev)} dev documents, on which the pipeline's rules and
decoding were chosen, the full pipeline reaches {on_dev['micro']['f1']:.3f}
(`PYTHONPATH=. python benchmarks/maccrobat_ner.py dev|test` prints either part).{'' if m['f1'] >= 0.75 else ' The issue-21 goal (0.75) is not reached.'}
The pipeline keeps the tagger's per-token argmax where it is valid BIO and decodes any other
sentence with the BIO Viterbi search of `core.records.tag_decoding`.
Per label (full pipeline, test documents):

| label | precision | recall | F1 | gold spans |
|---|---|---|---|---|
{_rows(full)}

The vocabularies' MACCROBAT terms come from the training documents only.
"""
    card_path.write_text(replace_section(card_path.read_text(encoding="utf-8"), SECTION, section), encoding="utf-8")
    print(f"updated {card_path} and {manifest_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
