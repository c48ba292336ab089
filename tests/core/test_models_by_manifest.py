"""Models by manifest: a classifier dropped into the user's model folder with a valid manifest
is listed and run by `images classify --model` with no code change; invalid or clashing
manifests are listed with a reason that names the field."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from healthfm_desktop.cli import main
from healthfm_desktop.core.inference.registry import load_registry, user_models_dir, write_manifest

IMAGES = Path(__file__).resolve().parents[1] / "data" / "images"
XRAY = IMAGES / "pneumoniamnist_test_045_pneumonia.png"
ULTRASOUND = IMAGES / "hc18_test_228_HC.png"


def _brightness_classifier(path: Path) -> None:
    """(N,1,16,16) -> mean -> logits [6 - 20 m, 20 m - 6] -> softmax: "bright" when mean > 0.3."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 1, 16, 16])
    probabilities = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["mean", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["scaled"]),
        helper.make_node("Add", ["scaled", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    inits = [helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 1]),
             helper.make_tensor("w", TensorProto.FLOAT, [1, 2], [-20.0, 20.0]),
             helper.make_tensor("b", TensorProto.FLOAT, [2], [6.0, -6.0])]
    graph = helper.make_graph(nodes, "brightness", [image], [probabilities], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))


def _manifest(**overrides):
    manifest = {
        "name": "brightness", "version": "0.1", "file": "brightness.onnx", "task": "image-classification",
        "inputs": [{"name": "image", "shape": ["batch", 1, 16, 16], "dtype": "float32"}],
        "outputs": [{"name": "probabilities", "shape": ["batch", 2], "dtype": "float32"}],
        "labels": ["dark", "bright"], "license": "MIT",
        "preprocessing": {"steps": [{"op": "centre_square"}, {"op": "resize", "size": [16, 16]},
                                    {"op": "scale", "divide": 255}]},
    }
    manifest.update(overrides)
    return manifest


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HEALTHFM_HOME", str(tmp_path / "home"))
    folder = user_models_dir()
    _brightness_classifier(folder / "brightness.onnx")
    return folder


def _expected_bright(path: Path) -> float:
    grey = np.asarray(Image.open(path).convert("L"))
    side = min(grey.shape)
    top, left = (grey.shape[0] - side) // 2, (grey.shape[1] - side) // 2
    small = cv2.resize(grey[top:top + side, left:left + side], (16, 16), interpolation=cv2.INTER_AREA)
    mean = small.astype(np.float64).mean() / 255.0
    logits = np.array([6 - 20 * mean, 20 * mean - 6])
    return float(np.exp(logits[1]) / np.exp(logits).sum())


def _lines(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_a_classifier_dropped_in_the_user_folder_is_listed_and_runs(user_folder, capsys):
    write_manifest(user_folder / "brightness.json", _manifest())
    assert main(["models", "list", "--json"]) == 0
    entries = {e["name"]: e for e in _lines(capsys)}
    assert entries["brightness"] == {
        "name": "brightness", "version": "0.1", "task": "image-classification", "source": "user",
        "path": str(user_folder / "brightness.onnx"), "valid": True, "error": None}
    assert entries["pneumonia_resnet"]["source"] == "shipped" and entries["pneumonia_resnet"]["valid"]

    assert main(["images", "classify", str(XRAY), str(ULTRASOUND), "--model", "brightness", "--json"]) == 0
    results = _lines(capsys)
    assert [r["model"] for r in results] == ["brightness", "brightness"]
    for record, path in zip(results, (XRAY, ULTRASOUND)):
        expected = _expected_bright(path)
        assert record["probabilities"]["bright"] == pytest.approx(expected, abs=1e-4)
        assert record["label"] == ("bright" if expected > 0.5 else "dark")
    # the ultrasound frame is mostly black: the model must say so, or the test proves nothing
    assert {r["label"] for r in results} == {"bright", "dark"}


def test_invalid_manifest_is_listed_with_the_field_at_fault(user_folder, capsys):
    bad = _manifest(labels=["only-one"], preprocessing={"steps": [{"op": "blur"}]})
    bad["sha256"] = "0" * 64
    (user_folder / "brightness.json").write_text(json.dumps(bad), encoding="utf-8")
    assert main(["models", "list", "--json"]) == 1
    entry = next(e for e in _lines(capsys) if e["source"] == "user")
    assert entry["valid"] is False and entry["name"] == "brightness"
    assert "labels" in entry["error"] and "'blur' is not one of" in entry["error"]
    assert main(["images", "classify", str(XRAY), "--model", "brightness", "--json"]) == 1
    assert "not valid" in capsys.readouterr().err


def test_tampered_user_model_and_name_clash_are_refused(user_folder, capsys):
    write_manifest(user_folder / "brightness.json", _manifest())
    write_manifest(user_folder / "impostor.json", _manifest(name="pneumonia_resnet"))
    _brightness_classifier(user_folder / "brightness.onnx")  # same graph: still valid
    with open(user_folder / "brightness.onnx", "ab") as handle:
        handle.write(b"\0")  # now it is not the file the manifest describes
    os.utime(user_folder / "brightness.onnx", (1, 1))
    registry = load_registry()
    entries = {(e.name, e.source): e for e in registry.entries()}
    assert "does not match its manifest" in entries[("brightness", "user")].error
    assert "already uses" in entries[("impostor", "user")].error
    assert registry.get("pneumonia_resnet").source == "shipped"


def test_wrong_task_for_images_classify(user_folder, capsys):
    assert main(["images", "classify", str(XRAY), "--model", "hc18_unet", "--json"]) == 1
    assert "image-segmentation model, not an image classifier" in capsys.readouterr().err


def test_manifest_schema_is_valid_and_shipped_manifests_pass_it():
    from jsonschema import Draft202012Validator

    from healthfm_desktop.core.inference.registry import manifest_schema, validate_manifest

    Draft202012Validator.check_schema(manifest_schema())
    folder = Path(__file__).resolve().parents[2] / "models"
    for path in folder.glob("*.json"):
        if not path.name.endswith(".tokenizer.json"):
            assert validate_manifest(json.loads(path.read_text())) == [], path.name
