"""Rebuild the bundled term lists of the notes pipeline (see README.md here for licenses).

    python resources/terminology/build_terminology.py --drug-dictionary PATH/drug_ner_dictionary.pkl.bz2

* medications.tsv  <- drug-named-entity-recognition 2.0.9 (MIT) dictionary: names and
  synonyms of drugs that have a MedlinePlus or NHS medicine page (i.e. real medicines, not
  every MeSH chemical); variants shorter than 4 characters or with commas are dropped.
* maccrobat_terms.tsv <- MACCROBAT2020 (CC BY 4.0) training documents only (maccrobat_split.json),
  mapped labels; a term is kept when it was annotated with one label at least 80% of the
  time and at least half of its occurrences in the training text are annotated.
* ncbi_disease_terms.tsv <- NCBI disease corpus training mentions (public domain), PROBLEM.
"""

from __future__ import annotations

import argparse
import bz2
import json
import pickle
import sys
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
DATA = REPO / "models" / "training" / "data" / "text"
OUT = Path(__file__).resolve().parent

from healthfm_desktop.core.records.labels import MACCROBAT_TO_LABEL, NCBI_TO_LABEL  # noqa: E402


class _DataOnlyUnpickler(pickle.Unpickler):
    """The dictionary is plain dicts/lists/sets/str: refuse anything that would run code."""

    def find_class(self, module, name):
        if module == "builtins" and name in {"set", "frozenset", "list", "dict", "tuple"}:
            return getattr(__import__("builtins"), name)
        raise pickle.UnpicklingError(f"refused {module}.{name}")


def clean(term: str) -> str:
    return " ".join(term.strip().split()).lower()


def build_medications(path: Path) -> list[str]:
    data = _DataOnlyUnpickler(bz2.open(path)).load()
    variants, canonical = data["drug_variant_to_canonical"], data["drug_canonical_to_data"]
    keep = set()
    for variant, names in variants.items():
        term = clean(variant)
        if len(term) < 4 or "," in term or "\t" in term:
            continue
        if any(("medline_plus_id" in canonical.get(c, {}) or "nhs_url" in canonical.get(c, {})) for c in names):
            keep.add(term)
    return sorted(keep)


def build_maccrobat(nlp) -> list[tuple[str, str]]:
    from spacy.matcher import PhraseMatcher

    split = json.loads((DATA / "maccrobat_split.json").read_text())
    train = set(split["train"])
    records = [json.loads(line) for line in open(DATA / "maccrobat2020.jsonl", encoding="utf-8")]
    records = [r for r in records if r["id"] in train]
    by_term: dict[str, Counter] = defaultdict(Counter)
    for record in records:
        for span in record["spans"]:
            label = MACCROBAT_TO_LABEL.get(span["label"])
            if label and not span["attrs"].get("fragments"):
                term = clean(record["text"][span["start"] : span["end"]])
                if len(term) >= 3 and not term.isdigit():
                    by_term[term][label] += 1
    matcher = PhraseMatcher(nlp.vocab, attr="LOWER")
    for term in by_term:
        matcher.add(term, [nlp.make_doc(term)])
    occurrences: Counter = Counter()
    for record in records:
        doc = nlp.make_doc(record["text"])
        for match_id, _s, _e in matcher(doc):
            occurrences[nlp.vocab.strings[match_id]] += 1
    kept = []
    for term, labels in by_term.items():
        label, count = labels.most_common(1)[0]
        annotated = sum(labels.values())
        if count / annotated < 0.8 or annotated / max(occurrences[term], 1) < 0.5:
            continue
        if label in {"DOSE", "FREQUENCY", "DURATION", "LAB_VALUE"}:
            continue  # values and schedules are matched by rules, not a word list
        kept.append((term, label))
    return sorted(kept)


def build_ncbi() -> list[str]:
    terms = set()
    for line in open(DATA / "ncbi_disease_train.jsonl", encoding="utf-8"):
        record = json.loads(line)
        for span in record["spans"]:
            if span["label"] in NCBI_TO_LABEL:
                term = clean(record["text"][span["start"] : span["end"]])
                if len(term) >= 4:
                    terms.add(term)
    return sorted(terms)


def main() -> int:
    import spacy

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drug-dictionary", type=Path, help="drug_ner_dictionary.pkl.bz2 from the drug-named-entity-recognition 2.0.9 wheel")
    args = parser.parse_args()
    nlp = spacy.blank("en")
    if args.drug_dictionary:
        meds = build_medications(args.drug_dictionary)
        (OUT / "medications.tsv").write_text("".join(f"{t}\tMEDICATION\n" for t in meds), encoding="utf-8")
        print(f"medications.tsv: {len(meds)} terms")
    maccrobat = build_maccrobat(nlp)
    (OUT / "maccrobat_terms.tsv").write_text("".join(f"{t}\t{label}\n" for t, label in maccrobat), encoding="utf-8")
    print(f"maccrobat_terms.tsv: {len(maccrobat)} terms {Counter(label for _, label in maccrobat)}")
    ncbi = build_ncbi()
    (OUT / "ncbi_disease_terms.tsv").write_text("".join(f"{t}\tPROBLEM\n" for t in ncbi), encoding="utf-8")
    print(f"ncbi_disease_terms.tsv: {len(ncbi)} terms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
