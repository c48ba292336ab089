"""Label colours and keyboard shortcuts of the annotator (one place, used by text view and legend)."""

from __future__ import annotations

from PySide6.QtGui import QColor

LABEL_COLOURS = {
    "PROBLEM": "#f4a6a6",
    "TEST": "#a6c8f4",
    "LAB_VALUE": "#b8e0f0",
    "PROCEDURE": "#c6b3f2",
    "MEDICATION": "#a8e6a1",
    "DOSE": "#d8f0b0",
    "ROUTE": "#e8f5c8",
    "FREQUENCY": "#f0f0a8",
    "DURATION": "#f5deb3",
    "ANATOMY": "#f7c9e6",
    "PHI_NAME": "#ffb347",
    "PHI_DATE": "#ffc87a",
    "PHI_AGE": "#ffd59e",
    "PHI_ID": "#ffcc99",
    "PHI_CONTACT": "#ffbf80",
    "PHI_LOCATION": "#ffd1a3",
}
# digits 1-9 pick these labels for a selection
SHORTCUT_LABELS = ("PROBLEM", "TEST", "LAB_VALUE", "PROCEDURE", "MEDICATION", "DOSE", "ROUTE", "FREQUENCY", "ANATOMY")
# one key toggles each assertion of the selected span
ASSERTION_KEYS = {"N": "negated", "U": "uncertain", "H": "historical", "F": "family"}


def colour_for(label: str) -> QColor:
    return QColor(LABEL_COLOURS.get(label, "#dddddd"))
