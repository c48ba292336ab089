"""Section detection: medspaCy's sectionizer with its packaged rules plus ours, and normalised
section titles (the medspaCy category, e.g. ``past_medical_history``), as the
``healthfm_sections`` spaCy factory."""

from medspacy.section_detection import SectionRule, Sectionizer
from spacy.language import Language

# section categories whose entities are historical / about family members by position alone
SECTION_ASSERTIONS = {
    "past_medical_history": {"is_historical": True},
    "allergy": {"is_historical": True},
    "social_history": {"is_historical": True},
    "sexual_and_social_history": {"is_historical": True},
    "family_history": {"is_family": True},
}

# Headers of discharge summaries, operative/radiology reports and case reports that medspaCy's
# packaged rules miss, mapped to its categories where one fits.
EXTRA_SECTION_HEADERS = {
    "history_of_present_illness": ["History of Present Illness:", "HPI", "Present illness:", "Case presentation:", "CASE:", "Case report:", "Clinical history:"],
    "past_medical_history": ["Past Medical History:", "PMH:", "PMHx:", "Past Surgical History:", "PAST SURGICAL HISTORY:", "Medical history:"],
    "medications": ["Medications on Admission:", "Medications:", "MEDICATIONS:", "Current medications:", "Discharge Medications:", "Home medications:"],
    "allergy": ["Allergies:", "ALLERGIES:", "Drug allergies:"],
    "hospital_course": ["Brief Hospital Course:", "Hospital Course:", "Clinical course:", "Course:"],
    "labs_and_studies": ["Pertinent Results:", "Labs:", "LABS:", "Laboratory data:", "LABORATORY DATA:", "Laboratory:", "Results:", "Findings:", "FINDINGS:"],
    "imaging": ["Impression:", "IMPRESSION:", "Technique:", "Comparison:", "COMPARISON:"],
    "diagnoses": ["Discharge Diagnosis:", "Discharge Diagnoses:", "Diagnosis:", "DIAGNOSIS:", "Preoperative diagnosis:", "PREOPERATIVE DIAGNOSIS:", "Postoperative diagnosis:", "POSTOPERATIVE DIAGNOSIS:", "Admitting diagnosis:"],
    "procedures": ["Major Surgical or Invasive Procedure:", "Procedure:", "PROCEDURE:", "Procedures:", "PROCEDURE PERFORMED:", "Operation:", "OPERATION:", "Procedure in detail:"],
    "observation_and_plan": ["Assessment and Plan:", "ASSESSMENT AND PLAN:", "Assessment:", "Plan:", "PLAN:", "Recommendations:"],
    "physical_exam": ["Physical Exam:", "Physical examination:", "Exam:", "EXAM:", "Review of Systems:", "REVIEW OF SYSTEMS:", "ROS:", "Vital signs:", "VITAL SIGNS:"],
    "patient_instructions": ["Discharge Instructions:", "Followup Instructions:", "Follow-up:"],
    "discharge_condition": ["Discharge Condition:", "Condition at discharge:", "Discharge Disposition:"],
    "chief_complaint": ["Chief Complaint:", "CHIEF COMPLAINT:", "Reason for visit:", "REASON FOR VISIT:", "Reason for admission:", "Indication:", "INDICATION:"],
    "family_history": ["Family History:", "FAMILY HISTORY:", "FHx:", "FH:"],
    "social_history": ["Social History:", "SOCIAL HISTORY:", "SHx:"],
}


def extra_section_rules() -> list[SectionRule]:
    rules = []
    for category, literals in EXTRA_SECTION_HEADERS.items():
        for literal in literals:
            rules.append(SectionRule(literal=literal, category=category))
    return rules


@Language.factory("healthfm_sections", default_config={"extra_rules": True})
def make_sectionizer(nlp: Language, name: str, extra_rules: bool) -> Sectionizer:
    """medspaCy's sectionizer with its packaged rules and (``extra_rules``) ours; a header must
    start a line, and a section's position implies the assertions of SECTION_ASSERTIONS."""
    sectionizer = Sectionizer(nlp, name=name, rules="default", span_attrs=SECTION_ASSERTIONS, require_start_line=True)
    if extra_rules:
        sectionizer.add(extra_section_rules())
    return sectionizer


def section_title(category: str | None) -> str | None:
    """The normalised title written to exports: the category, or None outside any section."""
    return category or None
