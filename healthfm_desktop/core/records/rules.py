"""Regular-expression rules for medication attributes (DOSE, ROUTE, FREQUENCY, DURATION) and
lab values (LAB_VALUE). They run on the raw text, which is much faster than token patterns for
this kind of surface form, and their spans are snapped to tokens by the pipeline."""

from __future__ import annotations

import re
from collections.abc import Iterator

_UNITS = (
    r"(?:mg|mcg|µg|ug|g|kg|ng|ml|mL|l|L|units?|u|U|iu|IU|meq|mEq|mmol|mol|tabs?|tablets?|caps?|capsules?|puffs?|drops?|"
    r"sprays?|patch(?:es)?|appl|application|%|mg/kg|mcg/kg|mg/m2|mg/m²|units/kg|mg/ml|mg/mL|mcg/hr|mg/hr|ml/hr|mL/h|ml/h|gtt)"
)
_NUMBER = r"(?:\d+(?:[.,]\d+)?(?:\s*(?:-|–|to)\s*\d+(?:[.,]\d+)?)?)"
_WORD_NUMBER = r"(?:one|two|three|four|five|six|half|a half)"

DOSE = re.compile(
    rf"\b(?:{_NUMBER}\s*{_UNITS}(?:\s*/\s*(?:day|d|dose|kg|m2|h|hr|hour|min|ml|mL))?(?![A-Za-z])"
    rf"|{_NUMBER}\s*(?:-|to)?\s*{_NUMBER}?\s*(?:tabs?|tablets?|caps?|capsules?|puffs?|drops?)\b"
    rf"|(?:{_WORD_NUMBER})\s*\(\d+\)\s*(?:tabs?|tablets?|caps?|capsules?|puffs?|drops?|appl|injection)?)",
    re.IGNORECASE,
)

ROUTE = re.compile(
    r"\b(?:p\.?o\.?|per os|by mouth|orally|oral|i\.?v\.?|intravenous(?:ly)?|i\.?m\.?|intramuscular(?:ly)?|"
    r"s\.?c\.?|subcut(?:aneous(?:ly)?)?|sub-?q|s\.?q\.?|topical(?:ly)?|inhaled|inhalation|nebuli[sz]ed|"
    r"sublingual(?:ly)?|s\.?l\.?|p\.?r\.?|per rectum|rectal(?:ly)?|transdermal(?:ly)?|intrathecal(?:ly)?|"
    r"intranasal(?:ly)?|ophthalmic|intravitreal(?:ly)?|epidural(?:ly)?|intra-?arterial(?:ly)?|via g-?tube|via ng ?tube)\b",
    re.IGNORECASE,
)

FREQUENCY = re.compile(
    r"\b(?:q\.?\s?\d+(?:\s*-\s*\d+)?\s?(?:h|hr|hrs|hours?)\b|q\.?d\.?|q\.?o\.?d\.?|b\.?i\.?d\.?|t\.?i\.?d\.?|q\.?i\.?d\.?|"
    r"q\.?h\.?s\.?|h\.?s\.?|q\.?a\.?m\.?|q\.?p\.?m\.?|p\.?r\.?n\.?|stat|daily|nightly|weekly|monthly|"
    r"every\s+(?:other\s+)?(?:\d+(?:\s*(?:-|to)\s*\d+)?\s+)?(?:hours?|days?|weeks?|months?|morning|evening|night)|"
    r"(?:once|twice|three times|four times|\d+\s+times)\s+(?:a|per|each|every)\s+(?:day|week|month)|"
    r"(?:once|twice)\s+daily|(?:at|before)\s+(?:bedtime|meals)|as needed|with meals|"
    r"\d+\s*(?:-|–|to)?\s*\d*\s*times\s+(?:a|per)\s+(?:day|week)|per\s+day|a\s+day)\b",
    re.IGNORECASE,
)

DURATION = re.compile(
    r"\b(?:for|x|×|over|during)\s+(?:the\s+(?:next|past|last)\s+)?(?:\d+(?:\s*(?:-|–|to)\s*\d+)?|one|two|three|four|five|six|seven|eight|nine|ten|several|a few)\s*"
    r"(?:-\s*)?(?:days?|weeks?|months?|years?|hours?|hrs?|wks?|d|wk)\b",
    re.IGNORECASE,
)

# A measured value: number + unit, or qualitative results. The lab-test name is found by the
# vocabularies/model; LAB_VALUE is only the value part.
LAB_VALUE = re.compile(
    r"(?<![\w.])(?:[<>≤≥]=?\s*)?\d+(?:[.,]\d+)?\s*(?:x\s*10\^?\d+\s*/\s*[lL]|"
    r"mmol/l|mmol/L|mg/dl|mg/dL|g/dl|g/dL|g/l|g/L|µmol/l|µmol/L|umol/L|umol/l|mEq/L|meq/l|IU/L|iu/l|U/L|u/l|"
    r"ng/ml|ng/mL|pg/ml|pg/mL|µg/l|mm\s?Hg|mmHg|bpm|beats/min|breaths/min|/min|%|°C|° C|°F|cm|mm|"
    r"/mm3|/µl|/ul|/µL|/uL|cells/µl|mg/l|mg/L|mL/min|ml/min(?:/1\.73\s?m2)?|kg/m2|kg|g|sec|s|seconds)(?![A-Za-z])"
    r"|\b\d{2,3}\s*/\s*\d{2,3}\s*(?:mm\s?Hg)?(?!\s*[/\d])"
    r"|\b(?:elevated|increased|decreased|low|high|normal|abnormal|positive|negative|unremarkable|within normal limits)\b(?=\s+(?:level|levels|value|count|titer|result))",
    re.IGNORECASE,
)

ATTRIBUTE_RULES = {"DOSE": DOSE, "ROUTE": ROUTE, "FREQUENCY": FREQUENCY, "DURATION": DURATION, "LAB_VALUE": LAB_VALUE}


def find_rule_spans(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, label) for every rule match; overlaps are resolved by the pipeline."""
    for label, pattern in ATTRIBUTE_RULES.items():
        for match in pattern.finditer(text):
            start, end = match.span()
            while end > start and text[end - 1] in " \t\n.,;:":
                end -= 1
            if end > start:
                yield start, end, label
