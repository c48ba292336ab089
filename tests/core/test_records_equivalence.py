"""The pipeline's speed-ups give the answers of the plain code they replace, on real text:

* ConText's pivoted trigger matcher finds exactly the matches of spaCy's Matcher (after
  medspaCy's pruning) on case reports, NegEx kit sentences and whitespace-heavy text;
* the cached token featuriser gives exactly ``encode_tokens``' arrays, also across a cache reset;
* a note gets the same entities, assertions, triggers and links whether it is annotated alone
  or in a batch with other notes (the tagger batches rows of equal length, never padded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from healthfm_desktop.core.records.context import context_rules
from healthfm_desktop.core.records.medspacy_adapter import medspacy_matcher
from healthfm_desktop.core.records.ner_features import TokenEncoder, build_word_index, encode_tokens
from healthfm_desktop.core.records.pipeline import build_pipeline

DATA = Path(__file__).resolve().parents[2] / "models" / "training" / "data" / "text"


@pytest.fixture(scope="module")
def case_reports() -> list[dict]:
    with (DATA / "maccrobat2020.jsonl").open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle][:40]


@pytest.fixture(scope="module")
def pipeline():
    return build_pipeline()


def _matchers(nlp, rules):
    plain = medspacy_matcher(nlp, "plain", pivoted=False)
    plain.add(rules)
    pivoted = medspacy_matcher(nlp, "pivoted", pivoted=True)
    pivoted.add(rules)
    return plain, pivoted


def test_pivoted_matcher_finds_the_matches_of_spacys_matcher(pipeline, case_reports):
    nlp = pipeline.nlp
    context = nlp.get_pipe("medspacy_context")
    rules = context_rules(Path(context.DEFAULT_RULES_FILEPATH))
    plain, pivoted = _matchers(nlp, rules)
    with (DATA / "negex_context.jsonl").open(encoding="utf-8") as handle:
        kit = [json.loads(line)["text"] for line in handle][:1500]
    tricky = [
        "Negative   for\nfever. No  new\n\nabnormal findings; not\n  ruled   out for PE.",
        "MEDICATIONS:\n - \n\nNone\n01) None\nPatient's  '' known allergy. 3-week history of cough.",
        "may be ruled out\tfor sepsis; -ve for MI; should the patient develop rash; no",
        "",
        "   \n\n  ",
    ]
    texts = [r["text"] for r in case_reports] + kit + tricky
    docs = [nlp.get_pipe("healthfm_sentences")(nlp.make_doc(t)) for t in texts]
    compared = 0
    for doc in docs:
        expected = plain(doc)
        assert pivoted(doc) == expected, doc.text[:200]
        compared += len(expected)
    assert compared > 1000  # the comparison covered many triggers


def test_token_encoder_gives_encode_tokens_arrays(pipeline, case_reports):
    word_index = build_word_index(pipeline.tagger.manifest.preprocessing["word_vocabulary"])
    nlp = pipeline.nlp
    sentences = [[t.text for t in sentence if not t.is_space] for r in case_reports[:10] for sentence in nlp.get_pipe("healthfm_sentences")(nlp.make_doc(r["text"])).sents]
    sentences += [["Ünïcode", "µg", "😀", "x" * 40], [], ["12.5", "mg/dL", "IV", "q6h"]]
    static = pipeline.tagger.encoder.static  # the static word-vector rows (the shipped tagger has them)
    assert static is not None
    encoder = TokenEncoder(word_index, max_tokens=300, static=static)  # small: the cache is reset along the way
    for begin in range(0, len(sentences), 17):
        batch = sentences[begin : begin + 17]
        ours_arrays, reference_arrays = encoder.encode(batch), encode_tokens(batch, word_index, static)
        assert len(ours_arrays) == len(reference_arrays) == 4
        for ours, reference in zip(ours_arrays, reference_arrays):
            assert ours.dtype == reference.dtype and ours.shape == reference.shape
            assert (ours == reference).all()
    assert len(encoder._row_of) <= 300 + 17 * 96


def test_a_note_gets_the_same_annotations_alone_or_in_a_batch(pipeline, case_reports):
    notes = [(r["id"], r["text"]) for r in case_reports[:24]]
    batched = [n.to_json() for n in pipeline.annotate_many(notes, batch_size=8)]
    alone = [pipeline.annotate(text, note_id).to_json() for note_id, text in reversed(notes)][::-1]
    assert batched == alone
    assert sum(e["source"] == "model" for n in batched for e in n["entities"]) > 50
    assert sum(bool(e["triggers"]) for n in batched for e in n["entities"]) > 50


def test_clinical_context_gives_medspacys_modifiers(pipeline, case_reports):
    """Our ConText (pivoted matcher + indexed graph) against medspaCy's own ConText with the
    same rules, on the targets our pipeline finds in real case reports."""
    from medspacy.context import ConText

    nlp = pipeline.nlp
    ours = nlp.get_pipe("medspacy_context")
    reference = ConText(nlp, name="reference_context", rules=None, prune_on_target_overlap=True)
    reference.add(context_rules(Path(ours.DEFAULT_RULES_FILEPATH)))
    names = [name for name, _ in nlp.pipeline if name != "medspacy_context"]
    texts = [r["text"] for r in case_reports] + ["No fever, no chills; denies cough.\nHistory of asthma. Mother had breast cancer. Rule out PE."]
    edges = 0
    for text in texts:
        found = []
        for context in (reference, ours):
            doc = nlp.make_doc(text)
            for name in names:
                doc = nlp.get_pipe(name)(doc)
            doc = context(doc)
            found.append([[(m.modifier_span, m.scope_span, m.category) for m in ent._.modifiers] for ent in doc.ents])
        assert found[1] == found[0]
        edges += sum(map(len, found[0]))
    assert edges > 200


def test_a_long_stream_rebuilds_the_pipeline_and_keeps_the_results(pipeline, case_reports):
    """Memory over many notes: once the notes have added refresh_strings new strings, the
    spaCy pipeline is rebuilt between segments, so its vocabulary stops growing; the
    annotations are those of a pipeline that never rebuilt."""
    import random
    import re

    from healthfm_desktop.core.records.pipeline import ClinicalPipeline

    rng = random.Random(3)
    notes = [(str(i), f"MRN: {rng.randrange(10**7, 10**8)}\n" + re.sub(r"\d+", lambda m: str(rng.randrange(10**6)), case_reports[i % 12]["text"][:2000])) for i in range(48)]
    streaming = ClinicalPipeline(refresh_strings=300)
    streaming.segment_notes = 6
    base = len(streaming.nlp.vocab.strings)
    peak = 0
    streamed = []
    for note in streaming.annotate_many(notes):
        streamed.append(note.to_json())
        peak = max(peak, len(streaming.nlp.vocab.strings) - base)
    assert streaming.rebuilds >= 2, (streaming.rebuilds, peak)
    assert 300 < peak < 300 + 1000  # bounded: the limit plus what one segment of 6 notes brings
    assert streamed == [n.to_json() for n in pipeline.annotate_many(notes)]


# Sentences a reader would draw, for the rules the splitter documents (line breaks, blank
# lines, list markers, abbreviations, terminal punctuation); checked by hand, not by a copy.
SPLITS = [
    ("1. Aspirin\n2. Heparin", ["1. Aspirin\n", "2. Heparin"]),
    ("Dr. Smith saw pt.\nNo fever.\n\n- cough\n* rash", ["Dr. Smith saw pt.\n", "No fever.\n\n", "- cough\n", "* rash"]),
    ("A.\nb", ["A.\nb"]),
    ("HPI:\nfoo", ["HPI:\nfoo"]),
    ("The patient was seen. She denies pain.", ["The patient was seen.", "She denies pain."]),
    ("BP was 120/80 mmHg, i.e. normal. Pt. is stable.", ["BP was 120/80 mmHg, i.e. normal.", "Pt. is stable."]),
    ("Chest pain\nradiating to the arm.\nNo fever.", ["Chest pain\nradiating to the arm.\n", "No fever."]),
    ("HISTORY OF PRESENT ILLNESS:\nThe patient is a 60 y.o. man.\n\nMEDICATIONS:\n1. Metoprolol 25 mg.\n2. Aspirin.",
     ["HISTORY OF PRESENT ILLNESS:\n", "The patient is a 60 y.o. man.\n\n", "MEDICATIONS:\n", "1. Metoprolol 25 mg.\n", "2. Aspirin."]),
    ("", []),
]


def test_sentence_splitter_draws_the_sentences_a_reader_would(pipeline):
    from healthfm_desktop.core.records.sentences import split_sentences

    for text, expected in SPLITS:
        assert [s.text for s in split_sentences(pipeline.nlp.make_doc(text)).sents] == expected, text


def test_sentence_splitter_keeps_its_line_rules_on_real_notes(pipeline, case_reports):
    from healthfm_desktop.core.records.sentences import _BULLETS, split_sentences

    with (DATA / "negex_context.jsonl").open(encoding="utf-8") as handle:
        kit = [json.loads(line)["text"] for line in handle][:800]
    checked = 0
    for text in [r["text"] for r in case_reports] + kit:
        doc = split_sentences(pipeline.nlp.make_doc(text))
        for i in range(1, len(doc)):
            token, before = doc[i], doc[i - 1]
            if token.is_space:
                assert not token.is_sent_start  # whitespace belongs to the sentence before it
                continue
            if before.is_space and before.text.count("\n") > 1:
                assert token.is_sent_start, (text[:80], token.i)  # a blank line always ends a sentence
                checked += 1
            elif before.is_space and "\n" in before.text:
                first = token.text[0]
                # after one line break: a capital or digit starts a sentence, a lower-case word goes on
                assert token.is_sent_start == (first.isupper() or first.isdigit() or token.text in _BULLETS) or not first.isalpha(), (text[:80], token.i)
                checked += 1
    assert checked > 100
