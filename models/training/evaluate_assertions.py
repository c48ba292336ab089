"""Assertion figures (negated, historical, hypothetical, family/experiencer) of the notes
pipeline's ConText on the NegEx/ConText kit, on its seeded dev / held-out test split.

The split (core.records.evaluation.split_negex_kit: seed NEGEX_SPLIT_SEED, half the sentence
groups held out, stated in models/training/data/text/README.md) keeps tuning honest: rules are
chosen on dev, figures are reported on test. Three rule sets are compared on both portions:

* medspaCy's packaged ConText rules alone (the baseline);
* the shipped rules (medspaCy's + resources/terminology/context_rules_extra.json);
* optionally any other extra-rules file (``--rules``), e.g. a candidate under tuning.

``--ablate`` shows, on dev only, what each extra rule does (leave-one-out: the change in wrong
decisions when it is removed), which is how rules are kept or dropped.

    python models/training/evaluate_assertions.py                       # figures, dev and test
    python models/training/evaluate_assertions.py --ablate              # per-rule evidence on dev
    python models/training/evaluate_assertions.py --markdown docs/assertion_metrics.md
    python models/training/evaluate_assertions.py --limit 60            # a quick look (tests)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from healthfm_desktop.core.records.evaluation import (  # noqa: E402
    NEGEX_SPLIT_SEED,
    NEGEX_TEST_FRACTION,
    evaluate_assertions,
    evaluate_terms,
    read_negex_kit,
    split_negex_kit,
)

KIT = REPO / "models" / "training" / "data" / "text" / "negex_context.jsonl"
ATTRIBUTES = ("negated", "historical", "hypothetical", "family")
NAMES = {"negated": "negation", "historical": "historical", "hypothetical": "hypothetical (temporality 'not particular')", "family": "experiencer (not the patient)"}
PUBLISHED = "published on the full 2,376-sentence kit: GeneralNegEx negation F1 0.947, genConText negation F1 0.981"


def assertion_pipeline(extra_rules: dict | None):
    """A pipeline with sentences, sections and ConText only, its ConText built from medspaCy's
    packaged rules plus ``extra_rules`` (the context_rules_extra.json structure, its target
    rules included; None: none)."""
    from healthfm_desktop.core.records.pipeline import ClinicalPipeline

    pipeline = ClinicalPipeline(use_model=False, use_vocabulary=False)
    pipeline.nlp.remove_pipe("medspacy_context")
    pipeline.nlp.remove_pipe("healthfm_target_context")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rules.json"
        path.write_text(json.dumps(extra_rules or {}), encoding="utf-8")
        # the factories read the rules file while they build the components
        config = {"extra_rules": extra_rules is not None, "extra_rules_file": str(path)}
        pipeline.nlp.add_pipe("healthfm_context", name="medspacy_context", config=config, before="healthfm_portable_doc")
        pipeline.nlp.add_pipe("healthfm_target_context", config=config, after="medspacy_context")
    return pipeline


def shipped_rules() -> dict:
    from healthfm_desktop.core.records.terminology import terminology_dir

    return json.loads((terminology_dir() / "context_rules_extra.json").read_text(encoding="utf-8"))


def summary(result: dict) -> dict:
    return {
        key: {
            "f1": round(result[key]["f1"], 4),
            "ci95": [round(v, 4) for v in result[key]["ci95"]],
            "precision": round(result[key]["precision"], 4),
            "recall": round(result[key]["recall"], 4),
            "tp": result[key]["tp"], "fp": result[key]["fp"], "fn": result[key]["fn"],
            "positives": result[key]["positives"],
        }
        for key in ATTRIBUTES
    } | {"sentences": result["count"]}


def print_result(name: str, portion: str, result: dict) -> None:
    parts = []
    for key in ATTRIBUTES:
        r = result[key]
        parts.append(f"{key} F1 {r['f1']:.3f} ({r['ci95'][0]:.3f}-{r['ci95'][1]:.3f}; P {r['precision']:.3f} R {r['recall']:.3f}; {r['positives']} pos)")
    print(f"{name:<24} {portion:<5} n={result['count']:<4} " + "; ".join(parts), flush=True)


def ablate(extra: dict, dev: list[dict]) -> list[dict]:
    """Leave-one-out on dev: for each extra rule / override, the wrong decisions (all four
    attributes) without it minus with it; > 0 means dev supports the rule."""
    base_errors = len(evaluate_assertions(assertion_pipeline(extra), dev)["errors"])
    rows = []
    for kind in ("overrides", "context_rules"):
        items = list(extra.get(kind, {}).items()) if kind == "overrides" else list(enumerate(extra.get(kind, [])))
        for key, item in items:
            reduced = json.loads(json.dumps(extra))
            if kind == "overrides":
                del reduced["overrides"][key]
                name = f"override {key!r}"
            else:
                del reduced["context_rules"][key]
                name = f"rule {item['literal']!r} {item['category']} {item.get('direction', 'BIDIRECTIONAL')}"
            errors = len(evaluate_assertions(assertion_pipeline(reduced), dev)["errors"])
            rows.append({"what": name, "kind": kind, "key": key, "dev_errors_saved": errors - base_errors})
            print(f"{errors - base_errors:+4d} dev errors saved by {name}", flush=True)
    print(f"(dev errors with every extra rule: {base_errors})")
    return rows


def markdown(results: dict, dev_n: int, test_n: int) -> str:
    rows = []
    for name, portions in results.items():
        if name.startswith("whole pipeline"):
            continue
        for portion in ("test", "dev"):
            r = portions.get(portion)
            if r is None:
                continue
            cells = " | ".join(f"{r[k]['f1']:.3f} ({r[k]['ci95'][0]:.3f}–{r[k]['ci95'][1]:.3f})" for k in ATTRIBUTES)
            rows.append(f"| {name} | {portion} | {cells} |")
    test = results["shipped rules"]["test"]
    terms = results["whole pipeline, target as --terms"]
    terms_rows = "\n".join(
        f"| {portion} | {t['terms_found']} of {t['sentences']} ({t['terms_share']:.1%}) | "
        + " | ".join(f"{t[k]['f1']:.3f} ({t[k]['ci95'][0]:.3f}–{t[k]['ci95'][1]:.3f})" for k in ("negated", "historical", "family")) + " |"
        for portion, t in terms.items()
    )
    detail = "\n".join(
        f"| {NAMES[k]} | {test[k]['positives']} | {test[k]['precision']:.3f} | {test[k]['recall']:.3f} | {test[k]['f1']:.3f} | {test[k]['ci95'][0]:.3f}–{test[k]['ci95'][1]:.3f} |"
        for k in ATTRIBUTES
    )
    return f"""# Assertion metrics (ConText on the NegEx/ConText kit)

Written by `python models/training/evaluate_assertions.py --markdown docs/assertion_metrics.md`.

**Split.** The shared part of the NegEx/ConText kit (models/training/data/text/negex_context.jsonl,
1,708 sentences with a target) is split by `core.records.evaluation.split_negex_kit`: each
sentence group (the sentence text, lower-cased, spaces collapsed) goes to *test* when
sha256("{NEGEX_SPLIT_SEED}:" + group) read as a fraction of 2^64 is below {NEGEX_TEST_FRACTION}, else to *dev*:
{dev_n} dev / {test_n} test sentences. This split (seed {NEGEX_SPLIT_SEED}) replaced the first one
(seed 20261125), whose test half had been consulted while tuning; the rules of issue 21 were
tuned with `--portion dev` only. Test was scored when the first round of tuning ended (historical
F1 0.695 in the whole-pipeline row), once more after a second round (the history cues and target
rules: 0.712 whole pipeline, 0.726 ConText on the given span), and a **third time**, with the
figures below, after the chronic list items (session of 2026-12-07, chosen on dev only; no test
sentence or error was read between the looks). Three looks at one test part are three chances to
be lucky: read its figures with that in mind. (Earlier sessions had seen every sentence of the
shared part in one role or another; the kit's own 657-sentence holdout is not in the repo.)

**Metric.** Binary F1 per attribute over the kit's targets (target phrase lower-cased: the kit
writes it in capitals); 95% percentile bootstrap intervals over sentences (1,000 rounds).
Hypothetical (temporality "not particular") is predicted from HYPOTHETICAL triggers only: the kit
has no uncertainty gold, so "likely pneumonia" is neither right nor wrong for it. Experiencer =
family/other vs patient; it has very few positives, so its interval is wide.
Two settings: *ConText on the given span* (sentences, sections and ConText run for the kit's
target span, `assert_spans`), and *whole pipeline, target as --terms* (the full pipeline with
model and vocabularies, the target given as the user's term, as `healthfm notes annotate --terms`
does: the share of terms returned as exactly their own span, and the assertions of those spans;
a term not returned counts as not asserted).
Baselines: medspaCy's packaged ConText rules (same sentences, same pipeline), and, {PUBLISHED}
(a different, larger test set, no split: not directly comparable).

**Rules** (resources/terminology/context_rules_extra.json, each with its "why"): medspaCy's
packaged rules plus NegEx/genConText lexicon entries and the issue-21 patterns: post-negation
("X is not seen / cannot be identified / can be ruled out"), pseudo-negation ("no change in the",
"no interval change", "without change", "not only", "no increase"), "are negative for" (forward,
beats medspaCy's backward "are negative"), "positive for" ending negation scopes only, and
genConText's history terminators ("recent", "presents", "currently", "today", ...) ending
historical scopes only (ConTextRule.terminated_by; a TERMINATE rule would end every category);
history cues from pyConText's lexicon and the issue's temporal cues ("old", "known",
"redemonstrated", "have not changed", "the last time", "remote", "previously", "healed",
"N months/years ago"); and target rules (core.records.context.TargetContext): a history cue
inside the finding's own words asserts it ("status post CABG", "psychiatric history") and
substance use is a social-history item wherever it is written ("denies alcohol", "tobacco use"),
where ConText drops a trigger that overlaps its finding; chronic list items: a finding that is
a whole sentence by itself ("HYPERTENSION.", "2. Hyperlipidemia.") and names a chronic condition
of CMS's Chronic Conditions Warehouse list (acute events, anemia and cancers left out) is
historical (the kit's historical = begun more than two weeks before; the list is an outside one,
not read off dev sentences; on dev it took historical F1 0.826 -> 0.869 on the given span, with 4
of its 15 dev decisions wrong: "CONGESTIVE HEART FAILURE.", "CHRONIC OBSTRUCTIVE PULMONARY
DISEASE." and one each of hypertension and coronary artery disease are not historical in the kit).
List scope ("no A, B or C") is ConText's forward scope to the sentence end, cut by "but" and the
other terminators; list items under a past-history header are historical by their section.
What is still missed, by reading dev errors: bare list items of conditions that are not chronic
("PNEUMONIA.", "YEAST INFECTION.", "GOUT.") whose past-history header the kit's sentence does not
give; coded diagnoses ("REFERRING DIAGNOSIS: ... Obesity 278.0; Hypertension 401.9"); typos of a
cue ("the patient's know transposition"). A small learned classifier on dev was not tried: 837
sentences of one hospital's reports, and 101 historical positives, are too few to trust it beyond
this kit.

## Whole pipeline, each target given as the user's term

| portion | terms returned as their own span | negated | historical | experiencer |
|---|---|---|---|---|
{terms_rows}

## Shipped rules on the held-out test portion (ConText on the given span)

| attribute | gold positives | precision | recall | F1 | 95% CI |
|---|---|---|---|---|---|
{detail}

## All rule sets, both portions (F1 and 95% CI)

| rules | portion | negated | historical | hypothetical | experiencer |
|---|---|---|---|---|---|
{chr(10).join(rows)}
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", type=Path, help="another extra-rules file to compare (context_rules_extra.json structure)")
    parser.add_argument("--ablate", action="store_true", help="leave-one-out evidence for each shipped extra rule, on dev only")
    parser.add_argument("--limit", type=int, help="only the first N sentences of each portion (a quick look)")
    parser.add_argument("--markdown", type=Path, help="write the figures as a markdown page")
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    parser.add_argument("--kit", type=Path, default=KIT)
    parser.add_argument("--portion", choices=("dev", "test", "both"), default="both", help="which portion(s) to score: tune with dev only")
    args = parser.parse_args(argv)

    records = read_negex_kit(args.kit)
    dev, test = split_negex_kit(records)
    if args.limit:
        dev, test = dev[: args.limit], test[: args.limit]
    print(f"NegEx/ConText kit: {len(dev)} dev / {len(test)} test sentences (seed {NEGEX_SPLIT_SEED}, test fraction {NEGEX_TEST_FRACTION})")
    if args.ablate:
        ablate(json.loads(args.rules.read_text()) if args.rules else shipped_rules(), dev)
        return 0

    portions = [(name, items) for name, items in (("dev", dev), ("test", test)) if args.portion in (name, "both")]
    rule_sets = {"medspaCy packaged rules": None, "shipped rules": shipped_rules()}
    if args.rules:
        rule_sets[f"rules {args.rules.name}"] = json.loads(args.rules.read_text(encoding="utf-8"))
    results: dict[str, dict] = {}
    for name, extra in rule_sets.items():
        pipeline = assertion_pipeline(extra)
        results[name] = {}
        for portion, items in portions:
            result = evaluate_assertions(pipeline, items)
            print_result(name, portion, result)
            results[name][portion] = summary(result)
    # the whole pipeline (model, vocabularies, rules), each sentence's target given as a user term
    from healthfm_desktop.core.records.pipeline import ClinicalPipeline

    full = ClinicalPipeline()
    results["whole pipeline, target as --terms"] = {}
    for portion, items in portions:
        result = evaluate_terms(full, items)
        print(f"whole pipeline, target as --terms, {portion}: {result['terms_found']} of {result['count']} terms returned as their own span ({result['terms_share']:.1%}); "
              + "; ".join(f"{key} F1 {result[key]['f1']:.3f} ({result[key]['ci95'][0]:.3f}-{result[key]['ci95'][1]:.3f}; {result[key]['positives']} pos)" for key in ("negated", "historical", "family")), flush=True)
        results["whole pipeline, target as --terms"][portion] = {key: {k: result[key][k] for k in ("f1", "precision", "recall", "ci95", "positives")} for key in ("negated", "historical", "family")} | {"terms_found": result["terms_found"], "sentences": result["count"], "terms_share": result["terms_share"]}
    if "test" in results["shipped rules"]:
        shipped = results["shipped rules"]["test"]
        print(f"held-out test: negation F1 {shipped['negated']['f1']:.3f}, historical F1 {shipped['historical']['f1']:.3f}, experiencer F1 {shipped['family']['f1']:.3f} ({PUBLISHED})")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(results, len(dev), len(test)), encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
