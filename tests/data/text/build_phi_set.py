"""Build phi_surrogate_notes.jsonl: real MTSamples transcriptions (no PHI of their own) with
surrogate PHI inserted at known offsets, the only way to measure PHI recall without a public
de-identification gold set (see README.md). Run once, by hand:

    python tests/data/text/build_phi_set.py /path/to/shared/data/text/mtsamples_subset/mtsamples_subset.jsonl

The surrogate values come from their own lists here (given names partly outside the detector's
list, formats the detector was not tuned on), with a fixed seed."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "phi_surrogate_notes.jsonl"
FIRST = ["Maria", "Dwayne", "Keiko", "Tomasz", "Aaliyah", "Bernard", "Ingrid", "Rosalind", "Olusegun", "Priya", "Heather", "Gregory", "Xavier", "Linnea", "Mateo"]
LAST = ["Okafor", "Lindqvist", "Brennan", "Tanaka", "Kowalski", "Delgado", "Whitfield", "Nakamura", "Abernathy", "Castellano", "Ferreira", "Holloway"]
STREETS = ["Maple Avenue", "Birch Lane", "Harbor Road", "Cedar Street", "Willow Drive", "Summit Boulevard"]
CITIES = [("Portland", "OR"), ("Dayton", "OH"), ("Tucson", "AZ"), ("Albany", "NY"), ("Fresno", "CA"), ("Madison", "WI")]
HOSPITALS = ["St. Agnes Hospital", "Riverside Medical Center", "Lakeview Community Hospital", "Mercy Clinic"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]


def date_string(rng: random.Random) -> str:
    y, m, d = rng.randint(1990, 2023), rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice([f"{m:02d}/{d:02d}/{y}", f"{m}/{d}/{str(y)[2:]}", f"{y}-{m:02d}-{d:02d}", f"{MONTHS[m - 1]} {d}, {y}", f"{d} {MONTHS[m - 1][:3]} {y}"])


def name_string(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def insertions(rng: random.Random):
    """(template, {slot: (label, value)}) pieces; the text is built around them."""
    name, doctor = name_string(rng), f"{rng.choice(['Dr.', 'Dr'])} {rng.choice(LAST)}"
    city, state = rng.choice(CITIES)
    header = [
        ("Patient: {n}\n", {"n": ("PHI_NAME", name)}),
        ("MRN: {i}\n", {"i": ("PHI_ID", str(rng.randint(1000000, 99999999)))}),
        ("Date of service: {d}\n", {"d": ("PHI_DATE", date_string(rng))}),
    ]
    body = [
        ("The patient was referred by {doc}. ", {"doc": ("PHI_NAME", doctor)}),
        ("She can be reached at {p}. ", {"p": ("PHI_CONTACT", rng.choice([f"({rng.randint(200, 999)}) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}", f"{rng.randint(200, 999)}-{rng.randint(200, 999)}-{rng.randint(1000, 9999)}"]))}),
        ("Home address: {a}, {c}. ", {"a": ("PHI_LOCATION", f"{rng.randint(1, 9999)} {rng.choice(STREETS)}"), "c": ("PHI_LOCATION", f"{city}, {state} {rng.randint(10000, 99999)}")}),
        ("Previously treated at {h} on {d}. ", {"h": ("PHI_LOCATION", rng.choice(HOSPITALS)), "d": ("PHI_DATE", date_string(rng))}),
        ("Her mother is {age} years old. ", {"age": ("PHI_AGE", str(rng.randint(90, 104)))}),
        ("Records sent to {e}. ", {"e": ("PHI_CONTACT", f"{rng.choice(LAST).lower()}.{rng.choice(FIRST).lower()}@example-clinic.org")}),
        ("SSN {s} on file. ", {"s": ("PHI_ID", f"{rng.randint(100, 899)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}")}),
    ]
    footer = [("\nDictated by: {n}, M.D.\n", {"n": ("PHI_NAME", name_string(rng))})]
    return header, rng.sample(body, 4), footer


def fill(template: str, slots: dict, offset: int, spans: list) -> str:
    out, cursor = "", 0
    import re

    for match in re.finditer(r"\{(\w+)\}", template):
        out += template[cursor : match.start()]
        label, value = slots[match.group(1)]
        spans.append({"start": offset + len(out), "end": offset + len(out) + len(value), "label": label})
        out += value
        cursor = match.end()
    return out + template[cursor:]


def main() -> int:
    source = Path(sys.argv[1])
    rng = random.Random(20261125)
    notes = [json.loads(line) for line in source.open(encoding="utf-8")]
    notes = [n for n in notes if 800 < len(n["text"]) < 6000]
    chosen = rng.sample(notes, 30)
    with OUT.open("w", encoding="utf-8") as handle:
        for note in chosen:
            header, body, footer = insertions(rng)
            spans: list = []
            text = ""
            for template, slots in header:
                text += fill(template, slots, len(text), spans)
            original = note["text"][:1500]
            sentences = original.split(". ")
            cut = max(1, len(sentences) // 2)
            text += ". ".join(sentences[:cut]) + ". "
            for template, slots in body:
                text += fill(template, slots, len(text), spans)
            text += ". ".join(sentences[cut:])
            for template, slots in footer:
                text += fill(template, slots, len(text), spans)
            for s in spans:
                assert text[s["start"] : s["end"]]
            handle.write(json.dumps({"id": note["id"], "text": text, "spans": spans, "meta": {"source": "MTSamples (mtsamples.com via kavyamistry/Text-Classification-of-Medical-Transcripts @ 7188940)", "phi": "surrogate, inserted"}}) + "\n")
    print(f"wrote {OUT} ({len(chosen)} notes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
