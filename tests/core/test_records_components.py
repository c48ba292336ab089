"""The notes pipeline is made of registered spaCy factories with typed configs: it is saved and
loaded with nlp.to_disk / spacy.load and gives the same annotations, and it runs with
nlp.pipe(n_process=2)."""

import spacy

from healthfm_desktop.core.records.pipeline import build_nlp, doc_to_note

TEXT = (
    "PAST MEDICAL HISTORY:\nHypertension.\n\nHPI: No fever, chills or zebrafoxin rash. "
    "Tumor cells are negative for cytokeratin. Metoprolol 25 mg PO BID. Hemoglobin 9.1 g/dL."
)


def _annotations(docs):
    return [doc_to_note(doc, "n").to_json() for doc in docs]


def test_pipeline_round_trips_through_to_disk(tmp_path):
    nlp = build_nlp([("zebrafoxin rash", "PROBLEM")])
    assert [name for name, _ in nlp.pipeline] == ["healthfm_sentences", "healthfm_entities", "medspacy_sectionizer", "medspacy_context", "healthfm_target_context", "healthfm_portable_doc"]
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.config["components"]["healthfm_entities"]["user_terms"] == [["zebrafoxin rash", "PROBLEM"]]
    expected = _annotations([nlp(TEXT)])
    assert _annotations([loaded(TEXT)]) == expected
    entities = {e["text"]: e for e in expected[0]["entities"]}
    assert entities["zebrafoxin rash"]["negated"] and entities["zebrafoxin rash"]["source"] == "user_terms"
    assert entities["Hypertension"]["historical"]


def test_pipeline_runs_with_two_processes():
    nlp = build_nlp([("zebrafoxin rash", "PROBLEM")])
    texts = [TEXT, "No pneumothorax can be identified.", TEXT.replace("fever", "cough"), "Aspirin 81 mg daily."] * 2
    single = _annotations(nlp.pipe(texts))
    assert _annotations(nlp.pipe(texts, n_process=2, batch_size=2)) == single
    assert any(e["negated"] for note in single for e in note["entities"])
