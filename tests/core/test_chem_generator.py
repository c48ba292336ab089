"""The SMILES language model: one tokeniser for training and app, the training script runs (and
resumes) on a tiny subset, its one-step ONNX export equals the torch model token by token, the
app's numpy sampler draws valid SMILES from the shipped model, and model-based analogues of a
seed are valid, standardised, new, similar enough and labelled with their origin."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rdkit import Chem

from healthfm_desktop.core.chemistry.smiles_tokens import SmilesTokenError, Vocabulary, tokenize

REPO = Path(__file__).resolve().parents[2]
TRAINING = REPO / "models" / "training"
SHIPPED = (REPO / "models" / "smiles_generator.json").exists()


def test_tokenizer_keeps_multi_character_tokens_whole():
    assert tokenize("ClC(Br)c1cc[nH]c1") == ["Cl", "C", "(", "Br", ")", "c", "1", "c", "c", "[nH]", "c", "1"]
    assert tokenize("C[C@@H](N)C(=O)[O-]") == ["C", "[C@@H]", "(", "N", ")", "C", "(", "=", "O", ")", "[O-]"]
    assert tokenize("C%12CC%12") == ["C", "%12", "C", "C", "%12"]
    with pytest.raises(SmilesTokenError):
        tokenize("CC{x}")


def test_vocabulary_round_trip_and_unknown_tokens():
    smiles = ["CCO", "c1ccccc1Cl", "C[NH3+]"]
    vocab = Vocabulary.build(smiles)
    assert vocab.tokens[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    for s in smiles:
        ids = vocab.encode(s)
        assert ids[0] == vocab.bos and ids[-1] == vocab.eos and vocab.decode(ids) == s
    assert vocab.unk in vocab.encode("CBr")
    # the same data in another order gives the same ids
    assert Vocabulary.build(reversed(smiles)).tokens == vocab.tokens


@given(st.text(max_size=60))
def test_tokenizer_raises_only_its_own_error(text):
    try:
        tokens = tokenize(text)
    except SmilesTokenError:
        return
    assert "".join(tokens) == text


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    sys.path.insert(0, str(TRAINING))
    import train_smiles_generator as script

    out = tmp_path_factory.mktemp("smiles_model")
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    common = ["--limit", "300", "--batch", "16", "--hidden", "24", "--embedding", "8", "--out", str(out),
              "--checkpoints", str(checkpoints), "--samples", "40", "--checkpoint-every", "2"]
    assert script.main(common + ["--steps", "4"]) == 0
    return script, out, checkpoints, common


def test_training_script_runs_resumes_and_writes_model_manifest_card(tiny_run, capsys):
    import json

    import torch

    script, out, checkpoints, common = tiny_run
    assert torch.load(checkpoints / "smiles_generator.pt", weights_only=False)["step"] == 4
    assert script.main(common + ["--steps", "6"]) == 0
    assert "resumed from step 4" in capsys.readouterr().out
    assert torch.load(checkpoints / "smiles_generator.pt", weights_only=False)["step"] == 6
    manifest = json.loads((out / "smiles_generator.json").read_text())
    assert set(manifest["metrics"]) >= {"validity", "uniqueness", "novelty"}
    assert manifest["training"]["steps"] == 6
    assert "validity" in (out / "smiles_generator.md").read_text()


def test_onnx_step_equals_the_torch_model_token_by_token(tiny_run):
    import torch

    from healthfm_desktop.core.chemistry.generator import SmilesGenerator
    from healthfm_desktop.core.inference.registry import load_registry

    script, out, checkpoints, _ = tiny_run
    saved = torch.load(checkpoints / "smiles_generator.pt", weights_only=False)
    generator = SmilesGenerator(load_registry(out))
    # training and app share one vocabulary (the manifest's labels are the checkpoint's tokens)
    assert generator.vocab.tokens == saved["vocab"]
    model = script.build_model(len(saved["vocab"]), 8, 24, 2)
    model.load_state_dict(saved["model"])
    model.eval()
    for smiles in ["CCOc1ccccc1", "Cc1ccc(Cl)cc1N", "O=C(O)C1CC1"]:
        ids = generator.vocab.encode(smiles)
        with torch.no_grad():
            expected, _ = model(torch.tensor([ids]))
        state = np.zeros((2, 1, 24), dtype=np.float32)
        for t, token in enumerate(ids):
            logits, state = generator.step(np.array([token]), state)
            np.testing.assert_allclose(logits[0], expected[0, t].numpy(), rtol=1e-4, atol=1e-5)


pytestmark_shipped = pytest.mark.skipif(not SHIPPED, reason="models/smiles_generator.onnx is not trained yet")


@pytestmark_shipped
def test_numpy_sampling_of_the_shipped_model_gives_valid_smiles():
    from healthfm_desktop.core.chemistry.generator import SmilesGenerator

    generator = SmilesGenerator()
    drawn = generator.sample(300, rng=np.random.default_rng(7))
    assert len(drawn) == 300
    valid = [s for s in drawn if s and Chem.MolFromSmiles(s) is not None]
    # the model card's validity (10,000 samples, same decoding), less three binomial s.d. of 300
    assert len(valid) >= (generator.manifest.metrics["validity"] - 0.08) * len(drawn)
    assert len(set(valid)) >= 0.95 * len(valid)
    # the same seed draws the same molecules; a prefix is kept at the start of every sample
    assert generator.sample(20, rng=np.random.default_rng(5)) == generator.sample(20, rng=np.random.default_rng(5))
    prefix = generator.encode_prefix("c1ccc(")
    assert all(s.startswith("c1ccc(") for s in generator.sample(20, rng=np.random.default_rng(1), prefixes=[prefix]))
    with pytest.raises(ValueError):
        generator.encode_prefix("[Se]C")


@pytestmark_shipped
def test_model_analogues_are_valid_standardised_novel_and_similar():
    from healthfm_desktop.core.chemistry.analogues import generate_analogues
    from healthfm_desktop.core.chemistry.fingerprints import morgan_fingerprint

    from rdkit import DataStructs

    seed = Chem.MolFromSmiles("Cc1ccc(NC(=O)c2ccc(Cl)cc2)cc1O")
    known = {"Cc1ccc(NC(=O)c2ccc(F)cc2)cc1O"}
    analogues, report = generate_analogues(seed, count=20, known=known, predict=False, source="model",
                                           min_similarity=0.4, model_samples=600, random_seed=3)
    assert report.model_samples == 600 and report.model_valid >= 0.8 * 600
    assert len(analogues) == 20
    smiles = [a.smiles for a in analogues]
    assert len(set(smiles)) == 20 and not set(smiles) & (known | {Chem.MolToSmiles(seed)})
    seed_fp = morgan_fingerprint(seed)
    for a in analogues:
        assert a.origin == "model" and Chem.MolToSmiles(Chem.MolFromSmiles(a.smiles)) == a.smiles
        assert a.similarity >= 0.4
        assert a.similarity == pytest.approx(DataStructs.TanimotoSimilarity(seed_fp, morgan_fingerprint(a.mol)))
    both, _ = generate_analogues(seed, count=30, predict=False, source="both", min_similarity=0.3, model_samples=600)
    assert {a.origin for a in both} == {"model", "mutation"}


def test_bad_generation_options_are_refused():
    from healthfm_desktop.core.chemistry.analogues import generate_analogues

    seed = Chem.MolFromSmiles("CCO")
    with pytest.raises(ValueError):
        generate_analogues(seed, source="dream")
    with pytest.raises(ValueError):
        generate_analogues(seed, min_similarity=1.5)
