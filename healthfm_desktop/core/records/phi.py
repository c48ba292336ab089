"""PHI detection (HIPAA Safe Harbor categories as CLI.md labels) and de-identification.

Rules on the raw text: names (titles, name fields, signatures, common given names followed by
a capitalised word), dates with a day or month (a year alone is not PHI under Safe Harbor),
ages over 89, identifiers (MRN, SSN, account and record numbers), phone/fax, e-mail, URL,
street addresses, ZIP codes, hospitals and cities in address lines, and the bracketed
placeholders of already de-identified MIMIC-style notes ([**...**]).

``deidentify`` replaces spans with tags ([PHI_NAME]) or consistent surrogates."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator

_MONTHS = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
_TITLE = r"(?:Dr|Mr|Mrs|Ms|Miss|Prof|Doctor|Nurse|Sister)"
_CAP = r"[A-Z][a-zA-Z'\-]+"
_INITIAL = r"[A-Z]\."

# Given names are facts, not expression: this list was written for this project from common
# US given names; it only widens recall beside the structural rules.
GIVEN_NAMES = frozenset(
    """james john robert michael william david richard joseph thomas charles christopher daniel matthew anthony mark
    donald steven paul andrew joshua kenneth kevin brian george timothy ronald edward jason jeffrey ryan jacob gary
    nicholas eric jonathan stephen larry justin scott brandon benjamin samuel gregory alexander frank patrick raymond
    jack dennis jerry tyler aaron jose adam nathan henry douglas zachary peter kyle ethan walter noah jeremy christian
    keith roger terry gerald harold sean austin carl arthur lawrence dylan jesse jordan bryan billy joe bruce gabriel
    logan albert willie alan juan wayne elijah randy roy vincent ralph eugene russell bobby mason philip louis
    mary patricia jennifer linda elizabeth barbara susan jessica sarah karen lisa nancy betty margaret sandra ashley
    kimberly emily donna michelle carol amanda dorothy melissa deborah stephanie rebecca sharon laura cynthia kathleen
    amy angela shirley anna brenda pamela emma nicole helen samantha katherine christine debra rachel carolyn janet
    catherine maria heather diane ruth julie olivia joyce virginia victoria kelly lauren christina joan evelyn judith
    megan andrea cheryl hannah jacqueline martha gloria teresa ann sara madison frances kathryn janice jean abigail
    alice judy sophia grace denise amber doris marilyn danielle beverly isabella theresa diana natalie brittany
    charlotte marie kayla alexis lori maria fatima mohammed ahmed wei li chen priya raj""".split()
)

_PATTERNS: list[tuple[str, re.Pattern]] = [
    # MIMIC-style placeholders are classified by their content further below
    ("PLACEHOLDER", re.compile(r"\[\*\*[^\]\n]{0,80}?\*\*\]")),
    ("PHI_CONTACT", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    ("PHI_CONTACT", re.compile(r"\b(?:https?://|www\.)[^\s<>\"')\]]+", re.IGNORECASE)),
    ("PHI_CONTACT", re.compile(r"(?<![\d/])(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?![\d/])")),
    ("PHI_ID", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    (
        "PHI_ID",
        re.compile(
            r"(?:\b(?:MRN|MR#|medical record(?: number| no\.?)?|record (?:no\.?|number|#)|acct(?:ount)?(?: no\.?| number| #)?|"
            r"account|SSN|social security(?: number)?|patient id|pt id|ID(?: number| no\.?)?|unit no\.?|encounter(?: no\.?| #)?|"
            r"accession(?: no\.?| number| #)?|health plan(?: number)?|member id|policy(?: number)?|license(?: number)?|"
            r"NPI|DEA(?: number| #)?)\s*[:#]?\s*)"
            r"((?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{3,})\b",
            re.IGNORECASE,
        ),
    ),
    (
        "PHI_DATE",
        re.compile(
            r"\b(?:\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})|\d{4}[/.-]\d{1,2}[/.-]\d{1,2}|"
            rf"{_MONTHS}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?|"
            rf"\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTHS}\.?(?:,?\s+\d{{4}})?|"
            rf"{_MONTHS}\.?,?\s+\d{{4}}|\d{{1,2}}/\d{{4}})\b",
            re.IGNORECASE,
        ),
    ),
    (
        "PHI_AGE",
        re.compile(
            r"\b(?:9\d|1[0-2]\d)(?:\s*|-)(?:years?|yrs?|y)(?:\s*|-)(?:old|o\.?|/o)\b|\b(?:9\d|1[0-2]\d)\s*(?:yo|y/o|y\.o\.)|"
            r"\b(?:aged?|age:)\s*(?:9\d|1[0-2]\d)\b|\b(?:9\d|1[0-2]\d)(?=\s*(?:year|yr)s?[- ]old)",
            re.IGNORECASE,
        ),
    ),
    (
        "PHI_LOCATION",
        re.compile(
            r"\b\d{1,6}\s+(?:[NSEW]\.?\s+)?(?:[A-Z][a-z]+\s+){1,3}(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|"
            r"Way|Place|Pl|Terrace|Highway|Hwy|Parkway|Pkwy|Circle|Square)\b\.?(?:,?\s+(?:Apt|Suite|Unit|#)\.?\s*\w+)?"
        ),
    ),
    ("PHI_LOCATION", re.compile(r"\b[A-Z][a-zA-Z]+(?:\s[A-Z][a-zA-Z]+){0,2},\s(?:[A-Z]{2}|[A-Z][a-z]+)\s+\d{5}(?:-\d{4})?\b")),
    (
        "PHI_LOCATION",
        re.compile(
            r"\b(?:[A-Z][a-zA-Z'.]+\s){1,4}(?:Hospital|Medical Center|Clinic|Health Center|Healthcare|Infirmary|Nursing Home|"
            r"Rehabilitation Center|Rehab Center|Hospice|Health System|University Hospital)\b"
            r"(?!\s+(?:[Cc]ourse|[Ss]tay|[Dd]ay|[Aa]dmission|[Dd]ischarge))"
        ),
    ),
    ("PHI_LOCATION", re.compile(r"\b(?:lives|living|resides|residing|born|moved)\s+in\s+((?:[A-Z][a-z]+\s?){1,3})")),
    ("PHI_NAME", re.compile(rf"\b{_TITLE}\.?\s+(?:{_INITIAL}\s*)?{_CAP}(?:\s+{_CAP})?")),
    (
        "PHI_NAME",
        re.compile(
            rf"(?:\b(?:Patient(?: name)?|Name|Pt name|Attending|Physician|Provider|Dictated by|Signed by|Electronically signed by|"
            rf"Referring physician|PCP|Surgeon|Resident|Cc|Contact|Emergency contact|Son|Daughter|Wife|Husband|Mother|Father)\s*:\s*)"
            rf"((?:{_TITLE}\.?\s+)?{_CAP}(?:\s+(?:{_INITIAL}|{_CAP})){{0,2}}(?:,\s*{_CAP})?)"
        ),
    ),
    ("PHI_NAME", re.compile(rf"\b({_CAP}(?:\s+{_INITIAL})?\s+{_CAP}),?\s+(?:M\.?D\.?|D\.?O\.?|R\.?N\.?|N\.?P\.?|P\.?A\.?-?C?|Ph\.?D\.?)\b")),
]

_NAME_CONTEXT = re.compile(rf"\b([A-Z][a-z]+)\s+({_INITIAL}\s+)?({_CAP})\b")
_PLACEHOLDER_KINDS = (
    ("PHI_NAME", re.compile(r"name|initials|doctor|dr\b|md number", re.IGNORECASE)),
    ("PHI_CONTACT", re.compile(r"telephone|phone|fax|e-?mail|url|web", re.IGNORECASE)),
    ("PHI_LOCATION", re.compile(r"hospital|location|address|street|state|country|city|zip|ward|unit", re.IGNORECASE)),
    ("PHI_AGE", re.compile(r"age over 90|age", re.IGNORECASE)),
    ("PHI_ID", re.compile(r"number|identifier|serial|mrn|ssn|record|account|id\b", re.IGNORECASE)),
    ("PHI_DATE", re.compile(r"\d|year|month|day|date|holiday", re.IGNORECASE)),
)
# words that look like a capitalised name after a given name but are clinical text
_NOT_SURNAMES = frozenset("The And With Was Has Had Is Are In On At Of For To No Not Syndrome Disease Score Scale Test Sign".split())


def _placeholder_label(inner: str) -> str:
    for label, pattern in _PLACEHOLDER_KINDS:
        if pattern.search(inner):
            return label
    return "PHI_ID"


def find_phi(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, label) of PHI candidates; overlaps are resolved by the caller."""
    for label, pattern in _PATTERNS:
        for match in pattern.finditer(text):
            group = 1 if match.re.groups and match.group(1) else 0
            start, end = match.span(group)
            if label == "PLACEHOLDER":
                yield start, end, _placeholder_label(match.group(0)[3:-3])
                continue
            while end > start and text[end - 1] in " \t\n,.;:":
                end -= 1
            if end > start:
                yield start, end, label
    for match in _NAME_CONTEXT.finditer(text):
        given, surname = match.group(1), match.group(3)
        if given.lower() in GIVEN_NAMES and surname not in _NOT_SURNAMES:
            yield match.start(), match.end(), "PHI_NAME"


_SURROGATES = {
    "PHI_NAME": ["Alex Morgan", "Sam Taylor", "Jordan Lee", "Casey Brooks", "Robin Hayes", "Jamie Fox"],
    "PHI_DATE": ["01/01/2000", "02/02/2000", "03/03/2000", "04/04/2000"],
    "PHI_AGE": ["90+"],
    "PHI_ID": ["ID-000001", "ID-000002", "ID-000003", "ID-000004"],
    "PHI_CONTACT": ["555-0100", "555-0101", "contact@example.org"],
    "PHI_LOCATION": ["Springfield", "Riverside General", "100 Main Street"],
}


def surrogate_for(label: str, original: str) -> str:
    """The same original always gets the same surrogate (per label), so a de-identified note
    still says which mentions are the same person or date."""
    choices = _SURROGATES.get(label, ["[REDACTED]"])
    digest = int(hashlib.sha256(f"{label}\x00{original.lower()}".encode()).hexdigest(), 16)
    return choices[digest % len(choices)]


def deidentify(text: str, spans: Iterable[tuple[int, int, str]], mode: str = "tag") -> str:
    """Replace PHI spans with ``[LABEL]`` (mode "tag") or surrogates (mode "surrogate")."""
    if mode not in ("tag", "surrogate"):
        raise ValueError("mode must be 'tag' or 'surrogate'")
    chosen = sorted((s for s in spans if s[2].startswith("PHI_")), key=lambda s: (s[0], -s[1]))
    pieces, cursor = [], 0
    for start, end, label in chosen:
        if start < cursor:
            continue  # overlapping PHI: the earlier, longer span already covered it
        pieces.append(text[cursor:start])
        pieces.append(f"[{label}]" if mode == "tag" else surrogate_for(label, text[start:end]))
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)
