"""Modality by 5-NN on images from scanners an image encoder never saw, scored per acquisition and
balanced over modalities (with a bootstrap CI), beside the card's older per-file figure.

    python models/training/evaluate_image_modality.py [--model models/image_encoder.json ...]

Held out: every frame of the single-file DICOMs in tests/data/dicom/single with a CR/US/CT/MR
modality. Files showing one acquisition (the same image re-encoded or cropped: same SOP Instance
UID, or first-frame thumbnails correlated > 0.9, flips included) form one acquisition, scored as
the mean over all its frames, so MR_small in six encodings counts once. A modality's score is the
mean over its acquisitions; the figure is the mean over the four modalities. The 5-NN reference is
200 training images per modality drawn evenly over that modality's acquisitions (seed 0, the same
images for every encoder), on standardised embeddings: an unbalanced reference (5,232 X-rays, 18 CT)
rewards a majority-class guess. DICOMDIR icons (16x16 thumbnails) are scored on their own; raw
64x64 pixels are the floor every encoder should beat."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from image_training import DICOM_MODALITY, MODALITIES, images_with_modality  # noqa: E402  (models/training)

SINGLE = ROOT / "tests" / "data" / "dicom" / "single"
DICOMDIR = ROOT / "tests" / "data" / "dicom" / "dicomdir"
PER_CLASS = 200
THUMB = 32
SAME_IMAGE_CORRELATION = 0.9


# ------------------------------------------------------------------------------------------
# grouping, balancing and scoring (pure numpy: tested in tests/core/test_image_modality_eval.py)


def thumbnail(pixels: np.ndarray, size: int = THUMB) -> np.ndarray:
    """A zero-mean unit-variance size x size thumbnail (pad to square, area resize) for matching."""
    from healthfm_desktop.core.inference.image_steps import apply_steps

    t = apply_steps(np.asarray(pixels), [{"op": "pad_square"}, {"op": "resize", "size": [size, size]}])[0, 0]
    t = t.astype(np.float64)
    return (t - t.mean()) / (t.std() + 1e-9)


def max_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Largest Pearson correlation of thumbnail ``a`` with ``b`` or one of b's flips."""
    return max(float((a * v).mean()) for v in (b, b[:, ::-1], b[::-1, :], b[::-1, ::-1]))


def group_acquisitions(uids: list[str], thumbnails: list[np.ndarray],
                       threshold: float = SAME_IMAGE_CORRELATION) -> list[int]:
    """Group index per file: files with the same SOP Instance UID or thumbnails correlated above
    ``threshold`` (flips included) are one acquisition (connected components)."""
    n = len(uids)
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if (uids[i] and uids[i] == uids[j]) or max_correlation(thumbnails[i], thumbnails[j]) > threshold:
                parent[root(j)] = root(i)
    roots = [root(i) for i in range(n)]
    order = {r: k for k, r in enumerate(dict.fromkeys(roots))}
    return [order[r] for r in roots]


def balanced_reference(labels: np.ndarray, acquisitions: np.ndarray, per_class: int = PER_CLASS,
                       seed: int = 0) -> np.ndarray:
    """Indices of ``per_class`` items per label, drawn evenly over each label's acquisitions
    (round robin over shuffled acquisitions, a random unused item of each in turn); a label with
    fewer items than ``per_class`` gives each item about equally often, so every label weighs the
    same in a nearest-neighbour vote."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        pools = [rng.permutation(members[acquisitions[members] == a]).tolist()
                 for a in rng.permutation(np.unique(acquisitions[members]))]
        picked = []
        while len(picked) < per_class:
            live = [p for p in pools if p]
            if not live:  # every item used once: start again (a small class repeats its items)
                pools = [rng.permutation(members[acquisitions[members] == a]).tolist()
                         for a in rng.permutation(np.unique(acquisitions[members]))]
                continue
            for pool in live:
                if len(picked) == per_class:
                    break
                picked.append(pool.pop())
        chosen.extend(picked)
    return np.asarray(chosen)


def acquisition_scores(correct: np.ndarray, acquisition: np.ndarray) -> dict[int, float]:
    """Mean correctness of each acquisition's frames."""
    return {int(a): float(correct[acquisition == a].mean()) for a in np.unique(acquisition)}


def balanced_accuracy(scores: dict[int, float], modality_of: dict[int, int]) -> tuple[float, dict[int, float]]:
    """Mean over modalities of the mean over that modality's acquisitions."""
    per = {}
    for m in sorted(set(modality_of.values())):
        per[m] = float(np.mean([s for a, s in scores.items() if modality_of[a] == m]))
    return float(np.mean(list(per.values()))), per


def bootstrap_ci(scores: dict[int, float], modality_of: dict[int, int], draws: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of the balanced accuracy, acquisitions resampled within each
    modality (a modality with one acquisition keeps it: the figure stays defined)."""
    rng = np.random.default_rng(seed)
    by_modality = {}
    for a, m in modality_of.items():
        by_modality.setdefault(m, []).append(scores[a])
    values = []
    for _ in range(draws):
        values.append(np.mean([np.mean(rng.choice(s, size=len(s), replace=True)) for s in by_modality.values()]))
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


# ------------------------------------------------------------------------------------------
# data


def held_out_frames():
    """(frames, file index per frame, files) for the single-file DICOMs with a CR/US/CT/MR modality;
    files: dicts of name, modality index, SOP Instance UID, first-frame thumbnail."""
    import pydicom

    from healthfm_desktop.core.errors import UserFacingError
    from healthfm_desktop.core.imaging.ai.preprocessing import read_dicom_bytes

    frames, owner, files = [], [], []
    for path in sorted(SINGLE.glob("*.dcm")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        modality = DICOM_MODALITY.get(str(header.get("Modality", "") or "").upper())
        if modality is None:
            continue
        data = path.read_bytes()
        n = int(header.get("NumberOfFrames", 1) or 1)
        try:
            pixels = [read_dicom_bytes(data, frame=i, path=path).pixels for i in range(n)]
        except UserFacingError:
            continue
        files.append({"name": path.name, "modality": MODALITIES.index(modality),
                      "uid": str(header.get("SOPInstanceUID", "") or ""), "thumbnail": thumbnail(pixels[0])})
        frames.extend(pixels)
        owner.extend([len(files) - 1] * n)
    return frames, np.asarray(owner), files


def icons():
    """First frames of the DICOMDIR's files (16x16 icons) with their modality, and which are blank."""
    pixels, labels, names = [], [], []
    for path, image, modality in images_with_modality(sorted(DICOMDIR.rglob("*"))):
        pixels.append(image.pixels)
        labels.append(MODALITIES.index(modality))
        names.append(path.name)
    blank = np.array([np.ptp(p) == 0 for p in pixels])
    return pixels, np.asarray(labels), names, blank


def training_pool(extra: bool = False):
    """image_encoder 1.0.0's training items (64-px frames), modality and acquisition per item: a
    CT/MR series is one acquisition, every PneumoniaMNIST / HC18 image its own; ``extra``: with
    the leak-checked extra frames (build_extra_images.py), one acquisition per volume or file."""
    import train_image_encoder as tie

    train, _ = tie.load_data()
    if extra:
        train = tie.add_extra(train)
    series = np.array([not s.startswith(("pneumoniamnist", "hc18")) for s in train["source"]])
    acquisition = np.where(series, np.unique(train["source"], return_inverse=True)[1] + len(series),
                           np.arange(len(series)))
    return list(train["images"]), train["modality"], acquisition


# ------------------------------------------------------------------------------------------


def pixel_features(images) -> np.ndarray:
    from healthfm_desktop.core.inference.image_steps import apply_steps

    steps = [{"op": "pad_square"}, {"op": "resize", "size": [64, 64]}, {"op": "scale", "divide": 255}]
    return np.concatenate([apply_steps(np.asarray(p), steps).reshape(1, -1) for p in images])


def knn_predict(reference: np.ndarray, labels: np.ndarray, queries: np.ndarray, k: int = 5) -> np.ndarray:
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), KNeighborsClassifier(k)).fit(reference, labels).predict(queries)


def score(embed, data) -> dict:
    """All figures for one embedding function ``embed(list of uint8 arrays) -> (n, d)``."""
    pool_images, pool_labels, reference, frames, owner, files, group, icon = (
        data[k] for k in ("pool_images", "pool_labels", "reference", "frames", "owner", "files", "group", "icons"))
    e_ref = embed([pool_images[i] for i in reference])
    predicted = knn_predict(e_ref, pool_labels[reference], embed(frames))
    truth = np.array([files[f]["modality"] for f in owner])
    acquisition = np.array([group[f] for f in owner])
    scores = acquisition_scores(predicted == truth, acquisition)
    modality_of = {group[i]: f["modality"] for i, f in enumerate(files)}
    value, per = balanced_accuracy(scores, modality_of)
    low, high = bootstrap_ci(scores, modality_of)
    icon_pixels, icon_labels, _, blank = icon
    icon_predicted = knn_predict(e_ref, pool_labels[reference], embed(icon_pixels))
    result = {
        "balanced_acquisition_accuracy": round(value, 4), "ci95": [round(low, 4), round(high, 4)],
        "per_modality": {MODALITIES[m]: round(v, 4) for m, v in per.items()},
        "acquisitions": len(scores), "files": len(files), "frames": len(frames),
        "per_acquisition": {" + ".join(f["name"] for i, f in enumerate(files) if group[i] == a): round(s, 3)
                            for a, s in scores.items()},
        "icons_accuracy_not_blank": round(float((icon_predicted == icon_labels)[~blank].mean()), 4),
        "icons": {"n": int(len(icon_labels)), "blank": int(blank.sum())},
    }
    # the card's older figure: first frame of every single file and icon, 5-NN on the whole
    # unbalanced training set
    first = [frames[int(np.flatnonzero(owner == i)[0])] for i in range(len(files))]
    old_truth = np.concatenate([[f["modality"] for f in files], icon_labels])
    old = knn_predict(embed(pool_images), pool_labels, embed(first + list(icon_pixels)))
    result["old_per_file_accuracy"] = {"value": round(float((old == old_truth).mean()), 4), "n": int(len(old_truth))}
    return result


def load_data(extra: bool = False) -> dict:
    pool_images, pool_labels, pool_acquisition = training_pool(extra)
    frames, owner, files = held_out_frames()
    group = group_acquisitions([f["uid"] for f in files], [f["thumbnail"] for f in files])
    return {"pool_images": pool_images, "pool_labels": pool_labels,
            "reference": balanced_reference(pool_labels, pool_acquisition),
            "frames": frames, "owner": owner, "files": files, "group": group, "icons": icons()}


def encoder_embed(manifest_path: Path):
    from healthfm_desktop.core.foundation.images import ImageEmbedder

    manifest = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
    embedder = ImageEmbedder(Path(manifest_path).with_name(manifest["file"]), manifest["preprocessing"]["steps"],
                             threads=1)
    return f"{manifest['name']} {manifest['version']} ({manifest_path})", embedder.embed


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", type=Path,
                        help="an image-embedding manifest (default: models/image_encoder.json); repeatable")
    parser.add_argument("--reference-extra", action="store_true",
                        help="draw the 5-NN reference from 1.0.0's training data and the extra CT/MR frames "
                             "(more CT/MR acquisitions; the old per-file figure then uses that pool too)")
    parser.add_argument("--write", action="store_true",
                        help="store the first --model's figures (and the raw-pixel floor) in its manifest, "
                             "for its card (evaluate_foundation.py --cards-only)")
    args = parser.parse_args(argv)
    data = load_data(args.reference_extra)
    results = {"raw 64x64 pixels": score(pixel_features, data)}
    for path in args.model or [ROOT / "models" / "image_encoder.json"]:
        name, embed = encoder_embed(path)
        results[name] = score(embed, data)
    for name, r in results.items():
        print(f"{name}: balanced acquisition accuracy {r['balanced_acquisition_accuracy']} "
              f"(95% CI {r['ci95'][0]}-{r['ci95'][1]}; {r['acquisitions']} acquisitions, {r['frames']} frames) "
              f"per modality {r['per_modality']}; icons {r['icons_accuracy_not_blank']} "
              f"({r['icons']['n'] - r['icons']['blank']} not blank); old per-file {r['old_per_file_accuracy']}")
    print(json.dumps(results, indent=1))
    if args.write:
        from healthfm_desktop.core.inference.registry import write_manifest

        path = (args.model or [ROOT / "models" / "image_encoder.json"])[0]
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
        mine, floor = list(results.values())[1], results["raw 64x64 pixels"]
        keep = ("balanced_acquisition_accuracy", "ci95", "per_modality", "acquisitions", "files", "frames",
                "icons_accuracy_not_blank", "icons")
        manifest["metrics"]["modality_knn5_unseen_scanners_balanced"] = {
            **{k: mine[k] for k in keep},
            "raw_pixels": {k: floor[k] for k in ("balanced_acquisition_accuracy", "ci95")},
            "reference": f"{PER_CLASS} training images per modality, drawn evenly over acquisitions (seed 0)"
                         + (", extra CT/MR frames included" if args.reference_extra else ""),
            "command": "python models/training/evaluate_image_modality.py"
                       + (" --reference-extra" if args.reference_extra else "")}
        write_manifest(Path(path), manifest)
    return results


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
