"""The NER training script runs end to end on a tiny subset, the app featurises tokens with
exactly the function the training used, and the shipped tagger re-run on the MACCROBAT test
documents gives its manifest's figure."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from healthfm_desktop.core.inference.registry import load_registry
from healthfm_desktop.core.records.ner_features import build_word_index, decode_bio, encode_tokens


def test_tiny_training_run_writes_model_manifest_and_card(repo_root, tmp_path):
    result = subprocess.run(
        [sys.executable, str(repo_root / "models" / "training" / "train_ner.py"), "--tiny", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((tmp_path / "ner_clinical.json").read_text())
    assert manifest["labels"][0] == "O" and len(manifest["labels"]) == 21
    from healthfm_desktop.core.records.ner_model import NerTagger

    tagger = NerTagger(load_registry(tmp_path))  # the tokenizer side file is copied beside it
    assert tagger.input_names == ["word_ids", "char_ids", "shape_ids", "piece_ids"]
    feeds = dict(zip(tagger.input_names, encode_tokens([["No", "fever", "."]], tagger.word_index, tagger.encoder.static)))
    (logits,) = tagger.session.run(None, feeds)
    assert logits.shape == (1, 3, 21) and np.all(np.isfinite(logits))
    assert "relaxed" in (tmp_path / "ner_clinical.md").read_text()


def test_app_and_training_featurise_identically(repo_root):
    sys.path.insert(0, str(repo_root / "models" / "training"))
    import spacy
    import train_ner

    from healthfm_desktop.core.records.ner_model import NerTagger

    tagger = NerTagger()
    record = {"text": "Metoprolol 25 mg PO BID.\nNo chest pain.", "spans": []}
    rows = train_ner.tokenise_document(spacy.blank("en"), record, {}, None)
    words = [w for w, _, _ in rows]
    train_tensors = encode_tokens(words, tagger.word_index, tagger.encoder.static)
    app_rows = [[t.text for t in sent if not t.is_space] for sent in __import__("healthfm_desktop.core.records.pipeline", fromlist=["x"]).build_pipeline().nlp("Metoprolol 25 mg PO BID.\nNo chest pain.").sents]
    assert app_rows == words
    app_tensors = tagger.encoder.encode(app_rows)
    assert len(train_tensors) == len(app_tensors) == len(tagger.input_names)
    for a, b in zip(train_tensors, app_tensors):
        assert np.array_equal(a, b)


def test_shipped_model_verifies_and_decodes():
    registry = load_registry()
    manifest = registry.verify("ner_clinical")
    assert decode_bio([1, 2, 0, 2, 2], manifest.labels) == [(0, 2, "PROBLEM"), (3, 5, "PROBLEM")]


def test_shipped_model_logits_do_not_depend_on_batch_padding():
    # the masked convolutions make a row's logits the same alone or beside a longer row, so the
    # pipeline may batch rows of any lengths together
    from healthfm_desktop.core.records.ner_model import NerTagger

    tagger = NerTagger()
    short = ["No", "fever", "or", "chills", "."]
    long = "Metoprolol 25 mg PO BID was started for atrial fibrillation with rapid ventricular response .".split()
    alone = tagger.session.run(None, dict(zip(tagger.input_names, encode_tokens([short], tagger.word_index, tagger.encoder.static))))[0]
    batched = tagger.session.run(None, dict(zip(tagger.input_names, encode_tokens([long, short], tagger.word_index, tagger.encoder.static))))[0]
    assert np.allclose(alone[0], batched[1, : len(short)], atol=1e-4)


def test_viterbi_decoding_only_yields_valid_bio_sequences():
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import arrays

    from healthfm_desktop.core.records.labels import CLINICAL_LABELS
    from healthfm_desktop.core.records.ner_features import bio_tags
    from healthfm_desktop.core.records.tag_decoding import viterbi_bio

    tags = bio_tags(CLINICAL_LABELS)

    @settings(max_examples=80, deadline=None)
    @given(arrays(np.float32, st.tuples(st.integers(0, 12), st.just(len(tags))), elements=st.floats(-8, 8, width=32)))
    def check(logits):
        path = viterbi_bio(logits, tags)
        assert len(path) == len(logits)
        for k, tag_id in enumerate(path):
            tag = tags[tag_id]
            if tag.startswith("I-"):
                assert k > 0 and tags[path[k - 1]][2:] == tag[2:] and tags[path[k - 1]] != "O"
        # where the argmax is already valid BIO, Viterbi keeps it
        best = logits.argmax(-1).tolist() if len(logits) else []
        valid = all(not tags[t].startswith("I-") or (k > 0 and tags[best[k - 1]] in (f"B-{tags[t][2:]}", tags[t])) for k, t in enumerate(best))
        unique = all(np.sort(row)[-1] - np.sort(row)[-2] > 1e-3 for row in logits)
        if valid and unique:
            assert path == best

    check()


def test_shipped_model_scores_the_maccrobat_test_documents_as_its_manifest_says(repo_root):
    # the shipped ONNX graph re-run on the held-out test documents, decoded as the training script
    # scores the model alone (argmax), must give the manifest's figure (not the figure itself)
    sys.path.insert(0, str(repo_root / "models" / "training"))
    import spacy
    import torch
    import train_ner

    from healthfm_desktop.core.records.ner_model import NerTagger

    tagger = NerTagger()
    session, manifest = tagger.session, tagger.manifest

    class ShippedGraph:  # what predict_document calls, answered by the ONNX session
        def eval(self):
            return self

        def __call__(self, *tensors):
            return torch.from_numpy(session.run(None, dict(zip(tagger.input_names, (t.numpy() for t in tensors))))[0])

    data = repo_root / "models" / "training" / "data" / "text"
    split = json.loads((data / "maccrobat_split.json").read_text())
    documents = {r["id"]: r for r in train_ner.read_jsonl(data / "maccrobat2020.jsonl")}
    nlp = spacy.blank("en")
    gold = [train_ner.gold_spans(documents[i]) for i in split["test"]]
    predicted = [train_ner.predict_document(ShippedGraph(), nlp, documents[i]["text"], tagger.word_index, static=tagger.encoder.static) for i in split["test"]]
    scores = train_ner.relaxed_overlap_scores(gold, predicted, train_ner.CLINICAL_LABELS)
    assert scores["micro"]["f1"] == pytest.approx(manifest.metrics["relaxed_overlap_micro_f1"], abs=2e-3)
    assert scores["micro"]["f1"] >= 0.72  # 3.0.0 (static word vectors) 0.740; 2.0.0 scored 0.703


def test_static_word_vectors_are_a_row_per_known_word_else_its_pieces_rows():
    # the tagger's static vectors are a table lookup: a listed word (any case) is its own row,
    # another word the rows of its WordPiece pieces, averaged in the graph
    from healthfm_desktop.core.records.ner_features import MAX_PIECES
    from healthfm_desktop.core.records.ner_model import NerTagger

    tagger = NerTagger()
    static = tagger.encoder.static
    words = tagger.manifest.preprocessing["static_vectors"]["static_words"]
    known = "hepatomegaly"
    assert known in words
    own = static.rows([known, "Hepatomegaly"])
    assert own.shape == (2, MAX_PIECES) and (own[:, 1:] == 0).all() and own[0, 0] == own[1, 0] == static.word_row[known]
    unknown = "hepatosplenomegalyzz"
    assert unknown not in words
    pieces = static.tokenizer.encode(unknown, add_special_tokens=False).ids
    assert 2 <= len(pieces) and static.rows([unknown])[0].tolist() == ([p + 1 for p in pieces] + [0] * MAX_PIECES)[:MAX_PIECES]
    # the graph reads them: zeroing a sentence's rows changes its logits
    row = ["Examination", "showed", unknown, "."]
    feeds = dict(zip(tagger.input_names, tagger.encoder.encode([row])))
    with_pieces = tagger.session.run(None, feeds)[0]
    feeds["piece_ids"] = np.zeros_like(feeds["piece_ids"])
    without = tagger.session.run(None, feeds)[0]
    assert not np.allclose(with_pieces, without, atol=1e-3)


def _plain_viterbi(logits, start, transition):
    """The search written out, one row and one full [K, K] step a token (the reference)."""
    scores = logits.astype(np.float64)
    scores = scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)
    best, back = scores[0] + start, np.zeros(scores.shape, dtype=np.int64)
    for t in range(1, len(scores)):
        candidates = best[:, None] + transition
        back[t] = np.argmax(candidates, axis=0)
        best = candidates[back[t], np.arange(scores.shape[1])] + scores[t]
    path = [int(np.argmax(best))]
    for t in range(len(scores) - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return path[::-1]


def test_viterbi_on_many_rows_of_any_lengths_gives_each_row_its_own_path():
    """The tagger decodes all its rows that break BIO in one batched search (padded to the
    longest, a row's lengths given): each row gets exactly the path it gets alone, ties
    (rounded logits) included."""
    from healthfm_desktop.core.records.labels import CLINICAL_LABELS
    from healthfm_desktop.core.records.ner_features import bio_tags
    from healthfm_desktop.core.records.tag_decoding import bio_transitions, viterbi_bio, viterbi_bio_rows

    tags = bio_tags(CLINICAL_LABELS)
    start, transition = bio_transitions(tags)
    rng = np.random.default_rng(19)
    for trial in range(60):
        lengths = rng.integers(1, 30, size=rng.integers(1, 8))
        logits = rng.normal(scale=3, size=(len(lengths), lengths.max(), len(tags))).astype(np.float32)
        if trial % 2:
            logits = np.round(logits)
        paths = viterbi_bio_rows(logits, tags, (start, transition), lengths)
        for row, length, path in zip(logits, lengths, paths):
            expected = _plain_viterbi(row[:length], start, transition)
            assert path[:length].tolist() == expected
            assert viterbi_bio(row[:length], tags) == expected


def test_app_decoding_is_valid_bio_and_argmax_where_argmax_is_valid():
    """The app's tagger keeps the argmax of a row that forms valid BIO and decodes any other
    row with the BIO-constrained Viterbi search (issue 21: +0.005 dev relaxed F1)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import arrays

    from healthfm_desktop.core.records.ner_model import NerTagger
    from healthfm_desktop.core.records.tag_decoding import viterbi_bio

    tagger = NerTagger()
    tags = tagger.tags

    def valid(path):
        return all(not tags[t].startswith("I-") or (k > 0 and tags[path[k - 1]] in (f"B-{tags[t][2:]}", tags[t])) for k, t in enumerate(path))

    @settings(max_examples=60, deadline=None)
    @given(arrays(np.int64, st.tuples(st.integers(1, 4), st.integers(1, 10)), elements=st.integers(0, len(tags) - 1)))
    def check(best):
        assert tagger._breaks_bio(best).tolist() == [not valid(row.tolist()) for row in best]

    check()
    rows = [["No", "acute", "distress", "."], ["Aspirin", "81", "mg", "daily", "for", "chest", "pain", "."], ["Echocardiography", "showed", "a", "dilated", "left", "ventricle"]]
    for (ids, _probabilities), row in zip(tagger.tag_rows_with_probabilities(rows), rows):
        assert valid(ids)
        feeds = dict(zip(("word_ids", "char_ids", "shape_ids", "piece_ids"), tagger.encoder.encode([row])))
        logits = tagger.session.run(None, {n: feeds[n] for n in tagger.input_names})[0][0]
        assert ids == viterbi_bio(logits, tags)
