"""Label colours and keyboard keys of the annotator (one place, used by text view and legend).

Colours: Paul Tol's "light" qualitative scheme, chosen to stay distinct under the common forms of
colour blindness; the PHI labels share one purple (the label name is drawn beside every span, so
the colour only has to say "clinical kind" or "PHI")."""

from __future__ import annotations

from PySide6.QtGui import QColor

LABEL_COLOURS = {
    "PROBLEM": "#EE8866",
    "TEST": "#77AADD",
    "LAB_VALUE": "#99DDFF",
    "PROCEDURE": "#FFAABB",
    "MEDICATION": "#44BB99",
    "DOSE": "#BBCC33",
    "ROUTE": "#EEDD88",
    "FREQUENCY": "#AAAA00",
    "DURATION": "#DDDDDD",
    "ANATOMY": "#CCBB44",
    "PHI_NAME": "#C2A5CF",
    "PHI_DATE": "#C2A5CF",
    "PHI_AGE": "#C2A5CF",
    "PHI_ID": "#C2A5CF",
    "PHI_CONTACT": "#C2A5CF",
    "PHI_LOCATION": "#C2A5CF",
}
# one key per label: digits for the clinical labels, the top letter row for PHI
LABEL_KEYS = {
    "1": "PROBLEM", "2": "TEST", "3": "LAB_VALUE", "4": "PROCEDURE", "5": "MEDICATION",
    "6": "DOSE", "7": "ROUTE", "8": "FREQUENCY", "9": "ANATOMY", "0": "DURATION",
    "Q": "PHI_NAME", "W": "PHI_DATE", "E": "PHI_AGE", "R": "PHI_ID", "T": "PHI_CONTACT", "Y": "PHI_LOCATION",
}
KEY_OF_LABEL = {label: key for key, label in LABEL_KEYS.items()}
# one key toggles each assertion of the selected span
ASSERTION_KEYS = {"N": "negated", "U": "uncertain", "H": "historical", "F": "family"}
# moving between spans: next / previous span, next span not reviewed yet
NAVIGATION_KEYS = {"J": "next", "K": "previous", "L": "next_unreviewed"}
SHORT_NAMES = {"LAB_VALUE": "LAB", "PROCEDURE": "PROC", "MEDICATION": "MED", "FREQUENCY": "FREQ", "DURATION": "DUR", "ANATOMY": "ANAT", "PROBLEM": "PROB"}


def colour_for(label: str) -> QColor:
    return QColor(LABEL_COLOURS.get(label, "#dddddd"))


def short_name(label: str) -> str:
    """The tag drawn beside a span ("MED", "PHI_DATE" -> "DATE")."""
    return SHORT_NAMES.get(label, label.removeprefix("PHI_"))
