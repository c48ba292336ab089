"""Fit the trust parts of the shipped image models on their own training data, write them beside
the models and into the manifests, and print the figures:

- the scope gate: kNN over image features of the training images (``<model>_scope.npz``) and over
  their image-encoder embeddings (``<model>_scope_embedding.npz``), each threshold at the 99.5 %
  quantile of the validation images' distances; in scope = near by both;
- the pneumonia classifier's split-conformal sets at 90 % (calibrated on the validation split,
  coverage measured on the test split).

Out-of-scope images for the figures come from ``--outside NAME=PATH`` (a folder of DICOM / PNG /
JPEG files, read recursively, DICOM files stripped of their tags as if saved as PNG; or a .npy
stack of grey images, or ``sklearn:samples`` for scikit-learn's sample photos) and from the other
model's data (HC18 for the classifier, PneumoniaMNIST for the segmenter). ``--show-passing``
names the out-of-scope files a gate lets through (printed before the set's line). The sets of
the model cards' figures:

    python models/training/fit_image_trust.py --check --show-passing \
        --outside "CT/MR series as PNG [dev]=<shared>/dicom/series" \
        --outside "photos and crops [dev]=tests/data/images/photos" \
        --outside "single DICOM files as PNG [held out]=<shared>/dicom/single" \
        --outside "DICOMDIR files as PNG [held out]=<shared>/dicom/dicomdir" \
        --outside "scikit-learn photos [held out]=sklearn:samples"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from healthfm_desktop.core.imaging.ai import preprocessing as prep  # noqa: E402
from healthfm_desktop.core.imaging.ai.intended_use import ImageScope, fit_scope  # noqa: E402
from healthfm_desktop.core.inference.conformal import ConformalClassifier  # noqa: E402
from healthfm_desktop.core.inference.registry import ModelRegistry, write_manifest  # noqa: E402

DATA = ROOT / "models" / "training" / "data" / "images"
MODELS = ROOT / "models"
QUANTILE = 0.995
COVERAGE = 0.9
SEED = 0

CLASSIFIER_SCOPE = {
    "description": "frontal chest X-rays like PneumoniaMNIST's",
    "modalities": ["CR", "DX", "DR"], "body_parts": ["CHEST"], "views": ["PA", "AP"],
    "min_bits_stored": 8, "min_side_px": 28, "aspect_ratio_range": [0.625, 1.6], "feature_grid": [28, 28],
}
SEGMENTER_SCOPE = {
    "description": "fetal head ultrasound images like HC18's",
    "modalities": ["US"], "min_bits_stored": 8, "min_side_px": 96, "aspect_ratio_range": [0.93, 2.37],
    "feature_grid": [36, 52],
}


def classifier_picture(image: prep.SourceImage) -> np.ndarray:
    return prep.resize_for_classifier(image.pixels)


def segmenter_picture(image: prep.SourceImage) -> np.ndarray:
    return prep.letterbox_pixels(image.pixels)[0]


def hc18_images(data, split: str) -> list[prep.SourceImage]:
    """The ultrasound images as a user's PNG would give them: the content without the padding."""
    out = []
    for image, (height, width), (top, left) in zip(data[f"{split}_images"], data[f"{split}_content_hw"], data[f"{split}_pad_top_left"]):
        out.append(prep.SourceImage(np.ascontiguousarray(image[top : top + height, left : left + width])))
    return out


def outside_images(path: Path, rng: np.random.Generator, crops: int = 4) -> tuple[list[prep.SourceImage], list[str]]:
    """Every readable image under ``path`` as a tag-less picture (plus random square crops of
    large photos, each a different picture a user could crop and drop), and each one's name."""
    if str(path) == "sklearn:samples":
        import tempfile

        from PIL import Image
        from sklearn.datasets import load_sample_images

        samples = load_sample_images()
        with tempfile.TemporaryDirectory() as folder:  # read back as a user's PNG would be
            for image, name in zip(samples.images, samples.filenames):
                Image.fromarray(image).save(Path(folder) / (Path(name).stem + ".png"))
            return outside_images(Path(folder), rng, crops)
    if path.suffix == ".npy":
        stack = np.load(path)
        stack = np.clip(stack * 255 if stack.max() <= 1.0 else stack, 0, 255).astype(np.uint8)
        return [prep.SourceImage(np.ascontiguousarray(a)) for a in stack], [f"{path.name}[{i}]" for i in range(len(stack))]
    images, names = [], []
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.name != "DICOMDIR"):
        try:
            read = prep.read_image(file)
        except Exception:  # noqa: BLE001 - not an image, or undecodable: not part of the set
            continue
        images.append(prep.SourceImage(read.pixels, was_colour=read.was_colour))
        names.append(str(file.relative_to(path)))
        if read.kind != "dicom" and min(read.shape) >= 128:
            for n in range(crops):
                side = int(min(read.shape) * rng.uniform(0.3, 0.8))
                top = int(rng.integers(0, read.shape[0] - side + 1))
                left = int(rng.integers(0, read.shape[1] - side + 1))
                crop = np.ascontiguousarray(read.pixels[top : top + side, left : left + side])
                images.append(prep.SourceImage(crop, was_colour=read.was_colour))
                names.append(f"{file.relative_to(path)} crop {n + 1}")
    return images, names


def withheld(scope: ImageScope, images, picture, names: list[str] | None = None) -> float:
    """The share of ``images`` the gate withholds; with ``names``, it names those it lets through."""
    out = np.array([not scope.decide(image, picture(image)).in_scope for image in images])
    if names is not None and not out.all():
        print("    let through: " + ", ".join(name for name, o in zip(names, out) if not o))
    return float(np.mean(out))


def update_manifest(name: str, **entries) -> None:
    path = MODELS / f"{name}.json"
    if not path.is_file():
        return
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest.update(entries)
    write_manifest(path, manifest)


def onnx_probabilities(model: str, images_uint8: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(MODELS / f"{model}.onnx"), options, providers=["CPUExecutionProvider"])
    tensor = prep.normalise_classifier_batch(images_uint8)
    return np.concatenate([session.run(["probabilities"], {"image": tensor[i : i + 256]})[0] for i in range(0, len(tensor), 256)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outside", action="append", default=[], metavar="NAME=PATH",
                        help="a set of out-of-scope images (folder or .npy) to measure the gate on")
    parser.add_argument("--check", action="store_true", help="measure only: do not rewrite the scope files and manifests")
    parser.add_argument("--show-passing", action="store_true", help="name the out-of-scope files each gate lets through")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(SEED)
    pneumonia = np.load(DATA / "pneumoniamnist_28.npz")
    hc18 = np.load(DATA / "hc18_seg_144x208.npz")

    if not args.check:
        classes = [str(c) for c in pneumonia["classes"]] if "classes" in pneumonia.files else ["normal", "pneumonia"]
        entry = fit_scope(pneumonia["train_images"], pneumonia["val_images"], CLASSIFIER_SCOPE,
                          MODELS / "pneumonia_resnet_scope.npz", QUANTILE,
                          example_labels=[classes[int(y)] for y in pneumonia["train_labels"].ravel()])
        for name in ("pneumonia_resnet", "pneumonia_resnet_int8"):
            update_manifest(name, scope=entry)
        # the letterbox of each image's content, as a user's PNG of it reaches the model
        entry = fit_scope([segmenter_picture(i) for i in hc18_images(hc18, "train")],
                          [segmenter_picture(i) for i in hc18_images(hc18, "val")], SEGMENTER_SCOPE,
                          MODELS / "hc18_unet_scope.npz", QUANTILE)
        for name in ("hc18_unet", "hc18_unet_int8"):
            update_manifest(name, scope=entry)
        for name in ("pneumonia_resnet", "pneumonia_resnet_int8"):
            val = onnx_probabilities(name, pneumonia["val_images"])
            conformal = ConformalClassifier.calibrate(val, pneumonia["val_labels"].ravel(), COVERAGE)
            update_manifest(name, conformal=conformal.to_dict())

    def scope_of(name: str) -> ImageScope:
        return ImageScope.of_manifest(ModelRegistry(MODELS).get(name))

    classifier_scope, segmenter_scope = scope_of("pneumonia_resnet"), scope_of("hc18_unet")
    chest_test = [prep.SourceImage(a) for a in pneumonia["test_images"]]
    outside, names = {}, {}
    for item in args.outside:
        name, _, path = item.partition("=")
        outside[name], names[name] = outside_images(Path(path), rng)
    print(f"scope gate, threshold at the {QUANTILE:.1%} quantile of validation distances (k=5)")
    print(f"pneumonia_resnet: in scope, PneumoniaMNIST test: {withheld(classifier_scope, chest_test, classifier_picture):.1%} "
          f"of {len(chest_test)} withheld")
    for name, images in {"HC18 train (ultrasound)": hc18_images(hc18, "train"),
                         "HC18 test (ultrasound)": hc18_images(hc18, "test"), **outside}.items():
        shown = names.get(name) if args.show_passing else None
        print(f"pneumonia_resnet: out of scope, {name}: {withheld(classifier_scope, images, classifier_picture, shown):.1%} "
              f"of {len(images)} withheld")
    us_test = hc18_images(hc18, "test")
    print(f"hc18_unet: in scope, HC18 test: {withheld(segmenter_scope, us_test, segmenter_picture):.1%} of {len(us_test)} withheld")
    for name, images in {"PneumoniaMNIST test (chest X-ray)": chest_test, **outside}.items():
        shown = names.get(name) if args.show_passing else None
        print(f"hc18_unet: out of scope, {name}: {withheld(segmenter_scope, images, segmenter_picture, shown):.1%} "
              f"of {len(images)} withheld")

    manifest = json.loads((MODELS / "pneumonia_resnet.json").read_text(encoding="utf-8"))
    conformal = ConformalClassifier.from_dict(manifest["conformal"])
    test = onnx_probabilities("pneumonia_resnet", pneumonia["test_images"])
    members = conformal.membership(test)
    labels = pneumonia["test_labels"].ravel()
    coverage = float(members[np.arange(len(labels)), labels].mean())
    print(f"pneumonia_resnet conformal sets at {COVERAGE:.0%} (calibrated on val, n={conformal.n_calibration}): "
          f"test coverage {coverage:.1%}, mean set size {members.sum(axis=1).mean():.2f}, "
          f"both labels in {np.mean(members.sum(axis=1) == 2):.1%} of {len(labels)} test images")
    nearest_agreement(classifier_scope, pneumonia)
    failure_cases(pneumonia, hc18)
    return 0


def nearest_agreement(scope: ImageScope, pneumonia) -> None:
    """How often the most similar training X-ray the panel shows has the test X-ray's own label:
    nearest by the image encoder's embedding (what is shown) and by the image features."""
    from healthfm_desktop.core.foundation.images import embed_images
    from healthfm_desktop.core.imaging.ai.intended_use import image_features, scope_pixels

    pictures = [prep.resize_for_classifier(a) for a in pneumonia["test_images"]]
    by_encoder = scope.embedding_domain.assess(embed_images(pictures)).nearest[:, 0]
    features = np.stack([image_features(scope_pixels(p, scope.spec)) / scope.feature_scale for p in pictures])
    by_features = scope.domain.assess(features).nearest[:, 0]
    train, test = pneumonia["train_labels"].ravel(), pneumonia["test_labels"].ravel()
    print(f"pneumonia_resnet: the nearest training X-ray has the test X-ray's label for {np.mean(train[by_encoder] == test):.1%} "
          f"of {len(test)} (by the image encoder's embedding; {np.mean(train[by_features] == test):.1%} by the image features)")


def failure_cases(pneumonia, hc18) -> None:
    """The measured failures the model cards' "When not to use this" sections quote."""
    from healthfm_desktop.core.imaging.ai.classification import classify
    from healthfm_desktop.core.imaging.ai.models import load_model
    from healthfm_desktop.core.imaging.ai.segmentation import segment

    classifier = load_model("pneumonia_resnet", quantized=False)
    forced = [classify(image, classifier, force=True) for image in hc18_images(hc18, "test")]
    p = np.array([r.probabilities["pneumonia"] for r in forced])
    print(f"pneumonia_resnet run anyway on HC18 test: 'pneumonia' for {np.mean(p >= 0.5):.0%}, median p {np.median(p):.2f}, "
          f"p > 0.9 for {np.mean(p > 0.9):.0%}")
    results = [classify(prep.SourceImage(a), classifier) for a in pneumonia["test_images"]]
    truth = pneumonia["test_labels"].ravel() == 1
    said = np.array([r.label == "pneumonia" for r in results])
    confident = np.array([max(r.probabilities.values()) > 0.9 for r in results])
    wrong = said != truth
    print(f"pneumonia_resnet test: sensitivity {said[truth].mean():.1%} ({int((~said & truth).sum())} missed of {int(truth.sum())}), "
          f"specificity {1 - said[~truth].mean():.1%} ({int((said & ~truth).sum())} false of {int((~truth).sum())}); "
          f"{int((wrong & confident).sum())} of {int(wrong.sum())} errors had p > 0.9")
    segmenter = load_model("hc18_unet", quantized=False)
    errors = []
    for pixels, hc, (sx, _) in zip(hc18["test_images"], hc18["test_hc_mm"], hc18["test_pixel_size_xy_mm"]):
        measured = segment(prep.SourceImage(pixels), float(sx), segmenter, force=True).head_circumference_mm
        errors.append(np.nan if measured is None else abs(measured - hc))
    errors = np.array(errors)
    worst = hc18["test_hc_mm"][errors > np.nanpercentile(errors, 90)]
    print(f"hc18_unet test HC error: median {np.nanmedian(errors):.1f} mm, 95th percentile {np.nanpercentile(errors, 95):.1f} mm, "
          f"{int((errors > 10).sum())} above 10 mm, max {np.nanmax(errors):.1f} mm on a {hc18['test_hc_mm'][np.nanargmax(errors)]:.0f} mm head; "
          f"worst 10 %: mean HC {worst.mean():.0f} mm (all {hc18['test_hc_mm'].mean():.0f} mm)")


if __name__ == "__main__":
    raise SystemExit(main())
