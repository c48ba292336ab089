"""The entity labels and assertion attributes of the notes workspace (CLI.md, "Entity labels"),
and how the training corpora's own labels map onto them."""

from __future__ import annotations

CLINICAL_LABELS = (
    "PROBLEM",
    "TEST",
    "LAB_VALUE",
    "PROCEDURE",
    "MEDICATION",
    "DOSE",
    "ROUTE",
    "FREQUENCY",
    "DURATION",
    "ANATOMY",
)
PHI_LABELS = ("PHI_NAME", "PHI_DATE", "PHI_AGE", "PHI_ID", "PHI_CONTACT", "PHI_LOCATION")
LABELS = CLINICAL_LABELS + PHI_LABELS
MEDICATION_ATTRIBUTES = ("DOSE", "ROUTE", "FREQUENCY", "DURATION")
ASSERTIONS = ("negated", "uncertain", "historical", "family")

# MACCROBAT2020 entity type -> our label. Types that are not in CLI.md's label set (Severity,
# Detailed_description, Clinical_event, Date of a case report's timeline, ...) are left out.
MACCROBAT_TO_LABEL = {
    "Sign_symptom": "PROBLEM",
    "Disease_disorder": "PROBLEM",
    "Diagnostic_procedure": "TEST",
    "Lab_value": "LAB_VALUE",
    "Therapeutic_procedure": "PROCEDURE",
    "Medication": "MEDICATION",
    "Dosage": "DOSE",
    "Administration": "ROUTE",
    "Frequency": "FREQUENCY",
    "Duration": "DURATION",
    "Biological_structure": "ANATOMY",
}

# NCBI disease corpus: every mention type is a disease, i.e. a PROBLEM. The corpus labels
# nothing else, so its unlabelled tokens only say "not a PROBLEM" (see train_ner.py).
NCBI_TO_LABEL = {
    "SpecificDisease": "PROBLEM",
    "DiseaseClass": "PROBLEM",
    "CompositeMention": "PROBLEM",
    "Modifier": "PROBLEM",
}


def normalise_label(text: str) -> str | None:
    """A label typed by a user ("problem", "Medication ") as ours, or None if unknown."""
    candidate = text.strip().upper().replace(" ", "_").replace("-", "_")
    return candidate if candidate in LABELS else None
