"""Both training scripts run end to end on a tiny subset (seconds): train, calibrate/evaluate,
export ONNX + manifest + card, quantise; nothing is written into models/."""

from __future__ import annotations

import json
import subprocess
import sys

import onnxruntime as ort
import pytest

from tests.core.test_image_ai_helpers import REPO

pytestmark = pytest.mark.slow


def _run(script: str, out_dir, *extra: str) -> str:
    before = sorted(p.name for p in (REPO / "models").iterdir())
    completed = subprocess.run(
        [sys.executable, str(REPO / "models" / "training" / script), "--out-dir", str(out_dir), "--threads", "1", *extra],
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert sorted(p.name for p in (REPO / "models").iterdir()) == before
    return completed.stdout


def test_pneumonia_script_retrains_on_a_tiny_subset(tmp_path):
    log = _run("train_pneumonia.py", tmp_path, "--limit", "96", "--epochs", "1")
    assert "temperature" in log and "test AUC" in log
    manifest = json.loads((tmp_path / "pneumonia_resnet.json").read_text())
    assert manifest["metrics"]["auc"]["ci95"][0] <= manifest["metrics"]["auc"]["value"] <= manifest["metrics"]["auc"]["ci95"][1]
    assert manifest["intended_use_profile"]["modalities"]
    session = ort.InferenceSession(str(tmp_path / "pneumonia_resnet.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["probabilities", "class_activation"]
    assert (tmp_path / "pneumonia_resnet.md").read_text().count("MedMNIST") >= 2


def test_hc18_script_retrains_on_a_tiny_subset(tmp_path):
    log = _run("train_hc18_unet.py", tmp_path, "--limit", "12", "--epochs", "1", "--batch", "6")
    assert "val Dice" in log
    manifest = json.loads((tmp_path / "hc18_unet.json").read_text())
    assert {"dice", "hc_mean_absolute_error_mm"} <= set(manifest["metrics"])
    session = ort.InferenceSession(str(tmp_path / "hc18_unet.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].name == "probability"
