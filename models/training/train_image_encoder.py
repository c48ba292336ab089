"""General 2D grey-scale image encoder, multi-task: modality (chest X-ray / ultrasound / CT /
MR), pneumonia (PneumoniaMNIST), a coarse fetal-head mask (HC18) and the slice position within
a CT/MR volume, on 64x64 inputs with resolution, crop, flip and contrast augmentation so a
full-size DICOM frame and a 28-px MedMNIST image land in the same space. The 128-d pooled
features are the embedding; the heads are dropped from the export.

    python models/training/train_image_encoder.py      # ~10 min on one CPU core, then it refits
                                                       # the image models' scope gates (fit_image_trust.py)
    python models/training/train_image_encoder.py --recipe 1.1 --out-dir DIR   # a candidate, ~13 min

Recipe 1.1 (tried, not shipped): + the extra CT/MR frames (build_extra_images.py), modality-balanced
epochs, a second, strongly augmented view (random window, gamma, affine, blur, noise, quantisation)
and a SimCLR term between the two views. Scored with evaluate_image_modality.py it gave 0.53
(95% CI 0.375-0.72) against 1.0.0's 0.50 and raw pixels' 0.50, pneumonia probe AUC 0.954 (1.0.0
0.957): no clear gain, so 1.0.0 stays; its CT/MR errors are the data's (one head CT phantom).

Data (all in the repo): models/training/data/images (PneumoniaMNIST, HC18; CC BY 4.0), the
DICOM series and single files of tests/data/dicom (BSD-2 / pydicom / GDCM test files, see its
README) and resources/samples/dicom. Held out: PneumoniaMNIST and HC18 test splits, the last
slices of each series (after a gap) and every single-file DICOM (other scanners)."""

from __future__ import annotations

import json
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from healthfm_desktop.core.imaging.ai.preprocessing import read_image  # noqa: E402
from healthfm_desktop.core.inference.image_steps import apply_steps  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from image_training import MODALITIES, images_with_modality  # noqa: E402  (models/training)

MODELS = ROOT / "models"
DATA = MODELS / "training" / "data" / "images"
DICOM = ROOT / "tests" / "data" / "dicom"
NAME = "image_encoder"
SIZE = 64
SEED = 0
EPOCHS = 12
FRAME_STEPS = [{"op": "pad_square"}, {"op": "resize", "size": [SIZE, SIZE]}]


def frame(pixels: np.ndarray) -> np.ndarray:
    return apply_steps(pixels, FRAME_STEPS)[0, 0].astype(np.uint8)


class Items:
    def __init__(self):
        self.images, self.modality, self.pneumonia, self.masks, self.has_mask = [], [], [], [], []
        self.position, self.hc_mm, self.source = [], [], []

    def add(self, pixels, modality, pneumonia=-1, mask=None, position=np.nan, hc_mm=np.nan, source=""):
        self.images.append(frame(pixels))
        self.modality.append(MODALITIES.index(modality))
        self.pneumonia.append(pneumonia)
        small = np.zeros((8, 8), np.float32) if mask is None else \
            F.adaptive_avg_pool2d(torch.from_numpy(frame(mask).astype(np.float32) / 255.0)[None, None], 8)[0, 0].numpy()
        self.masks.append(small)
        self.has_mask.append(mask is not None)
        self.position.append(position)
        self.hc_mm.append(hc_mm)
        self.source.append(source)

    def arrays(self):
        return {k: np.asarray(v) for k, v in vars(self).items()}


def load_data():
    train, test = Items(), Items()
    with np.load(DATA / "pneumoniamnist_28.npz") as d:
        for split, target in (("train", train), ("val", train), ("test", test)):
            for img, lab in zip(d[f"{split}_images"], d[f"{split}_labels"].ravel()):
                target.add(img, "xray", int(lab), source=f"pneumoniamnist-{split}")
    with np.load(DATA / "hc18_seg_144x208.npz") as d:
        for split, target in (("train", train), ("val", train), ("test", test)):
            for img, mask, hc in zip(d[f"{split}_images"], d[f"{split}_masks"], d[f"{split}_hc_mm"]):
                target.add(img, "ultrasound", mask=(mask > 0).astype(np.uint8) * 255, hc_mm=float(hc),
                           source=f"hc18-{split}")
    series = [(DICOM / "series" / "CT_head_phantom_philips_1mm_20sl", "ct"),
              (DICOM / "series" / "MR_T1_3D_MPRAGE_sag_philips_1mm_170sl", "mr"),
              (ROOT / "resources" / "samples" / "dicom" / "CT_head_phantom_6sl", "ct")]
    for folder, modality in series:
        files = sorted(folder.glob("*.dcm"), key=_instance_number)
        n = len(files)
        for i, path in enumerate(files):
            pixels = read_image(path).pixels
            position = i / max(1, n - 1)
            if i >= int(n * 0.85):
                test.add(pixels, modality, position=position, source=f"{folder.name}-test")
            elif i < int(n * 0.85) - 2:  # a gap of two slices between train and test
                train.add(pixels, modality, position=position, source=folder.name)
    for path, image, modality in images_with_modality(sorted((DICOM / "single").glob("*.dcm"))
                                                      + sorted((DICOM / "dicomdir").rglob("*"))):
        test.add(image.pixels, modality, source=f"single:{path.name}")
    return train.arrays(), test.arrays()


def _instance_number(path: Path) -> int:
    import pydicom

    return int(pydicom.dcmread(path, stop_before_pixels=True).get("InstanceNumber", 0) or 0)


class Encoder(nn.Module):
    """A strided stem, then conv-BN-ReLU-pool stages: 64 -> 32 -> 16 -> 8 -> 4 px (~14 M MACs)."""

    def __init__(self, width=(32, 64, 128)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU(inplace=True))
        stages, channels = [], 16
        for out in width:
            stages.append(nn.Sequential(nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out),
                                        nn.ReLU(inplace=True), nn.MaxPool2d(2)))
            channels = out
        self.stages = nn.ModuleList(stages)
        self.dim = channels

    def features(self, x):
        maps = [self.stem(x)]
        for stage in self.stages:
            maps.append(stage(maps[-1]))
        return maps  # 32, 16, 8, 4 px

    def forward(self, x):
        return self.features(x)[-1].mean(dim=(2, 3))


class MultiTask(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.modality = nn.Linear(self.encoder.dim, len(MODALITIES))
        self.pneumonia = nn.Linear(self.encoder.dim, 1)
        self.position = nn.Linear(self.encoder.dim, 1)
        self.mask = nn.Conv2d(64, 1, 1)

    def forward(self, x):
        maps = self.encoder.features(x)
        embedding = maps[-1].mean(dim=(2, 3))
        return embedding, self.modality(embedding), self.pneumonia(embedding)[:, 0], \
            self.position(embedding)[:, 0], self.mask(maps[-2])[:, 0]


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """x float (B, 1, 64, 64) in 0..1: random resolution (as from 20 to 64 px), crop-zoom, flip, gamma."""
    b = x.shape[0]
    out = torch.empty_like(x)
    for i in range(b):
        img = x[i:i + 1]
        side = int(torch.randint(20, SIZE + 1, (1,), generator=generator))
        if side < SIZE:
            img = F.interpolate(F.interpolate(img, size=(side, side), mode="area"), size=(SIZE, SIZE),
                                mode="bilinear", align_corners=False)
        crop = int(torch.randint(int(SIZE * 0.8), SIZE + 1, (1,), generator=generator))
        top, left = (int(torch.randint(0, SIZE - crop + 1, (1,), generator=generator)) for _ in range(2))
        img = F.interpolate(img[..., top:top + crop, left:left + crop], size=(SIZE, SIZE), mode="bilinear",
                            align_corners=False)
        if torch.rand(1, generator=generator) < 0.5:
            img = img.flip(-1)
        gamma = float(torch.empty(1).uniform_(0.7, 1.4, generator=generator))
        out[i] = img.clamp(0, 1) ** gamma
    return out


def strong_augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """x float (B, 1, 64, 64) in 0..1 -> a view whose source signature is scrambled: random
    aspect/zoom/shift/flip (one affine grid per image), resolution loss, a random display window
    and gamma, blur, noise and grey-level quantisation, so that what is left to tell two
    images apart is what they show."""
    b = x.shape[0]

    def u(lo, hi, *shape):
        return torch.empty(b, *shape).uniform_(lo, hi, generator=generator)

    scale = u(0.55, 1.15)
    aspect = torch.exp(u(-0.35, 0.35))
    flip_x = torch.where(u(0, 1) < 0.5, -1.0, 1.0)
    flip_y = torch.where(u(0, 1) < 0.2, -1.0, 1.0)
    angle = u(-0.25, 0.25)
    cos, sin = torch.cos(angle), torch.sin(angle)
    sx, sy = scale * aspect * flip_x, scale / aspect * flip_y
    theta = torch.stack([torch.stack([cos * sx, -sin * sy, u(-0.2, 0.2)], 1),
                         torch.stack([sin * sx, cos * sy, u(-0.2, 0.2)], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    side = int(torch.randint(16, SIZE + 1, (1,), generator=generator))
    if side < SIZE:  # resolution loss, as from a 16- to 64-px source (one side per batch)
        out = F.interpolate(F.interpolate(out, size=(side, side), mode="area"), size=(SIZE, SIZE), mode="bilinear",
                            align_corners=False)
    low, high = u(-0.1, 0.35, 1, 1, 1), u(0.65, 1.1, 1, 1, 1)  # random window
    out = ((out - low) / (high - low)).clamp(0, 1)
    out = out ** torch.exp(u(-0.7, 0.7, 1, 1, 1))  # gamma 0.5..2
    sigma = float(u(0, 1.5)[0])
    if sigma > 0.3:  # Gaussian blur (one sigma per batch)
        r = torch.arange(-3, 4, dtype=torch.float32)
        k = torch.exp(-r ** 2 / (2 * sigma ** 2))
        k = k / k.sum()
        out = F.conv2d(F.pad(out, (3, 3, 0, 0), mode="replicate"), k.view(1, 1, 1, 7))
        out = F.conv2d(F.pad(out, (0, 0, 3, 3), mode="replicate"), k.view(1, 1, 7, 1))
    noise = u(0, 0.08, 1, 1, 1) * torch.randn(out.shape, generator=generator)
    speckle = torch.where(u(0, 1, 1, 1, 1) < 0.3, 1.0, 0.0) * u(0, 0.3, 1, 1, 1)
    out = out * (1 + speckle * torch.randn(out.shape, generator=generator)) + noise
    levels = torch.where(u(0, 1, 1, 1, 1) < 0.3, torch.exp(u(2.0, 5.5, 1, 1, 1)).round(), torch.tensor(255.0))
    return ((out.clamp(0, 1) * levels).round() / levels)


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """SimCLR's loss: each view's positive is the other view of its image, the rest negatives."""
    z = F.normalize(torch.cat([a, b]), dim=1)
    sim = z @ z.T / temperature
    n = a.shape[0]
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


EXTRA = DATA / "extra_ct_mr.npz"
VERSION = "1.0.0"


def add_extra(train: dict) -> dict:
    """Append the leak-checked extra frames (build_extra_images.py): modality labels only."""
    with np.load(EXTRA) as d:
        images, modality = d["images"], d["modality"].astype(np.int64)
        source = np.array([f"extra:{a}" for a in d["acquisition"]])
    n = len(images)
    extra = {"images": images, "modality": modality, "pneumonia": np.full(n, -1),
             "masks": np.zeros((n, 8, 8), np.float32), "has_mask": np.zeros(n, bool),
             "position": np.full(n, np.nan), "hc_mm": np.full(n, np.nan), "source": source}
    return {k: np.concatenate([train[k], extra[k].astype(train[k].dtype)]) for k in train}


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=MODELS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--recipe", choices=["1.0", "1.1"], default="1.0",
                        help="1.0: multi-task, light augmentation; 1.1: + extra CT/MR, strong augmentation, "
                             "SimCLR term over two views")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--per-epoch", type=int)
    parser.add_argument("--no-refit", action="store_true", help="skip refitting the image scope gates")
    args = parser.parse_args()
    global EPOCHS
    strong = args.recipe == "1.1"
    global VERSION
    VERSION = "1.1.0" if strong else "1.0.0"
    EPOCHS = args.epochs or (EPOCHS if not strong else 24)
    per_epoch = args.per_epoch or (3200 if not strong else 4096)
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    started = time.time()
    train, test = load_data()
    if strong:
        train = add_extra(train)
    print("train", len(train["images"]), "test", len(test["images"]),
          {m: int((train["modality"] == i).sum()) for i, m in enumerate(MODALITIES)})
    pixels = train["images"].astype(np.float32) / 255.0
    mean, std = round(float(pixels.mean()), 4), round(float(pixels.std()), 4)
    steps = FRAME_STEPS + [{"op": "scale", "divide": 255}, {"op": "normalise", "mean": mean, "std": std}]

    # balanced epochs: each modality drawn about as often as the chest X-rays' half
    counts = np.bincount(train["modality"], minlength=len(MODALITIES))
    weights = (1.0 / counts[train["modality"]]) * 0.5 + (1.0 / len(train["modality"])) * 0.5 * len(MODALITIES)
    if strong:  # fully balanced: each modality a quarter of every epoch
        weights = 1.0 / counts[train["modality"]]
    weights = weights / weights.sum()
    model = MultiTask()
    if strong:  # SimCLR's projection head (dropped from the export with the task heads)
        model.projector = nn.Sequential(nn.Linear(model.encoder.dim, 128), nn.ReLU(inplace=True), nn.Linear(128, 64))
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps_per_epoch = per_epoch // 64
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=EPOCHS * steps_per_epoch)
    generator = torch.Generator().manual_seed(SEED)
    tensors = {k: torch.from_numpy(np.asarray(v)) for k, v in train.items() if k != "source"}
    pneu_weight = torch.tensor(float((train["pneumonia"] == 0).sum()) / max(1, (train["pneumonia"] == 1).sum()))
    for epoch in range(EPOCHS):
        model.train()
        order = rng.choice(len(weights), size=per_epoch, p=weights)
        total = 0.0
        for start in range(0, steps_per_epoch * 64, 64):
            idx = torch.from_numpy(order[start:start + 64])
            raw = tensors["images"][idx].float()[:, None] / 255.0
            if strong:
                # view 1 as 1.0 trains (its heads learn the disease, mask and position cues on
                # near-natural images), view 2 scrambled; SimCLR pulls the two together
                views = torch.cat([augment(raw, generator), strong_augment(raw, generator)])
                embedding, modality2, pneumonia2, position2, mask2 = model((views - mean) / std)
                half = len(idx)
                loss = nt_xent(model.projector(embedding[:half]), model.projector(embedding[half:]))
                modality, pneumonia, position, mask = modality2[:half], pneumonia2[:half], position2[:half], mask2[:half]
                loss = loss + F.cross_entropy(modality2, tensors["modality"][idx].repeat(2))
            else:
                x = augment(raw, generator)
                x = (x - mean) / std
                _, modality, pneumonia, position, mask = model(x)
                loss = F.cross_entropy(modality, tensors["modality"][idx])
            has_label = tensors["pneumonia"][idx] >= 0
            if has_label.any():
                loss = loss + F.binary_cross_entropy_with_logits(
                    pneumonia[has_label], tensors["pneumonia"][idx][has_label].float(), pos_weight=pneu_weight)
            has_mask = tensors["has_mask"][idx]
            if has_mask.any():
                # the mask target is the unaugmented frame's: a coarse "where is the head" cue
                loss = loss + 0.5 * F.binary_cross_entropy_with_logits(mask[has_mask], tensors["masks"][idx][has_mask])
            has_pos = ~torch.isnan(tensors["position"][idx])
            if has_pos.any():
                loss = loss + F.mse_loss(torch.sigmoid(position[has_pos]), tensors["position"][idx][has_pos].float())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss)
        print(f"epoch {epoch + 1}/{EPOCHS} loss {total / steps_per_epoch:.4f} ({time.time() - started:.0f} s)", flush=True)

    model.eval()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out_dir / f"{NAME}.onnx"
    torch.onnx.export(model.encoder, (torch.zeros(2, 1, SIZE, SIZE),), str(onnx_path), input_names=["image"],
                      output_names=["image_embedding"], dynamo=True, external_data=False,
                      dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    evaluation = evaluate(onnx_path, steps, train, test)
    seconds = round(time.time() - started)
    write(onnx_path, steps, mean, std, train, test, evaluation, seconds)
    if args.no_refit or args.out_dir != MODELS:
        return
    # the image models' scope gates measure distances in this encoder's space and name its sha256:
    # refit them (in a fresh process: no cached registry or session of the old encoder), or the
    # models refuse to run with the new encoder
    import subprocess

    subprocess.run([sys.executable, str(Path(__file__).with_name("fit_image_trust.py"))], check=True)
    print("refitted the image scope gates; update the figures in models/training/when_not_to_use/ from the "
          "lines above, then run python -m healthfm_desktop.core.inference.shipped_digests")


def evaluate(onnx_path, steps, train, test):
    """Linear probes on held-out parts, through the app's own embedding path."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from healthfm_desktop.core.foundation.images import ImageEmbedder

    embedder = ImageEmbedder(onnx_path, steps, threads=1)
    # the held-out items are embedded from their 64-px frames; the frames are pad_square+resize of
    # the originals, which the embedder's own steps leave unchanged (already square, already 64 px)
    e_train, e_test = embedder.embed(list(train["images"])), embedder.embed(list(test["images"]))
    result = {}
    knn = make_pipeline(StandardScaler(), KNeighborsClassifier(5)).fit(e_train, train["modality"])
    predicted = knn.predict(e_test)
    single = np.array([s.startswith("single:") for s in test["source"]])
    result["modality_knn5_accuracy_test"] = round(float((predicted == test["modality"]).mean()), 4)
    result["modality_knn5_accuracy_other_scanners"] = {
        "value": round(float((predicted[single] == test["modality"][single]).mean()), 4), "n": int(single.sum()),
        "per_file": {s[7:]: MODALITIES[p] for s, p in zip(test["source"][single], predicted[single])}}
    lab_tr, lab_te = train["pneumonia"] >= 0, test["pneumonia"] >= 0
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)).fit(
        e_train[lab_tr], train["pneumonia"][lab_tr])
    result["pneumonia_linear_probe_auc_test"] = round(float(roc_auc_score(
        test["pneumonia"][lab_te], probe.predict_proba(e_test[lab_te])[:, 1])), 4)
    for key, value in result.items():
        print(key, value)
    return result


def write(onnx_path, steps, mean, std, train, test, evaluation, seconds):
    from healthfm_desktop.core.inference.registry import write_manifest

    counts = {m: int((train["modality"] == i).sum()) for i, m in enumerate(MODALITIES)}
    manifest = {
        "name": NAME, "version": VERSION, "file": onnx_path.name, "task": "image-embedding", "kind": "image",
        "inputs": [{"name": "image", "shape": ["batch", 1, SIZE, SIZE], "dtype": "float32"}],
        "outputs": [{"name": "image_embedding", "shape": ["batch", 128], "dtype": "float32",
                     "meaning": "global-average-pooled features of the last convolution stage"}],
        "preprocessing": {"steps": steps, "input": "grey-scale uint8 display values (DICOM: modality LUT, VOI "
                                                   "window, MONOCHROME1 inverted; colour converted to grey)"},
        "embedding_dim": 128,
        "license": "CC BY 4.0 (weights derived from PneumoniaMNIST and HC18, CC BY 4.0; DICOM test files BSD-2 "
                   "and public test collections); code MIT",
        "training_data": {"source": "PneumoniaMNIST train+val, HC18 train+val, the first 85 % of the slices of "
                                    "the bundled CT head phantom and MR MPRAGE series",
                          "counts": counts, "test_counts": {m: int((test["modality"] == i).sum())
                                                            for i, m in enumerate(MODALITIES)},
                          "tasks": ["modality (4 classes)", "pneumonia (PneumoniaMNIST labels)",
                                    "fetal head coarse mask 8x8 (HC18)", "slice position within a CT/MR series"]},
        "metrics": {"split": "held-out: PneumoniaMNIST test (312), HC18 test (103), last 15 % of each series, "
                             "single-file DICOMs from other scanners", **evaluation},
        "intended_use": "Embeds any 2D grey-scale medical image (DICOM frame, PNG, JPEG) for adaptation heads, "
                        "similar-image search and applicability-domain checks. Not a medical device.",
        "limitations": ["Trained on four modalities from few sources (one CT phantom, one MR volume): other "
                        "modalities, body parts and scanners are embedded but not separated reliably.",
                        "64x64 input: fine detail is lost."],
        "training_script": "models/training/train_image_encoder.py", "seed": SEED, "epochs": EPOCHS,
        "train_seconds_one_core": seconds, "date": date.today().isoformat(),
    }
    write_manifest(onnx_path.with_name(f"{NAME}.json"), manifest)
    print(json.dumps(manifest["metrics"], indent=1))


if __name__ == "__main__":
    main()
