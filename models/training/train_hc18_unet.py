"""Train the fetal-head segmenter (HC18 ultrasound, 144x208) and ship it.

A small U-Net (about 0.46 M parameters; made this small so that it trains in minutes on two
shared CPU cores): a stride-2 stem, three down / up stages with skip connections, half-
resolution logits upsampled bilinearly. Loss: BCE + soft Dice; flips and gain/gamma
augmentation; best epoch by validation Dice. On the test split (split by subject): Dice and the
head circumference error in mm (ellipse fitted to the predicted mask by the same core code the
app uses, Ramanujan perimeter, the file's pixel size), each with a percentile-bootstrap 95% CI.
An INT8 static-quantised copy is shipped only if its test Dice stays within 0.5 points.

    nice -n 10 python models/training/train_hc18_unet.py            # full run, writes models/
    python models/training/train_hc18_unet.py --limit 16 --epochs 1 --out-dir /tmp/x  # smoke
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # image_training beside this script
from model_cards import with_when_not_to_use  # noqa: E402  (beside this script)

from healthfm_desktop.core.imaging.ai import preprocessing as prep  # noqa: E402
from healthfm_desktop.core.imaging.ai.evaluation import bootstrap_ci, dice, metric_with_ci  # noqa: E402
from healthfm_desktop.core.imaging.ai.head_circumference import fit_head_ellipse, head_circumference_mm  # noqa: E402
from healthfm_desktop.core.imaging.ai.intended_use import training_profile  # noqa: E402
from healthfm_desktop.core.imaging.ai.segmentation import mask_from_probability  # noqa: E402
from healthfm_desktop.core.inference.registry import write_manifest  # noqa: E402
from image_training import QUANTISATION, quantise, reproduce_and_log, ship_int8_variant  # noqa: E402  (beside this script)

NAME = "hc18_unet"
VERSION = "1.0.0"
DATA = REPO / "models" / "training" / "data" / "images" / "hc18_seg_144x208.npz"


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_relu(cin, cout), conv_bn_relu(cout, cout))


class Up(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, 2)
        self.conv = double_conv(cout + cskip, cout)

    def forward(self, x, skip):
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class SmallUNet(nn.Module):
    """144x208 -> stride-2 stem (12) -> /4 (24) -> /8 (48) -> /16 bottleneck (160) -> back up to
    /2 -> 1x1 logits, bilinearly upsampled to 144x208 (the head outline is smooth, so half-
    resolution logits lose little and cost a quarter of the compute)."""

    def __init__(self, widths=(12, 24, 48, 160)):
        super().__init__()
        w0, w1, w2, w3 = widths
        self.stem = nn.Sequential(conv_bn_relu(1, w0, stride=2), conv_bn_relu(w0, w0))
        self.down1 = double_conv(w0, w1)
        self.down2 = double_conv(w1, w2)
        self.bottleneck = double_conv(w2, w3)
        self.up2 = Up(w3, w2, w2)
        self.up1 = Up(w2, w1, w1)
        self.up0 = Up(w1, w0, w0)
        self.head = nn.Conv2d(w0, 1, 1)

    def forward(self, x):
        s0 = self.stem(x)  # 72x104
        s1 = self.down1(F.max_pool2d(s0, 2))  # 36x52
        s2 = self.down2(F.max_pool2d(s1, 2))  # 18x26
        b = self.bottleneck(F.max_pool2d(s2, 2))  # 9x13
        y = self.head(self.up0(self.up1(self.up2(b, s2), s1), s0))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)  # logits


class ExportedSegmenter(nn.Module):
    def __init__(self, net: SmallUNet):
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.sigmoid(self.net(x))


def model_inputs(images_uint8: np.ndarray) -> np.ndarray:
    """The network tensors for a stack of uint8 images: the app's own letterbox + scaling."""
    return prep.normalise_segmenter_batch(np.stack([prep.letterbox_pixels(im)[0] for im in images_uint8]))


def augment(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
    n = x.shape[0]
    flip_h = torch.rand(n, generator=generator) < 0.5
    flip_v = torch.rand(n, generator=generator) < 0.5
    x, y = x.clone(), y.clone()
    x[flip_h], y[flip_h] = x[flip_h].flip(-1), y[flip_h].flip(-1)
    x[flip_v], y[flip_v] = x[flip_v].flip(-2), y[flip_v].flip(-2)
    # gain and gamma on the 0..1 intensities: ultrasound machines differ in both
    raw = (x * prep.SEGMENTER_STD + prep.SEGMENTER_MEAN).clamp(0, 1)
    gamma = torch.exp((torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.6)
    gain = 1 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.3
    raw = (raw.pow(gamma) * gain).clamp(0, 1)
    return (raw - prep.SEGMENTER_MEAN) / prep.SEGMENTER_STD, y


def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(1, 2, 3))
    soft_dice = (2 * inter + 1) / (p.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) + 1)
    return bce + (1 - soft_dice).mean()


def predict(run, x: np.ndarray, batch: int = 16) -> np.ndarray:
    return np.concatenate([run(x[i : i + batch]) for i in range(0, len(x), batch)])[:, 0]


def torch_runner(net: nn.Module):
    net.eval()

    def run(x):
        with torch.no_grad():
            return torch.sigmoid(net(torch.from_numpy(x))).numpy()

    return run


def onnx_runner(path: Path):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: session.run(["probability"], {"image": x})[0]


def evaluate(probabilities: np.ndarray, masks: np.ndarray, hc_mm: np.ndarray, spacing_xy: np.ndarray, seed: int) -> dict:
    """Dice of the shipped post-processed mask, and HC error in mm, with bootstrap CIs."""
    dices, errors, failures = [], [], 0
    for prob, truth, hc, (sx, sy) in zip(probabilities, masks, hc_mm, spacing_xy):
        mask = mask_from_probability(prob)
        dices.append(dice(mask, truth))
        ellipse = fit_head_ellipse(mask)
        if ellipse is None:
            failures += 1
            errors.append(np.nan)
        else:
            errors.append(head_circumference_mm(ellipse, (float(sy), float(sx))) - float(hc))
    dices, errors = np.array(dices), np.array(errors)
    abs_errors = np.abs(np.nan_to_num(errors, nan=np.nanmax(np.abs(errors)) if np.isfinite(errors).any() else 0))
    n = len(dices)
    return {
        "dice": metric_with_ci(bootstrap_ci(lambda i: float(dices[i].mean()), n, seed=seed)),
        "hc_mean_absolute_error_mm": metric_with_ci(bootstrap_ci(lambda i: float(abs_errors[i].mean()), n, seed=seed), 3),
        "hc_mean_error_mm": round(float(np.nanmean(errors)), 3),
        "hc_median_absolute_error_mm": round(float(np.median(abs_errors)), 3),
        "hc_absolute_percent_error_mean": round(float(np.mean(abs_errors / hc_mm)) * 100, 3),
        "no_head_found": failures,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out-dir", type=Path, default=REPO / "models")
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--limit", type=int, default=0, help="use only this many images per split (smoke test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--widths", type=int, nargs=4, default=[12, 24, 48, 160], metavar=("STEM", "D1", "D2", "BOTTLENECK"))
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    started = time.time()
    log_lines: list[str] = []

    def log(message: str) -> None:
        line = f"[{time.time() - started:6.1f}s] {message}"
        print(line, flush=True)
        log_lines.append(line)

    data = np.load(args.data)
    rng = np.random.default_rng(args.seed)
    splits = {}
    for split in ("train", "val", "test"):
        keys = ("images", "masks", "hc_mm", "pixel_size_xy_mm", "subject")
        arrays = {k: data[f"{split}_{k}"] for k in keys}
        if args.limit:
            keep = np.sort(rng.permutation(len(arrays["images"]))[: args.limit])
            arrays = {k: v[keep] for k, v in arrays.items()}
        # the shared preprocessing: the app letterboxes every file the same way
        arrays["x"] = model_inputs(arrays["images"])
        splits[split] = arrays
    train, val, test = splits["train"], splits["val"], splits["test"]
    assert not set(train["subject"]) & set(test["subject"]), "subjects leak between train and test"
    log(f"train {len(train['x'])}, val {len(val['x'])}, test {len(test['x'])} images (split by subject)")

    net = SmallUNet(tuple(args.widths))
    params = sum(p.numel() for p in net.parameters())
    log(f"SmallUNet with {params} parameters")
    steps = args.epochs * int(np.ceil(len(train["x"]) / args.batch))
    optimiser = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=steps, pct_start=0.2)
    generator = torch.Generator().manual_seed(args.seed)
    xt = torch.from_numpy(train["x"])
    yt = torch.from_numpy(train["masks"][:, None].astype(np.float32))
    best = (-1.0, None, 0)
    for epoch in range(args.epochs):
        net.train()
        order = torch.randperm(len(xt), generator=generator)
        total = 0.0
        for i in range(0, len(order), args.batch):
            idx = order[i : i + args.batch]
            xb, yb = augment(xt[idx], yt[idx], generator)
            loss = loss_fn(net(xb), yb)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            scheduler.step()
            total += float(loss.detach()) * len(idx)
        val_prob = predict(torch_runner(net), val["x"])
        val_dice = float(np.mean([dice(p > 0.5, m) for p, m in zip(val_prob, val["masks"])]))
        log(f"epoch {epoch + 1}/{args.epochs} loss {total / len(xt):.4f} val Dice {val_dice:.4f}")
        if val_dice >= best[0]:
            best = (val_dice, {k: v.clone() for k, v in net.state_dict().items()}, epoch + 1)
    net.load_state_dict(best[1])
    log(f"best epoch by val Dice: {best[2]} ({best[0]:.4f})")

    out_dir = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{NAME}.onnx"
    torch.onnx.export(
        ExportedSegmenter(net).eval(), torch.from_numpy(test["x"][:1]), str(onnx_path), input_names=["image"],
        output_names=["probability"], opset_version=17, dynamo=False,
        dynamic_axes={"image": {0: "batch"}, "probability": {0: "batch"}}, external_data=False,
    )
    torch_prob = predict(torch_runner(net), test["x"])
    onnx_prob = predict(onnx_runner(onnx_path), test["x"])
    log(f"ONNX vs torch max |dp| {np.abs(onnx_prob - torch_prob).max():.2e}")
    metrics = evaluate(onnx_prob, test["masks"], test["hc_mm"], test["pixel_size_xy_mm"], args.seed)
    reference = evaluate(test["masks"].astype(np.float32), test["masks"], test["hc_mm"], test["pixel_size_xy_mm"], args.seed)
    log(f"test {metrics}")
    log(f"ground-truth masks through the same ellipse fit: HC MAE {reference['hc_mean_absolute_error_mm']}")

    profile = training_profile(data["train_images"], ["US"], "the HC18 fetal head ultrasound images")
    common = {
        "task": "image-segmentation",
        "inputs": [{"name": "image", "shape": ["batch", 1, 144, 208], "dtype": "float32"}],
        "outputs": [{"name": "probability", "shape": ["batch", 1, 144, 208], "dtype": "float32", "meaning": "fetal head probability per pixel"}],
        "labels": ["background", "fetal head"],
        "preprocessing": {
            "steps": [{"op": "letterbox", "size": [144, 208]}, {"op": "scale", "divide": 255},
                      {"op": "normalise", "mean": 0.1393, "std": 0.1677}],
            "description": "grey-scale uint8 -> keep aspect ratio, area-downscale to fit 144x208, zero-pad centred -> /255 -> (x - 0.1393) / 0.1677",
            "postprocessing": "probability > 0.5 -> largest connected region, holes filled -> back to the input size; ellipse fit (cv2.fitEllipse) -> Ramanujan circumference x pixel spacing",
        },
        "training_data": {
            "source": "HC18 Grand Challenge training set (van den Heuvel et al. 2018), downscaled 4x and padded to 144x208",
            "license": "CC BY 4.0",
            "split": "999 annotated images split by subject (seed 0): train 693 / val 97 / test 103",
        },
        "license": "CC BY 4.0 (weights derived from CC BY 4.0 data); code MIT",
        "intended_use": "Research and education: outlines the fetal skull in a 2D obstetric ultrasound plane and measures head circumference. Not a medical device; not for clinical biometry.",
        "limitations": [
            "Trained on 4x-downscaled images from one centre (Radboud UMC); boundaries are accurate to about one downscaled pixel (~0.5-0.7 mm).",
            "Head circumference needs the pixel spacing (DICOM tags or user input); without it no mm value is given.",
            "Expects a standard trans-thalamic head plane with the whole skull in view; partial heads give wrong circumferences.",
        ],
        "training_script": "models/training/train_hc18_unet.py",
        "intended_use_profile": profile,
    }
    manifest = {
        "name": NAME, "version": VERSION, "file": onnx_path.name, **common,
        "metrics": {
            "split": f"test ({len(test['x'])} images, {len(set(test['subject']))} subjects)", **metrics,
            "reference_ground_truth_mask_hc_mae_mm": reference["hc_mean_absolute_error_mm"]["value"],
            "bootstrap": "1000 percentile resamples of the test images, seed 0",
            "published_baselines": {
                "HC18 challenge entries (hidden 335-image test set, full resolution; not directly comparable)": {"dice": "about 0.97-0.98", "hc_mae_mm": "about 1.7-2"},
                "van den Heuvel et al. 2018": {"hc_mae_mm": 2.8},
            },
        },
        "parameters": params, "widths": list(args.widths), "epochs": args.epochs, "best_epoch": best[2], "seed": args.seed,
    }
    write_manifest(out_dir / f"{NAME}.json", manifest)

    int8_path = out_dir / f"{NAME}_int8.onnx"
    quantise(onnx_path, int8_path, train["x"][rng.permutation(len(train["x"]))[:64]])
    int8_metrics = evaluate(predict(onnx_runner(int8_path), test["x"]), test["masks"], test["hc_mm"], test["pixel_size_xy_mm"], args.seed)
    drop = metrics["dice"]["value"] - int8_metrics["dice"]["value"]
    int8_shipped = drop <= 0.005
    log(f"INT8 test {int8_metrics} (Dice drop {drop:.4f}) -> {'shipped' if int8_shipped else 'not shipped'}")
    ship_int8_variant(
        out_dir, NAME, VERSION, common,
        f"{QUANTISATION}, 64 training images",
        {"split": manifest["metrics"]["split"], **int8_metrics, "float_model_dice": metrics["dice"],
         "bootstrap": "1000 percentile resamples of the test images, seed 0"},
        int8_shipped,
    )
    (out_dir / f"{NAME}.md").write_text(with_when_not_to_use(model_card(manifest, int8_metrics, int8_shipped, log_lines), NAME), encoding="utf-8")
    log(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.2f} MB)")
    return 0


def model_card(manifest: dict, int8_metrics: dict, int8_shipped: bool, log_lines: list[str]) -> str:
    m = manifest["metrics"]

    def fmt(entry, digits=3):
        return f"{entry['value']:.{digits}f} (95% CI {entry['ci95'][0]:.{digits}f}-{entry['ci95'][1]:.{digits}f})"

    return f"""# {manifest['name']} {manifest['version']}: fetal head segmentation and head circumference

**Task:** {manifest['task']}. **Intended use:** {manifest['intended_use']}

## Model
Small U-Net ({manifest['parameters']} parameters): stride-2 stem, encoder {'/'.join(map(str, manifest['widths'][:3]))} channels,
bottleneck {manifest['widths'][3]}, transposed-convolution decoder with skips, half-resolution logits upsampled
bilinearly to 144x208. BCE + soft Dice loss, flip and gain/gamma augmentation, AdamW one-cycle,
{manifest['epochs']} epochs, best epoch ({manifest['best_epoch']}) by validation Dice.
Post-processing: {manifest['preprocessing']['postprocessing']}.

## Data
{manifest['training_data']['source']}; {manifest['training_data']['license']}.
Split: {manifest['training_data']['split']}.

## Test metrics ({m['split']})
| model | Dice | HC mean absolute error (mm) | HC median abs. error (mm) |
|---|---|---|---|
| **this model** | {fmt(m['dice'])} | {fmt(m['hc_mean_absolute_error_mm'], 2)} | {m['hc_median_absolute_error_mm']:.2f} |
| INT8 ({'shipped' if int8_shipped else 'not shipped'}) | {fmt(int8_metrics['dice'])} | {fmt(int8_metrics['hc_mean_absolute_error_mm'], 2)} | {int8_metrics['hc_median_absolute_error_mm']:.2f} |
| ground-truth masks, same ellipse fit | 1 | {m['reference_ground_truth_mask_hc_mae_mm']:.2f} | |
| HC18 challenge entries (hidden test set, full resolution) | ~0.97-0.98 | ~1.7-2 | |
| van den Heuvel et al. 2018 | | 2.8 | |

Mean signed HC error {m['hc_mean_error_mm']} mm; mean absolute percent error {m['hc_absolute_percent_error_mean']}%;
images with no head found: {m['no_head_found']}. CIs: {m['bootstrap']}.

## Limitations
{chr(10).join('- ' + x for x in manifest['limitations'])}

{reproduce_and_log(manifest, log_lines)}

## Citation
van den Heuvel, T. L. A., de Bruijn, D., de Korte, C. L., van Ginneken, B. Automated measurement of fetal head
circumference using 2D ultrasound images. PLoS ONE 13(8): e0200412 (2018). Data: Zenodo 10.5281/zenodo.1327317.
"""


if __name__ == "__main__":
    sys.exit(main())
