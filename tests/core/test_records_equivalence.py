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
    encoder = TokenEncoder(word_index, max_tokens=300)  # small: the cache is reset along the way
    for begin in range(0, len(sentences), 17):
        batch = sentences[begin : begin + 17]
        for ours, reference in zip(encoder.encode(batch), encode_tokens(batch, word_index)):
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


def _reference_split_sentences(doc):
    """The splitter as first written (Token objects, one attribute at a time): the reference
    for the array-based one in core/records/sentences.py."""
    from healthfm_desktop.core.records.sentences import _BULLETS, _END, _NOT_ENDING

    count = len(doc)
    if not count:
        return doc
    starts = [False] * count
    starts[0] = True
    previous_text = ""
    pending_break = 0
    header_colon = False
    list_number = False
    for i, token in enumerate(doc):
        text = token.text
        if token.is_space:
            newlines = text.count("\n")
            if newlines:
                pending_break = max(pending_break, 2 if newlines > 1 else 1)
            continue
        if i > 0:
            first = text[0]
            if pending_break == 2 or header_colon and pending_break:
                starts[i] = True
            elif pending_break == 1:
                starts[i] = first.isupper() or first.isdigit() or text in _BULLETS
            elif previous_text in _END and not first.islower() and not list_number:
                starts[i] = True
            elif previous_text.endswith(".") and len(previous_text) > 2 and previous_text.lower() not in _NOT_ENDING and first.isupper() and previous_text[-2].isalpha() and previous_text.count(".") == 1:
                starts[i] = True
        if text == ".":
            list_number = i >= 1 and starts[i - 1] and doc[i - 1].text.isdigit()
        elif not token.is_space:
            list_number = False
        if "\n" in token.whitespace_:
            pending_break = max(pending_break, 1)
            if token.whitespace_.count("\n") > 1:
                pending_break = 2
            header_colon = text == ":"
            previous_text = text
            continue
        header_colon = False
        pending_break = 0
        previous_text = text
    for i, token in enumerate(doc):
        token.is_sent_start = starts[i] and not token.is_space if i else True
    return doc


def test_sentence_splitter_gives_the_reference_sentences(pipeline, case_reports):
    from healthfm_desktop.core.records.sentences import split_sentences

    nlp = pipeline.nlp
    with (DATA / "negex_context.jsonl").open(encoding="utf-8") as handle:
        kit = [json.loads(line)["text"] for line in handle][:800]
    texts = [r["text"] for r in case_reports] + kit + ["", " ", "\n\n", "1. Aspirin\n2. Heparin", "Dr. Smith saw pt.\nNo fever.\n\n- cough\n* rash", "A.\nb", "HPI:\nfoo", "x\u2028y\r\nZ"]
    for text in texts:
        ours, reference = split_sentences(nlp.make_doc(text)), _reference_split_sentences(nlp.make_doc(text))
        assert [s.start for s in ours.sents] == [s.start for s in reference.sents] if len(ours) else True
        assert [t.is_sent_start for t in ours] == [t.is_sent_start for t in reference]
