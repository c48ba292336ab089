"""Assertion patterns at genConText level, each decision with its trigger and scope, and the
user's terms coming back as exactly their own span whatever the case and whitespace."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthfm_desktop.core.records.pipeline import ClinicalPipeline
from healthfm_desktop.core.records.terminology import TermMatcher


@pytest.fixture(scope="module")
def pipeline():
    return ClinicalPipeline()


def _asserted(pipeline, text, term):
    pipeline.set_user_terms([(term, "PROBLEM")])
    try:
        note = pipeline.annotate(text)
    finally:
        pipeline.set_user_terms([])
    found = [e for e in note.entities if " ".join(e.text.lower().split()) == term]
    assert len(found) == 1 and found[0].source == "user_terms", [(e.text, e.label, e.source) for e in note.entities]
    return found[0]


NEGATED = [
    ("No fever, chills, or night sweats.", "night sweats", "No"),
    ("No fever, chills or night sweats.", "chills", "No"),
    ("No pneumothorax can be identified.", "pneumothorax", "No"),
    ("Pneumothorax can be ruled out.", "pneumothorax", "can be ruled out"),
    ("A pleural effusion is not seen.", "pleural effusion", "is not seen"),
    ("Free air cannot be identified.", "free air", "cannot be identified"),
    ("Tumor cells are negative for cytokeratin and positive for vimentin.", "cytokeratin", "are negative for"),
    ("Doppler of the lower extremities negative   for DVT.", "dvt", "negative   for"),
    ("He denies chest pain.", "chest pain", "denies"),
]
AFFIRMED = [
    ("No change in the pleural effusion.", "pleural effusion"),
    ("There is no interval change of the left renal cyst.", "left renal cyst"),
    ("Not only pneumonia but also sepsis.", "pneumonia"),
    ("No pneumonia but there is a pleural effusion.", "pleural effusion"),
    ("The patient denies chest pain but reports dyspnea.", "dyspnea"),
    ("Tumor cells are negative for cytokeratin and positive for vimentin.", "vimentin"),
]


@pytest.mark.parametrize(("text", "term", "trigger"), NEGATED)
def test_negation_patterns_keep_trigger_and_scope(pipeline, text, term, trigger):
    entity = _asserted(pipeline, text, term)
    assert entity.negated
    cue = next(t for t in entity.triggers if t.attribute == "negated")
    assert cue.text == trigger and text[cue.start : cue.end] == trigger
    assert cue.scope_start < entity.end and entity.start < cue.scope_end  # the scope reaches the finding


@pytest.mark.parametrize(("text", "term"), AFFIRMED)
def test_pseudo_negation_and_termination(pipeline, text, term):
    entity = _asserted(pipeline, text, term)
    assert not entity.negated, entity.triggers


def test_history_cues_list_items_and_terminators(pipeline):
    note_text = "PAST MEDICAL HISTORY:\n1. Hypertension.\n2. Diabetes mellitus.\n\nHPI: Presents with cough."
    diabetes = _asserted(pipeline, note_text, "diabetes mellitus")
    assert diabetes.historical and diabetes.triggers[0].category == "SECTION" and diabetes.triggers[0].text == "PAST MEDICAL HISTORY:"
    assert not _asserted(pipeline, note_text, "cough").historical
    asthma = _asserted(pipeline, "She has a history of asthma and presents with wheezing.", "asthma")
    assert asthma.historical and any(t.text == "history" for t in asthma.triggers)
    assert not _asserted(pipeline, "She has a history of asthma and presents with wheezing.", "wheezing").historical
    # "recent" ends the history scope only ...
    assert not _asserted(pipeline, "Past medical history significant for ESRD and recent diagnosis of PE.", "pe").historical
    assert _asserted(pipeline, "Past medical history significant for ESRD and recent diagnosis of PE.", "esrd").historical
    # ... not a negation's
    assert _asserted(pipeline, "No history of stroke and no recent fever.", "fever").negated
    assert _asserted(pipeline, "Status post appendectomy.", "appendectomy").historical  # "Status" was a TEST of the tagger, which pruned the cue


HISTORICAL = [
    ("Linear fibrosis which may be related to an adjacent old rib fracture.", "rib fracture", "old"),
    ("Past medical history of coronary artery disease, but no history of known congestive heart failure.", "congestive heart failure", "known"),
    ("The mass in the left adrenal gland is   redemonstrated.", "mass in the left adrenal gland", "redemonstrated"),
    ("The subchondral cysts of the scaphoid have not changed in size.", "subchondral cysts of the scaphoid", "have not changed"),
    ("She declined, as it made her severely nauseated the last time she had it.", "nauseated", "the last time"),
    ("ECG shows a remote inferior infarct.", "inferior infarct", "remote"),
    ("The right renal abscess was previously drained.", "right renal abscess", "previously"),
    ("There are healed rib fractures on the left.", "rib fractures", "healed"),
    ("He had a transient ischemic attack two years ago.", "transient ischemic attack", "years ago"),
]
NOT_HISTORICAL = [
    ("A 60-year-old woman with chest pain.", "chest pain"),  # an age, not an "old" finding
    ("Linear fibrosis which may be related to an adjacent old rib fracture.", "linear fibrosis"),  # "old" reaches forward only
    ("The patient is well known to our service and presents with chest pain.", "chest pain"),  # "presents" ends the scope
    ("No change in the pleural effusion.", "pleural effusion"),
    ("She sustained a laceration to her hand eight days ago.", "laceration"),  # "ago" counts for months and years only
    ("Transferred from the previous hospital with a pneumothorax.", "pneumothorax"),  # "previous" alone is no cue
]


IN_TARGET = [
    ("Past medical history of coronary artery disease, status post CABG, but no heart failure.", "status post cabg", "status post"),
    ("S/p appendectomy in 2010.", "s/p appendectomy", "S/p"),
    ("Psychiatric history.", "psychiatric history", "history"),
    ("SOCIAL HISTORY:  The patient denies alcohol or other drug use.", "drug use", "drug use"),
    ("Given his risk factors including tobacco use, we did perform an EKG.", "tobacco use", "tobacco"),
]


@pytest.mark.parametrize(("text", "term", "trigger"), IN_TARGET)
def test_a_history_cue_inside_the_finding_asserts_it(pipeline, text, term, trigger):
    entity = _asserted(pipeline, text, term)
    assert entity.historical, entity.triggers
    cue = next(t for t in entity.triggers if t.attribute == "historical")
    assert cue.text == trigger and (cue.scope_start, cue.scope_end) == (entity.start, entity.end)


def test_target_rules_stay_inside_their_finding(pipeline):
    assert not _asserted(pipeline, "Fever and altered mental status.", "altered mental status").historical  # "status" alone is no cue
    text = "He smokes; tobacco use and chest pain today."
    assert _asserted(pipeline, text, "tobacco use").historical
    assert not _asserted(pipeline, text, "chest pain").historical
    # the kit's baseline (medspaCy's rules alone) has none of ours
    from healthfm_desktop.core.records.pipeline import build_nlp

    assert not build_nlp(use_model=False, use_vocabulary=False, context_extra=False).get_pipe("healthfm_target_context").rules


CHRONIC_LIST_ITEMS = [
    ("HYPERTENSION.", "hypertension"),
    ("2. Hyperlipidemia.", "hyperlipidemia"),
    ("B.     Type 2 diabetes mellitus.", "type 2 diabetes mellitus"),
    ("03) Chronic obstructive pulmonary disease.", "chronic obstructive pulmonary disease"),
]
NOT_CHRONIC_LIST_ITEMS = [
    ("PNEUMONIA.", "pneumonia"),  # not a chronic condition
    ("Severe pulmonary hypertension.", "pulmonary hypertension"),  # not one of the conditions, and not alone
    ("07) MILD PULMONARY HYPERTENSION.", "pulmonary hypertension"),
    ("The patient has hypertension and presents with chest pain.", "hypertension"),  # not a bare list item
    ("No hypertension.", "hypertension"),  # negated, and "No" is a word of the sentence
]


@pytest.mark.parametrize(("text", "term"), CHRONIC_LIST_ITEMS)
def test_a_chronic_condition_alone_as_a_list_item_is_historical(pipeline, text, term):
    entity = _asserted(pipeline, text, term)
    assert entity.historical, entity.triggers
    cue = next(t for t in entity.triggers if t.attribute == "historical")
    # the finding is its own trigger and scope
    assert (cue.start, cue.end) == (entity.start, entity.end) == (cue.scope_start, cue.scope_end)


@pytest.mark.parametrize(("text", "term"), NOT_CHRONIC_LIST_ITEMS)
def test_chronic_conditions_are_historical_only_as_bare_list_items(pipeline, text, term):
    assert not _asserted(pipeline, text, term).historical


def test_a_chronic_list_item_under_a_history_header_keeps_the_section_as_trigger(pipeline):
    note_text = "PAST MEDICAL HISTORY:\n1. Hypertension.\n\nHPI: Presents with cough."
    entity = _asserted(pipeline, note_text, "hypertension")
    assert entity.historical and [t.category for t in entity.triggers if t.attribute == "historical"] == ["SECTION"]


@pytest.mark.parametrize(("text", "term", "trigger"), HISTORICAL)
def test_history_patterns_keep_trigger_and_scope(pipeline, text, term, trigger):
    entity = _asserted(pipeline, text, term)
    assert entity.historical, entity.triggers
    cue = next(t for t in entity.triggers if t.attribute == "historical")
    assert " ".join(cue.text.split()) == trigger and text[cue.start : cue.end] == cue.text
    assert cue.scope_start < entity.end and entity.start < cue.scope_end


@pytest.mark.parametrize(("text", "term"), NOT_HISTORICAL)
def test_history_patterns_stay_in_their_scope(pipeline, text, term):
    assert not _asserted(pipeline, text, term).historical


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("New onset of CHEST   PAIN radiating to the arm.", "chest pain"),
        ("Echo: TRACE  TRICUSPID\n REGURGITATION, no effusion.", "trace tricuspid regurgitation"),
        ("history of Acute\tMyocardial\r\nInfarction in 2010", "acute myocardial infarction"),
        ("left lower lobe pneumonia", "lower lobe"),
    ],
)
def test_user_terms_come_back_as_exactly_their_span(pipeline, text, term):
    entity = _asserted(pipeline, text, term)
    assert " ".join(text[entity.start : entity.end].lower().split()) == term
    assert entity.label == "PROBLEM"


def test_user_term_wins_over_an_overlapping_longer_span_and_keeps_its_label(pipeline):
    pipeline.set_user_terms([("pain", "ANATOMY")])
    try:
        note = pipeline.annotate("No chest pain today.")
    finally:
        pipeline.set_user_terms([])
    pain = next(e for e in note.entities if e.text == "pain")
    assert pain.label == "ANATOMY" and pain.source == "user_terms" and pain.negated
    assert not any(e.start < pain.end and pain.start < e.end and e is not pain for e in note.entities)


_WORDS = st.lists(st.text(alphabet="abcdefghij", min_size=1, max_size=6), min_size=1, max_size=4)
_GAP = st.text(alphabet=" \t\n\r", min_size=1, max_size=4)


@given(words=_WORDS, gaps=st.lists(_GAP, min_size=3, max_size=3), before=st.sampled_from(["", "x ", "(", "no "]), after=st.sampled_from(["", ".", " y", ","]), upper=st.booleans())
def test_term_matcher_finds_the_term_through_any_whitespace_and_case(words, gaps, before, after, upper):
    term = " ".join(words)
    written = "".join(w + (gaps[k % 3] if k < len(words) - 1 else "") for k, w in enumerate(words))
    written = written.upper() if upper else written
    text = before + written + after
    found = TermMatcher([(term, "TEST")]).find(text)
    assert (len(before), len(before) + len(written), "TEST") in found
    for start, end, label in found:
        assert " ".join(text[start:end].lower().split()) == term and label == "TEST"


def test_term_matcher_respects_word_boundaries_and_longest_term():
    matcher = TermMatcher([("pain", "PROBLEM"), ("chest pain", "TEST"), ("CHEST PAIN", "ANATOMY")])
    assert matcher.find("painful chest pain; pain.") == [(8, 18, "TEST"), (20, 24, "PROBLEM")]
    assert TermMatcher([]).find("anything") == []


def test_target_rules_word_filter_gives_the_matchers_answers(pipeline, repo_root):
    """The filter that sends only findings holding a rule's word to the Matcher changes no
    decision (kit sentences, each with its target)."""
    from healthfm_desktop.core.records.evaluation import read_negex_kit

    records = read_negex_kit(repo_root / "models" / "training" / "data" / "text" / "negex_context.jsonl")[::3]
    component = pipeline.nlp.get_pipe("healthfm_target_context")
    words = component._words
    assert words is not None and len(words) > 20
    answers = []
    try:
        for filtered in (words, None):
            component._words = filtered
            answers.append([[(e.historical, [(t.start, t.end, t.scope_start, t.scope_end) for t in e.triggers], e.start, e.end) for e in pipeline.assert_spans(r["text"], [(s["start"], s["end"], "PROBLEM") for s in r["spans"]])] for r in records])
    finally:
        component._words = words
    assert answers[0] == answers[1]
    # the comparison covered cues inside their findings
    assert sum(any(start <= t[0] and t[1] <= end for t in triggers) for note in answers[0] for _h, triggers, start, end in note) >= 3
