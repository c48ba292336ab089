"""Re-quantise the shipped INT8 image models from their float models (no retraining) and re-measure
them with onnxruntime's default session options, the ones the app runs them with.

Why: the INT8 copies were quantised U8S8 with full-range weights. On an x86 CPU with AVX2 but no
VNNI, onnxruntime's fused U8S8 kernels (optimisation level "all") saturate (its quantisation
docs, "reduce_range"): there the pneumonia INT8 model called 38 % of the test X-rays wrong
(accuracy 0.622 against 0.936 measured at training) while the same graph run unfused was right.
Weights quantised to 7 bits (``reduce_range``) cannot saturate.

Usage: python models/training/requantise_image_models.py [--check]   (--check: measure, write nothing)"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import train_hc18_unet as hc18  # noqa: E402  (beside this script)
import train_pneumonia as pneumonia  # noqa: E402
from image_training import QUANTISATION, int8_card, quantise  # noqa: E402

from healthfm_desktop.core.inference.conformal import ConformalClassifier  # noqa: E402
from healthfm_desktop.core.inference.registry import write_manifest  # noqa: E402

MODELS = REPO / "models"
SEED = 0  # the training scripts' seed: the same calibration images as at training


def _session(path: Path, unfused: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if unfused:  # QDQ nodes kept as float arithmetic: the quantised model's intended values
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _classifier_probabilities(path: Path, x: np.ndarray, unfused: bool = False) -> np.ndarray:
    session = _session(path, unfused)
    return np.concatenate([session.run(["probabilities"], {"image": x[i : i + 256]})[0] for i in range(0, len(x), 256)])


def _segmenter_runner(path: Path, unfused: bool = False):
    session = _session(path, unfused)
    return lambda x: session.run(["probability"], {"image": x})[0]


def _update_float_card(name: str, row: str) -> None:
    """The float model's card carries the INT8 row of its metrics table: replace that line."""
    card = MODELS / f"{name}.md"
    text = card.read_text(encoding="utf-8")
    new, count = re.subn(r"^\| INT8 \((?:not )?shipped\) \|.*$", row, text, count=1, flags=re.MULTILINE)
    if count != 1:
        raise SystemExit(f"{card.name}: no INT8 row to update")
    card.write_text(new, encoding="utf-8")


def _ship(name: str, metrics: dict, shipped: bool, extra: dict) -> None:
    path = MODELS / f"{name}_int8.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if not shipped:
        raise SystemExit(f"{name}_int8 fell by more than 0.5 points after re-quantisation: not rewriting it")
    manifest.update({"quantization": f"{QUANTISATION}, {extra.pop('calibration')}", "metrics": metrics, **extra})
    write_manifest(path, manifest)
    (MODELS / f"{name}_int8.md").write_text(int8_card(manifest), encoding="utf-8")


def requantise_pneumonia(check: bool) -> None:
    data = np.load(pneumonia.DATA)
    x = {s: pneumonia.model_inputs(data[f"{s}_images"]) for s in ("train", "val", "test")}
    y = {s: data[f"{s}_labels"].astype(np.int64).reshape(-1) for s in ("train", "val", "test")}
    rng = np.random.default_rng(SEED)
    float_path = MODELS / "pneumonia_resnet.onnx"
    target = MODELS / "pneumonia_resnet_int8.onnx" if not check else Path("/tmp") / "pneumonia_resnet_int8.check.onnx"
    quantise(float_path, target, x["train"][rng.permutation(len(x["train"]))[:300]])
    float_metrics = json.loads((MODELS / "pneumonia_resnet.json").read_text(encoding="utf-8"))["metrics"]
    fused = _classifier_probabilities(target, x["test"])
    unfused = _classifier_probabilities(target, x["test"], unfused=True)
    metrics = pneumonia.test_metrics(y["test"], fused, SEED)
    agree = float(np.mean((fused[:, 1] > 0.5) == (unfused[:, 1] > 0.5)))
    print(f"pneumonia_resnet_int8: test AUC {metrics['auc']['value']} ACC {metrics['acc']['value']} "
          f"(float {float_metrics['auc']['value']} / {float_metrics['acc']['value']}); fused vs unfused kernels: "
          f"labels agree on {agree:.1%}, max |dp| {np.abs(fused - unfused).max():.4f}")
    shipped = (float_metrics["auc"]["value"] - metrics["auc"]["value"] <= 0.005
               and float_metrics["acc"]["value"] - metrics["acc"]["value"] <= 0.005)
    if check:
        return
    conformal = ConformalClassifier.calibrate(_classifier_probabilities(target, x["val"]), y["val"], 0.9)
    _ship("pneumonia_resnet", {
        "split": f"test ({len(y['test'])} images)", **metrics,
        "float_model_metrics": {"auc": float_metrics["auc"], "acc": float_metrics["acc"]},
        "bootstrap": "1000 percentile resamples of the test images, seed 0"},
        shipped, {"calibration": "300 training images", "conformal": conformal.to_dict()})

    def fmt(entry):
        return f"{entry['value']:.3f} (95% CI {entry['ci95'][0]:.3f}-{entry['ci95'][1]:.3f})"

    _update_float_card("pneumonia_resnet", f"| INT8 (shipped) | {fmt(metrics['auc'])} | {fmt(metrics['acc'])} | our half, 312 |")


def requantise_hc18(check: bool) -> None:
    data = np.load(hc18.DATA)
    split = {s: {k: data[f"{s}_{k}"] for k in ("images", "masks", "hc_mm", "pixel_size_xy_mm")} for s in ("train", "test")}
    for arrays in split.values():
        arrays["x"] = hc18.model_inputs(arrays["images"])
    train, test = split["train"], split["test"]
    rng = np.random.default_rng(SEED)
    float_path = MODELS / "hc18_unet.onnx"
    target = MODELS / "hc18_unet_int8.onnx" if not check else Path("/tmp") / "hc18_unet_int8.check.onnx"
    quantise(float_path, target, train["x"][rng.permutation(len(train["x"]))[:64]])
    float_metrics = json.loads((MODELS / "hc18_unet.json").read_text(encoding="utf-8"))["metrics"]
    probability = hc18.predict(_segmenter_runner(target), test["x"])
    metrics = hc18.evaluate(probability, test["masks"], test["hc_mm"], test["pixel_size_xy_mm"], SEED)
    unfused = hc18.predict(_segmenter_runner(target, unfused=True), test["x"])
    print(f"hc18_unet_int8: test Dice {metrics['dice']['value']} HC MAE {metrics['hc_mean_absolute_error_mm']['value']} mm "
          f"(float Dice {float_metrics['dice']['value']}); fused vs unfused kernels: max |dp| {np.abs(probability - unfused).max():.4f}")
    if check:
        return
    shipped = float_metrics["dice"]["value"] - metrics["dice"]["value"] <= 0.005
    _ship("hc18_unet", {
        "split": float_metrics["split"], **metrics, "float_model_dice": float_metrics["dice"],
        "bootstrap": "1000 percentile resamples of the test images, seed 0"},
        shipped, {"calibration": "64 training images"})

    def fmt(entry, digits=3):
        return f"{entry['value']:.{digits}f} (95% CI {entry['ci95'][0]:.{digits}f}-{entry['ci95'][1]:.{digits}f})"

    _update_float_card("hc18_unet", f"| INT8 (shipped) | {fmt(metrics['dice'])} | {fmt(metrics['hc_mean_absolute_error_mm'], 2)} | "
                                    f"{metrics['hc_median_absolute_error_mm']:.2f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="quantise to /tmp and measure; write nothing under models/")
    args = parser.parse_args(argv)
    requantise_pneumonia(args.check)
    requantise_hc18(args.check)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
