"""The shipped encoders through the app's own path: the text encoder (ONNX + tokenizers) gives
unit vectors that rank a paraphrase above an unrelated sentence; the image encoder embeds DICOM,
PNG and arrays alike and keeps chest X-rays apart from fetal ultrasound."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from healthfm_desktop.core.foundation.encoders import encoder_info, encoder_name, load_encoder
from healthfm_desktop.core.foundation.images import embed_images
from healthfm_desktop.core.imaging.ai.preprocessing import read_image

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "tests" / "data" / "images"


def test_text_encoder_ranks_meaning_not_words():
    encoder = load_encoder("text")
    vectors = encoder.embed([
        "The patient denies chest pain.",
        "No chest pain was reported by the patient.",
        "The chest X-ray shows a right lower lobe infiltrate.",
        "Metformin 500 mg twice daily was started.",
    ])
    assert vectors.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.1 and similarity[0, 1] > similarity[0, 3] + 0.1


def test_text_encoder_embeds_long_notes_and_batches_by_length():
    encoder = load_encoder("text")
    long_note = "Patient seen in clinic for follow up of hypertension. " * 200
    short = ["Afebrile.", "Lungs clear to auscultation bilaterally."]
    together = encoder.embed([short[0], long_note, short[1]])
    alone = encoder.embed(short)
    np.testing.assert_array_equal(together[[0, 2]], alone)  # a text's embedding does not depend on its neighbours
    assert np.isfinite(together).all()


def test_text_encoder_reads_a_long_note_past_its_first_window_up_to_the_manifest_limit():
    encoder = load_encoder("text")
    filler = "Patient seen in clinic for follow up of hypertension. " * 40  # ~440 tokens: past one window
    urology = "Cystoscopy showed a bladder tumour; transurethral resection of the prostate is planned."
    cardiology = "Echocardiogram showed a reduced ejection fraction; coronary angiography is planned."
    ends_u, ends_c, u, c = encoder.embed([filler + urology, filler + cardiology,
                                          "bladder tumour and prostate surgery", "heart failure and a coronary angiogram"])
    assert ends_u @ u > ends_c @ u and ends_c @ c > ends_u @ c  # the ending, past 256 tokens, is read
    np.testing.assert_allclose(np.linalg.norm([ends_u, ends_c], axis=1), 1.0, atol=1e-5)
    assert encoder.max_windows == 64  # the manifest's max_windows: what lies past 64 windows is not read
    far = filler * 40  # ~17,600 tokens
    np.testing.assert_array_equal(*encoder.embed([far + urology, far + cardiology]))


def test_image_encoder_embeds_files_and_arrays_alike():
    dicom = read_image(REPO / "resources" / "samples" / "images" / "chest_xray_pneumonia.dcm")
    png = read_image(IMAGES / "pneumoniamnist_test_045_pneumonia.png")
    vectors = embed_images([dicom, png, png.pixels])
    info = encoder_info("image")
    assert vectors.shape == (3, info.dim) and info.name == encoder_name("image") == "image_encoder"
    np.testing.assert_array_equal(vectors[1], vectors[2])


def test_image_embeddings_separate_xray_from_ultrasound():
    xrays = [read_image(p) for p in sorted(IMAGES.glob("pneumoniamnist_*.png"))]
    ultrasound = [read_image(p) for p in sorted(IMAGES.glob("hc18_test_*_HC.png"))]
    vectors = embed_images(xrays + ultrasound)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = unit @ unit.T
    n = len(xrays)
    within = min(similarity[:n, :n].min(), similarity[n:, n:].min())
    across = similarity[:n, n:].max()
    assert within > across  # every X-ray is closer to every X-ray than to any ultrasound frame


def test_molecule_encoder_is_the_shipped_models_featurisation():
    from rdkit import Chem

    from healthfm_desktop.core.chemistry.featurize import featurize_mols

    mols = [Chem.MolFromSmiles(s) for s in ("CCO", "c1ccccc1O")]
    np.testing.assert_array_equal(load_encoder("molecule").embed(mols), featurize_mols(mols))
    with pytest.raises(InterruptedError):
        load_encoder("molecule").embed(mols, cancelled=lambda: True)


def test_molecule_embedding_on_the_process_pool_matches_in_process_and_cancels(monkeypatch):
    from rdkit import Chem

    from healthfm_desktop.core.chemistry.featurize import featurize_mol
    from healthfm_desktop.core.foundation import encoders

    mols = [Chem.MolFromSmiles(s) for s in ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CCN(CC)CC"] * 20]
    monkeypatch.setattr(encoders, "_POOL_FROM", 10)  # 80 molecules go to the pool
    encoder = encoders.MoleculeEncoder()
    seen = []
    out = encoder.embed(mols, progress=lambda done, total: seen.append((done, total)))
    expected = np.stack([featurize_mol(m) for m in mols]).astype(np.float32)
    assert np.array_equal(out, expected, equal_nan=True)
    assert seen[-1] == (80, 80) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    with pytest.raises(InterruptedError):
        encoder.embed(mols, cancelled=lambda: True)


def test_a_text_head_made_on_encoder_1_0_keeps_reading_only_the_first_window(tmp_path, monkeypatch):
    """Encoder 1.1.0 reads long notes in windows; a user's text model made on 1.0.x embeddings
    saw only each note's first 256 tokens, and is fed those again rather than silently shifted."""
    import json

    from healthfm_desktop.core.foundation.adaptation import AdaptedModel, train_adapted_model
    from healthfm_desktop.core.foundation.datasets import Items
    from healthfm_desktop.core.inference.registry import load_registry

    monkeypatch.setenv("HEALTHFM_HOME", str(tmp_path / "home"))
    items = Items("text")
    for i in range(12):
        items.add(f"u{i}", f"Cystoscopy {i}: bladder tumour, prostate resection planned.", "urology")
        items.add(f"c{i}", f"Echo {i}: reduced ejection fraction, coronary angiography planned.", "cardiology")
    train_adapted_model("text", items, "my_specialty")
    registry = load_registry()
    current = AdaptedModel.load(registry.get("my_specialty"), registry)
    manifest_path = registry.get("my_specialty").model_path.with_suffix(".json")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["encoder_version"] == encoder_info("text", registry).version == "1.1.0"
    manifest["encoder_version"] = "1.0.0"  # as a model adapted before the windowed reading says
    manifest_path.write_text(json.dumps(manifest))
    registry = load_registry()
    older = AdaptedModel.load(registry.get("my_specialty"), registry)
    filler = "Patient seen in clinic for follow up of hypertension. " * 40
    note = filler + "Cystoscopy showed a bladder tumour; transurethral resection of the prostate is planned."
    encoder = load_encoder("text")
    np.testing.assert_array_equal(older.embed([note]), encoder.embed([note], max_windows=1))
    np.testing.assert_array_equal(current.embed([note]), encoder.embed([note]))
    assert not np.array_equal(older.embed([note]), current.embed([note]))
    short = ["Afebrile."]
    np.testing.assert_array_equal(older.embed(short), current.embed(short))  # one window: the same


def test_an_image_head_made_on_another_image_encoder_version_is_refused(tmp_path, monkeypatch):
    """A retrained image encoder embeds into another space: a user's image model made on an
    earlier minor version is refused with what to do, not run on the wrong inputs."""
    import json

    from healthfm_desktop.core.errors import ModelError
    from healthfm_desktop.core.foundation.adaptation import AdaptedModel, train_adapted_model
    from healthfm_desktop.core.foundation.datasets import Items
    from healthfm_desktop.core.inference.registry import load_registry

    monkeypatch.setenv("HEALTHFM_HOME", str(tmp_path / "home"))
    items = Items("image")
    rng = np.random.default_rng(0)
    for i in range(10):
        items.add(f"d{i}", (rng.random((32, 32)) * 80).astype(np.uint8), "dark")
        items.add(f"b{i}", (175 + rng.random((32, 32)) * 80).astype(np.uint8), "bright")
    train_adapted_model("image", items, "my_brightness")
    registry = load_registry()
    current = encoder_info("image", registry).version
    AdaptedModel.load(registry.get("my_brightness"), registry)  # made on this version: runs
    manifest_path = registry.get("my_brightness").model_path.with_suffix(".json")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["encoder_version"] == current
    major, minor = (int(p) for p in current.split(".")[:2])
    manifest["encoder_version"] = f"{major}.{minor + 1}.0"
    manifest_path.write_text(json.dumps(manifest))
    registry = load_registry()
    with pytest.raises(ModelError, match="train it again"):
        AdaptedModel.load(registry.get("my_brightness"), registry)
    manifest["encoder_version"] = f"{major}.{minor}.7"  # a patch release keeps the space
    manifest_path.write_text(json.dumps(manifest))
    registry = load_registry()
    AdaptedModel.load(registry.get("my_brightness"), registry)
