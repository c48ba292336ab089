"""The model registry and the onnxruntime session factory, on real ONNX graphs built here."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from healthfm_desktop.core.errors import ModelError
from healthfm_desktop.core.inference import registry as registry_module
from healthfm_desktop.core.inference.registry import ModelRegistry, write_manifest
from healthfm_desktop.core.inference.runtime import PROBE_MODEL, choose_providers, create_session, probe_provider


def _linear_model(path, weight: float = 2.0) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])
    w = helper.make_tensor("w", TensorProto.FLOAT, [1], [weight])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "linear", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.save(model, str(path))


@pytest.fixture
def models_folder(tmp_path):
    _linear_model(tmp_path / "scale.onnx")
    write_manifest(
        tmp_path / "scale.json",
        {
            "name": "scale",
            "version": "1.0",
            "file": "scale.onnx",
            "task": "tabular-regression",
            "inputs": [{"name": "x", "shape": [None, 3], "dtype": "float32"}],
            "outputs": [{"name": "y", "shape": [None, 3], "dtype": "float32"}],
            "license": "MIT",
            "metrics": {"rmse": 0.0},
        },
    )
    return tmp_path


def test_probe_model_is_the_documented_graph():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8, producer_name="healthfm-probe"
    )
    assert model.SerializeToString() == PROBE_MODEL


def test_verified_model_runs(models_folder):
    registry = ModelRegistry(models_folder)
    assert registry.names() == ["scale"]
    session, manifest, choice = registry.session("scale")
    (y,) = session.run(None, {"x": np.ones((2, 3), np.float32)})
    np.testing.assert_allclose(y, 2.0)
    assert manifest.metrics == {"rmse": 0.0}
    assert choice.active == "CPUExecutionProvider"


def test_tampered_model_is_refused_by_name(models_folder):
    _linear_model(models_folder / "scale.onnx", weight=3.0)  # same size, other weights
    with pytest.raises(ModelError, match="'scale'.*does not match its manifest"):
        ModelRegistry(models_folder).session("scale")


def test_missing_model_file_is_reported(models_folder):
    (models_folder / "scale.onnx").unlink()
    with pytest.raises(ModelError, match="'scale'.*missing"):
        ModelRegistry(models_folder).verify("scale")


def test_broken_manifest_is_listed_not_skipped(models_folder):
    (models_folder / "broken.json").write_text("{not json", encoding="utf-8")
    (models_folder / "partial.json").write_text(json.dumps({"name": "partial"}), encoding="utf-8")
    registry = ModelRegistry(models_folder)
    assert set(registry.problems) == {"broken", "partial"}
    with pytest.raises(ModelError, match="lacks"):
        registry.get("partial")


def test_unknown_model_name():
    with pytest.raises(ModelError, match="not installed"):
        ModelRegistry(registry_module.models_dir()).get("no-such-model")


def test_cpu_provider_really_runs():
    assert probe_provider("CPUExecutionProvider")


def test_unavailable_provider_override_falls_back_to_cpu(models_folder):
    # CUDA is not built into the CPU wheel: the override must fall back with a note, not fail
    choice = choose_providers("CUDAExecutionProvider")
    assert choice.active == "CPUExecutionProvider"
    assert any("CUDAExecutionProvider" in note for note in choice.notes)
    session, choice = create_session(models_folder / "scale.onnx", override="DmlExecutionProvider")
    assert session.get_providers()[0] == "CPUExecutionProvider"
    assert choice.notes


def test_garbage_model_is_a_model_error(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x00not an onnx graph" * 10)
    with pytest.raises(ModelError, match="could not be loaded"):
        create_session(path)


def test_shipped_models_all_verify():
    """Every manifest in models/ matches its ONNX file (catches a model committed without its
    manifest being regenerated)."""
    registry = ModelRegistry(registry_module.models_dir())
    assert not registry.problems, registry.problems
    for name in registry.names():
        registry.verify(name)


def test_verification_is_cached_until_the_file_changes(models_folder, monkeypatch):
    registry = ModelRegistry(models_folder)
    registry.verify("scale")
    calls = []
    monkeypatch.setattr(registry_module, "sha256_of", lambda p: calls.append(p) or "0")
    registry.verify("scale")
    assert calls == []
    shutil.copy(models_folder / "scale.onnx", models_folder / "copy.onnx")
    _linear_model(models_folder / "scale.onnx", weight=5.0)
    import os

    os.utime(models_folder / "scale.onnx", (1, 1))
    with pytest.raises(ModelError):
        registry.verify("scale")


# --- issue 18, case 11: shipped models are checked against the digests frozen into the build


def _packaged_copy(tmp_path, monkeypatch):
    import shutil

    from healthfm_desktop.core.paths import packaged_models_dir

    folder = tmp_path / "models"
    folder.mkdir()
    for path in packaged_models_dir().iterdir():
        if path.name.startswith("esol_solubility"):
            shutil.copy(path, folder / path.name)
    monkeypatch.setattr(registry_module, "packaged_models_dir", lambda: folder)
    return folder


def test_frozen_digest_list_matches_the_shipped_models_folder():
    from healthfm_desktop.core.inference.shipped_digests import SHIPPED_SHA256, digests_of
    from healthfm_desktop.core.paths import packaged_models_dir

    # fails after a retraining that did not regenerate the list:
    #   python -m healthfm_desktop.core.inference.shipped_digests
    assert digests_of(packaged_models_dir()) == SHIPPED_SHA256


def test_flipped_byte_with_a_rewritten_manifest_sha256_is_refused(tmp_path, monkeypatch):
    folder = _packaged_copy(tmp_path, monkeypatch)
    assert ModelRegistry(folder).verify("esol_solubility").name == "esol_solubility"
    model = folder / "esol_solubility.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    manifest_path = folder / "esol_solubility.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["sha256"] = registry_module.sha256_of(model)  # the attacker updates the manifest too
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="was changed after this build"):
        ModelRegistry(folder).verify("esol_solubility")
    from healthfm_desktop.core.paths import packaged_models_dir

    manifest_path.write_bytes((packaged_models_dir() / "esol_solubility.json").read_bytes())
    with pytest.raises(ModelError, match="does not match the digest frozen into this build"):
        ModelRegistry(folder).verify("esol_solubility")  # the byte flip alone
    manifest["sha256"] = registry_module.sha256_of(model)
    manifest_path.write_text(json.dumps(manifest))
    # outside the packaged folder the same files pass: the manifest is all there is to check
    monkeypatch.setattr(registry_module, "packaged_models_dir", lambda: tmp_path / "elsewhere")
    assert ModelRegistry(folder).verify("esol_solubility")


def test_rewritten_shipped_manifest_is_refused(tmp_path, monkeypatch):
    folder = _packaged_copy(tmp_path, monkeypatch)
    domain = folder / "esol_solubility_ad.npz"
    domain.write_bytes(domain.read_bytes() + b"\0")  # a changed applicability domain...
    manifest_path = folder / "esol_solubility.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["applicability_domain"]["sha256"] = registry_module.sha256_of(domain)  # ...and its sha256
    manifest_path.write_text(json.dumps(manifest))
    registry = ModelRegistry(folder)
    with pytest.raises(ModelError, match="model manifest esol_solubility.json was changed after this build"):
        registry.get("esol_solubility")
    assert "esol_solubility" not in registry.names()
