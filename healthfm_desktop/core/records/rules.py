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
# vocabularies/model; LAB_VALUE is only the value part. A length ("a 2 cm mass", "3 mm") is a
# size, not a lab value: cm/mm are left out (on the MACCROBAT train + dev documents 106 of 151
# such matches were sizes, areas or volumes); the tagger still reads a length in context. Bare
# grams ("2 g") are a dose or a weight (a concentration has its g/dL, g/L).
LAB_VALUE = re.compile(
    r"(?<![\w.])(?:[<>≤≥]=?\s*)?\d+(?:[.,]\d+)?\s*(?:x\s*10\^?\d+\s*/\s*[lL]|"
    r"mmol/l|mmol/L|mg/dl|mg/dL|g/dl|g/dL|g/l|g/L|µmol/l|µmol/L|umol/L|umol/l|mEq/L|meq/l|IU/L|iu/l|U/L|u/l|"
    r"ng/ml|ng/mL|pg/ml|pg/mL|µg/l|mm\s?Hg|mmHg|bpm|beats/min|breaths/min|/min|%|°C|° C|°F|"
    r"/mm3|/µl|/ul|/µL|/uL|cells/µl|mg/l|mg/L|mL/min|ml/min(?:/1\.73\s?m2)?|kg/m2|kg|sec|s|seconds)(?![A-Za-z])"
    r"|\b\d{2,3}\s*/\s*\d{2,3}\s*(?:mm\s?Hg)?(?!\s*[/\d])"
    r"|\b(?:elevated|increased|decreased|low|high|normal|abnormal|positive|negative|unremarkable|within normal limits)\b(?=\s+(?:level|levels|value|count|titer|result))",
    re.IGNORECASE,
)

# a bare number right after a test's wording ("platelet count was 473", "a ratio of 7.4"): a lab
# value without its unit (on the MACCROBAT train documents 42 of 43 matches were lab values);
# not a number followed by a word or a unit (an age, a duration, a dose)
BARE_LAB_VALUE = re.compile(
    r"(?<!age )\b(?:count|level|levels|concentration|titer|titre|ratio|index|score|value|was|were|of)\s"
    r"(?P<value>(?:[<>≤≥]\s*)?\d+(?:[.,]\d+)?)(?![\w/%:-]|[.,]\d|\s*(?:[^\W\d_]|°|%|×))",
    re.IGNORECASE,
)

ATTRIBUTE_RULES = {"DOSE": DOSE, "ROUTE": ROUTE, "FREQUENCY": FREQUENCY, "DURATION": DURATION, "LAB_VALUE": LAB_VALUE}


# a route word that names a body part or an ECG measure there, not how a drug is given
# ("rectal cancer", "oral cavity", "subcutaneous emphysema", "stage IV", "PR interval")
_NOT_ROUTE_AFTER = re.compile(
    r"\s*(?:cavity|mucosa\w*|lesions?|ulcers?|ulceration|hygiene|intake|thrush|candidiasis|cancer|carcinoma|mass|tumou?r|"
    r"polyps?|bleeding|wall|examination|exam|biopsy|surgery|tissue|emphysema|nodules?|fat|abscess|interval|segment|prolongation)\b",
    re.IGNORECASE,
)
_ROMAN_BEFORE = re.compile(r"\b(?:stage|grade|type|class|complex|phase|factor|group|level|nerve|cn|degree|lead)\s*$", re.IGNORECASE)
_ADJECTIVE_ROUTES = frozenset({"rectal", "subcutaneous", "oral", "pr", "p.r", "p.r.", "iv", "sc", "s.c", "sl"})


def _is_route(text: str, start: int, end: int) -> bool:
    word = text[start:end].lower()
    if word in _ADJECTIVE_ROUTES and _NOT_ROUTE_AFTER.match(text, end):
        return False
    if word in ("iv", "i.v", "i.v.") and text[start:end].isupper() and _ROMAN_BEFORE.search(text, max(0, start - 20), start):
        return False
    return True


def find_rule_spans(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, label) for every rule match; overlaps are resolved by the pipeline."""
    for label, pattern in ATTRIBUTE_RULES.items():
        for match in pattern.finditer(text):
            start, end = match.span()
            while end > start and text[end - 1] in " \t\n.,;:":
                end -= 1
            if end > start and (label != "ROUTE" or _is_route(text, start, end)):
                yield start, end, label
    for match in BARE_LAB_VALUE.finditer(text):
        yield *match.span("value"), "LAB_VALUE"
