"""The shipped image models run through the app's own path (file -> preprocessing -> ONNX ->
post-processing) and reproduce the test-split metrics their manifests claim; Settings choose
INT8 variants and the execution provider, with a clean CPU fallback."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from healthfm_desktop.core.imaging.ai import models as image_models
from healthfm_desktop.core.imaging.ai.classification import classify
from healthfm_desktop.core.imaging.ai.evaluation import accuracy, dice, roc_auc
from healthfm_desktop.core.imaging.ai.models import default_classifier, default_segmenter, load_model
from healthfm_desktop.core.imaging.ai.preprocessing import SourceImage, read_image
from healthfm_desktop.core.imaging.ai.segmentation import segment
from healthfm_desktop.core.inference.registry import load_registry
from healthfm_desktop.core.paths import settings_path
from tests.core.test_image_ai_helpers import IMAGE_TEST_DATA, REPO, make_dicom

CLASSIFIER, SEGMENTER = default_classifier(), default_segmenter()  # chosen by manifest task

DATA = REPO / "models" / "training" / "data" / "images"


@pytest.fixture
def settings_file():
    path = settings_path()
    yield path
    path.unlink(missing_ok=True)


def _write_settings(path, **values):
    lines = ["[inference]"] + [f"{k}={v}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# the INT8 variants too, run as the app runs them (onnxruntime's fused kernels of this CPU): a
# copy quantised with full-range weights passed at training and called 38 % of these X-rays wrong
# on an AVX2 CPU without VNNI (models/training/requantise_image_models.py)
@pytest.mark.parametrize("quantized", [False, True], ids=["float", "int8"])
def test_classifier_reproduces_its_manifest_metrics_from_png_files(tmp_path, quantized):
    data = np.load(DATA / "pneumoniamnist_28.npz")
    labels = data["test_labels"].reshape(-1)
    model = load_model(CLASSIFIER, quantized=quantized)
    assert model.manifest.name == CLASSIFIER + ("_int8" if quantized else "")
    scores, predicted = [], []
    for i, pixels in enumerate(data["test_images"]):
        path = tmp_path / f"{i}.png"
        Image.fromarray(pixels).save(path)
        result = classify(read_image(path), model)
        # INT8 quantises its output too: each probability to a step of 1/255
        assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=0.01 if quantized else 1e-5)
        scores.append(result.probabilities["pneumonia"])
        predicted.append(model.manifest.labels.index(result.label))
    metrics = model.manifest.metrics
    assert roc_auc(labels, np.array(scores)) == pytest.approx(metrics["auc"]["value"], abs=1e-4)
    assert accuracy(labels, np.array(predicted)) == pytest.approx(metrics["acc"]["value"], abs=1e-4)
    # the published MedMNIST v2 ResNet-18 (28) bar
    assert metrics["auc"]["value"] > 0.944 and metrics["acc"]["value"] > 0.854


def test_saliency_is_a_map_over_the_image():
    image = read_image(IMAGE_TEST_DATA / "pneumoniamnist_test_001_pneumonia.png")
    result = classify(image)
    assert result.saliency.shape == image.shape
    assert result.saliency.min() >= 0 and result.saliency.max() == pytest.approx(1.0)
    assert 0.02 < float((result.saliency > 0.5).mean()) < 0.9  # focused, not everywhere


@pytest.mark.parametrize("quantized", [False, True], ids=["float", "int8"])
def test_segmenter_reproduces_its_manifest_dice_and_measures_heads(quantized):
    data = np.load(DATA / "hc18_seg_144x208.npz")
    model = load_model(SEGMENTER, quantized=quantized)
    assert model.manifest.name == SEGMENTER + ("_int8" if quantized else "")
    dices, errors = [], []
    for pixels, truth, hc, (sx, _) in zip(data["test_images"], data["test_masks"], data["test_hc_mm"], data["test_pixel_size_xy_mm"]):
        result = segment(SourceImage(pixels), float(sx), model, force=True)  # the metric, not the gate
        dices.append(dice(result.mask, truth))
        errors.append(abs(result.measurements["head_circumference_mm"] - hc))
    metrics = model.manifest.metrics
    assert np.mean(dices) == pytest.approx(metrics["dice"]["value"], abs=1e-4)
    assert np.mean(errors) == pytest.approx(metrics["hc_mean_absolute_error_mm"]["value"], abs=0.01)
    assert np.mean(dices) > 0.9


def test_dicom_spacing_wins_and_full_size_images_come_back_at_their_size(tmp_path):
    case = json.loads((IMAGE_TEST_DATA / "cases.json").read_text())["hc18"][0]
    pixels = np.asarray(Image.open(IMAGE_TEST_DATA / case["file"]))
    dicom = read_image(make_dicom(tmp_path / "us.dcm", pixels, "US", case["pixel_spacing_mm"]))
    result = segment(dicom, pixel_spacing_mm=99.0)
    assert result.spacing_source == "dicom"
    assert result.head_circumference_mm == pytest.approx(case["hc_mm"], rel=0.06)
    # the same scan at twice the size (as the original 800x540 files are): same head in mm
    big = np.asarray(Image.fromarray(pixels).resize((416, 288), Image.BILINEAR))
    result_big = segment(SourceImage(big), case["pixel_spacing_mm"] / 2)
    assert result_big.mask.shape == (288, 416)
    assert result_big.head_circumference_mm == pytest.approx(result.head_circumference_mm, rel=0.03)
    no_spacing = segment(SourceImage(pixels))
    assert "head_circumference_mm" not in no_spacing.measurements and no_spacing.measurements["head_circumference_px"] > 0


def test_quantized_setting_selects_the_int8_variant_only_where_shipped(settings_file):
    registry = load_registry()
    for base in (CLASSIFIER, SEGMENTER):
        _write_settings(settings_file, quantized="true")
        expected = base + "_int8" if base + "_int8" in registry.manifests else base
        assert image_models.model_name(base, registry) == expected
        assert load_model(base).manifest.name == expected
        _write_settings(settings_file, quantized="false")
        assert load_model(base).manifest.name == base
    for name in registry.names():
        if name.endswith("_int8") and name.split("_int8")[0] in (CLASSIFIER, SEGMENTER):
            manifest = registry.get(name)
            float_metrics = registry.get(manifest.extra["float_model"]).metrics
            key = "auc" if "auc" in float_metrics else "dice"
            assert float_metrics[key]["value"] - manifest.metrics[key]["value"] <= 0.005


@pytest.mark.parametrize("provider", ["NoSuchExecutionProvider", "CUDAExecutionProvider"])
def test_an_unavailable_provider_falls_back_to_the_cpu(settings_file, provider):
    import onnxruntime as ort

    if provider in ort.get_available_providers():
        pytest.skip(f"{provider} is really available here")
    reference = classify(read_image(IMAGE_TEST_DATA / "pneumoniamnist_test_010_pneumonia.png"), load_model(CLASSIFIER, provider="auto"))
    _write_settings(settings_file, provider=provider)
    model = load_model(CLASSIFIER)
    assert model.provider.active == "CPUExecutionProvider"
    assert any(provider in note for note in model.provider.notes)
    result = classify(read_image(IMAGE_TEST_DATA / "pneumoniamnist_test_010_pneumonia.png"), model)
    assert result.provider == "CPUExecutionProvider"
    assert result.probabilities == reference.probabilities


def test_a_tampered_model_is_refused(tmp_path):
    from healthfm_desktop.core.errors import ModelError

    for name in ("pneumonia_resnet.json", "pneumonia_resnet.onnx"):
        (tmp_path / name).write_bytes((REPO / "models" / name).read_bytes())
    data = bytearray((tmp_path / "pneumonia_resnet.onnx").read_bytes())
    data[-10] ^= 0xFF
    (tmp_path / "pneumonia_resnet.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match"):
        load_model(CLASSIFIER, registry=load_registry(tmp_path))
    assert os.path.exists(tmp_path / "pneumonia_resnet.onnx")
