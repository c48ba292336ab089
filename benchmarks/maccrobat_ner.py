"""Relaxed micro F1 and the TEST row of the ClinicalPipeline on a MACCROBAT split portion.

Usage: python benchmarks/maccrobat_ner.py dev|test"""

import json
import sys
from pathlib import Path

from healthfm_desktop.core.records.evaluation import evaluate_ner
from healthfm_desktop.core.records.labels import MACCROBAT_TO_LABEL
from healthfm_desktop.core.records.pipeline import ClinicalPipeline

data = Path(__file__).resolve().parents[1] / "models" / "training" / "data" / "text"
split = json.loads((data / "maccrobat_split.json").read_text())
records = {json.loads(line)["id"]: json.loads(line) for line in (data / "maccrobat2020.jsonl").open()}
result = evaluate_ner(ClinicalPipeline(), [records[i] for i in split[sys.argv[1]]], MACCROBAT_TO_LABEL)
print(sys.argv[1], len(split[sys.argv[1]]), "documents, micro", json.dumps(result["micro"]))
print("TEST", json.dumps(result["per_label"].get("TEST")))
