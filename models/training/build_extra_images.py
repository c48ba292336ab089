"""Builds models/training/data/images/extra_ct_mr.npz: more CT/MR (and some US/CR) 64x64 frames for
the image encoder, from the shared series and the DICOM/NIfTI test data of four pinned wheels,
with every image that matches a held-out file (tests/data/dicom single/ and dicomdir/) left out.

    pip download --no-deps pydicom-data==1.0.0 pydicom==3.0.2 nibabel==5.4.2 nilearn==0.14.1 -d WHEELS
    python models/training/build_extra_images.py --wheels WHEELS --shared DATA/dicom

Leak check, per image before it is kept: its pixel hash, its SOP Instance UID and its 32x32
thumbnail's correlation (> 0.9, flips included) against every frame of every held-out file.
The series' last slices that image_encoder 1.0.0 holds out (and a gap) are left out of the
volumes before they are resliced, so that split stays clean too."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import sys
import tempfile
import warnings
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from evaluate_image_modality import (DICOM_MODALITY, DICOMDIR, MODALITIES, SAME_IMAGE_CORRELATION,  # noqa: E402
                                     SINGLE, thumbnail)

OUT = ROOT / "models" / "training" / "data" / "images" / "extra_ct_mr.npz"
WHEELS = {  # the wheels' sha256 (PyPI), so the set is rebuilt from the same bytes
    "pydicom_data-1.0.0-py3-none-any.whl": "622ac97265f1d91f76b5120b5bd6eb0f57737c392ef863b72c71779c91e33637",
    "pydicom-3.0.2-py3-none-any.whl": "abf971a5440f84dbaf42c4b6758e30e62480902584f8b270b9a5d146e278a07b",
    "nibabel-5.4.2-py3-none-any.whl": "553482c5f1e1034fc312edf6fb7f32236c0056439845d1c29293b7e8c98d4854",
    "nilearn-0.14.1-py3-none-any.whl": "725206484e9fb3f6691f9c2d20204a068759d5072f12055324702ee0cb2bbe8a",
}
CT_WINDOWS = [(40, 80), (40, 400), (600, 2800)]  # brain, soft tissue, bone (centre, width in HU)
PERCENTILE_WINDOWS = [(1, 99), (5, 99.8), (0, 95)]  # MR and the rest: (low, high) percentiles
# image_encoder 1.0.0's held-out slices of the series (last 15 % after a two-slice gap), as
# instance numbers of the shared 140-slice CT (the bundled 20- and 6-slice series are its
# instances 61-80 and 101-106) and slice indices of the 170-slice MR
CT_KEEP = [range(1, 76), range(83, 101), range(109, 141)]
MR_KEEP = range(0, 142)
MAX_FRAMES = 16  # evenly spaced frames of a multi-frame file (a 240-frame file would swamp the set)


def frame64(pixels: np.ndarray) -> np.ndarray:
    from healthfm_desktop.core.inference.image_steps import apply_steps

    return apply_steps(pixels, [{"op": "pad_square"}, {"op": "resize", "size": [64, 64]}])[0, 0].astype(np.uint8)


def window(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return (np.clip((values - low) / max(high - low, 1e-6), 0, 1) * 255).astype(np.uint8)


def percentile_windows(values: np.ndarray) -> list[tuple[float, float]]:
    return [tuple(np.percentile(values, [lo, hi])) for lo, hi in PERCENTILE_WINDOWS]


def windowed(values: np.ndarray, modality: str, limits=None) -> list[tuple[str, np.ndarray]]:
    """Display versions of one slice of real values: CT in HU windows, the rest in percentile
    windows (``limits``: of its volume, from percentile_windows; default of the slice itself)."""
    if modality == "ct":
        return [(f"W{w}L{c}", window(values, c - w / 2, c + w / 2)) for c, w in CT_WINDOWS]
    limits = limits or percentile_windows(values)
    return [(f"p{lo}-{hi}", window(values, a, b)) for (lo, hi), (a, b) in zip(PERCENTILE_WINDOWS, limits)]


def isotropic(image: np.ndarray, row_mm: float, col_mm: float) -> np.ndarray:
    import cv2

    h, w = image.shape
    scale = min(row_mm, col_mm)
    return cv2.resize(image.astype(np.float32), (max(1, round(w * col_mm / scale)), max(1, round(h * row_mm / scale))),
                      interpolation=cv2.INTER_AREA)


class HeldOut:
    """Every frame of the held-out files: pixel hashes, SOP UIDs and thumbnails to match against."""

    def __init__(self):
        import pydicom

        from healthfm_desktop.core.errors import UserFacingError
        from healthfm_desktop.core.imaging.ai.preprocessing import read_dicom_bytes

        self.hashes, self.uids, thumbs = set(), set(), []
        paths = sorted(SINGLE.glob("*.dcm")) + sorted(p for p in DICOMDIR.rglob("*") if p.is_file() and p.name != "DICOMDIR")
        for path in paths:
            data = path.read_bytes()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ds = pydicom.dcmread(io.BytesIO(data), force=True)
                    stored = ds.pixel_array
            except Exception:  # undecodable held-out files cannot be matched by pixels: UID only
                stored = None
                ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
            self.uids.add(str(ds.get("SOPInstanceUID", "") or ""))
            if stored is None:
                continue
            frames = stored if int(ds.get("NumberOfFrames", 1) or 1) > 1 else stored[None]
            for i, f in enumerate(frames):
                self.hashes.add(hashlib.sha256(np.ascontiguousarray(f).tobytes()).hexdigest())
                try:
                    shown = read_dicom_bytes(data, frame=i, path=path).pixels
                except UserFacingError:
                    continue
                self.hashes.add(hashlib.sha256(np.ascontiguousarray(shown).tobytes()).hexdigest())
                thumbs.append(thumbnail(shown))
        self.uids.discard("")
        t = np.stack(thumbs)
        self.thumbs = np.concatenate([t, t[:, :, ::-1], t[:, ::-1, :], t[:, ::-1, ::-1]]).reshape(len(t) * 4, -1)

    def matches(self, pixels: np.ndarray, uid: str = "", stored: np.ndarray | None = None) -> str | None:
        if uid and uid in self.uids:
            return "SOP UID"
        for array in (pixels, stored):
            if array is not None and hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest() in self.hashes:
                return "pixel hash"
        if np.ptp(pixels) == 0:
            return "blank"
        r = float(np.max(self.thumbs @ thumbnail(pixels).ravel()) / self.thumbs.shape[1])
        return f"thumbnail r={r:.3f}" if r > SAME_IMAGE_CORRELATION else None


class Builder:
    def __init__(self, held: HeldOut):
        self.held, self.images, self.modality, self.acquisition, self.view = held, [], [], [], []
        self.dropped: Counter = Counter()
        self.files: list[dict] = []

    def add(self, pixels, modality, acquisition, view, uid="", stored=None, check=True) -> bool:
        reason = self.held.matches(pixels, uid, stored) if check else None
        if reason:
            self.dropped[(acquisition, reason.split(" r=")[0])] += 1
            return False
        self.images.append(frame64(pixels))
        if len(self.images) % 200 == 0:
            print(f"{len(self.images)} images ({acquisition})", file=sys.stderr, flush=True)
        self.modality.append(MODALITIES.index(modality))
        self.acquisition.append(acquisition)
        self.view.append(view)
        return True

    def volume(self, vol, spacing, modality, name, per_axis, uid_check=True):
        """About ``per_axis`` evenly spaced slices of a (z, y, x) volume of real values along each
        axis, in several windows, isotropic in mm; slices that show almost nothing are skipped."""
        dz, dy, dx = spacing
        sample = vol[::2, ::4, ::4]
        limits, content = percentile_windows(sample), float(np.percentile(sample, 60))
        for axis, (rows_mm, cols_mm) in enumerate([(dy, dx), (dz, dx), (dz, dy)]):
            n = vol.shape[axis]
            step = max(1, n // per_axis)
            for i in range(step // 2, n, step):
                sl = np.take(vol, i, axis=axis)
                if axis:
                    sl = sl[::-1]  # superior up in the reformats
                sl = isotropic(sl, rows_mm, cols_mm)
                if (sl > content).mean() < 0.05:
                    continue
                for label, shown in windowed(sl, modality, limits):
                    self.add(shown, modality, name, f"{['axis0', 'axis1', 'axis2'][axis]}:{label}", check=uid_check)

    def save(self, path: Path, sources: dict):
        images = np.stack(self.images)
        np.savez_compressed(path, images=images, modality=np.array(self.modality, np.int8),
                            acquisition=np.array(self.acquisition), view=np.array(self.view),
                            modalities=np.array(MODALITIES))
        counts = Counter(MODALITIES[m] for m in self.modality)
        summary = {"images": len(images), "counts": dict(counts),
                   "acquisitions": dict(Counter(self.acquisition)),
                   "dropped_as_held_out": {f"{a} ({r})": n for (a, r), n in sorted(self.dropped.items())},
                   "sources": sources, "bytes": path.stat().st_size}
        path.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        return summary


def read_series(folder: Path, keep) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A classic series as a (z, y, x) volume of modality-LUT values, sorted by instance number;
    ``keep``: instance numbers (or slice indices when it is a range starting at 0) to use."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    slices = sorted((pydicom.dcmread(p) for p in folder.glob("*.dcm")), key=lambda d: int(d.InstanceNumber))
    keep = set(keep)
    by_index = isinstance(keep, set) and min(keep) == 0
    chosen = [d for i, d in enumerate(slices) if (i if by_index else int(d.InstanceNumber)) in keep]
    vol = np.stack([apply_modality_lut(d.pixel_array, d).astype(np.float32) for d in chosen])
    d = chosen[0]
    thickness = float(getattr(d, "SpacingBetweenSlices", 0) or d.SliceThickness)
    return vol, (thickness, float(d.PixelSpacing[0]), float(d.PixelSpacing[1]))


def dicom_files(builder: Builder, files: list[tuple[str, bytes]]):
    """Every frame of the CR/DX/US/CT/MR DICOMs among ``files`` (name, bytes), in the app's own
    display path plus (CT/MR) the extra windows; held-out matches left out."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    from healthfm_desktop.core.errors import UserFacingError
    from healthfm_desktop.core.imaging.ai.preprocessing import read_dicom_bytes

    for name, data in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(io.BytesIO(data), force=True)
                modality = DICOM_MODALITY.get(str(ds.get("Modality", "") or "").upper())
                if modality is None or "PixelData" not in ds:
                    continue
                stored = ds.pixel_array
        except Exception:
            continue
        n = int(ds.get("NumberOfFrames", 1) or 1)
        frames = stored if n > 1 else stored[None]
        uid = str(ds.get("SOPInstanceUID", "") or "")
        kept = 0
        for i in sorted(set(np.linspace(0, n - 1, min(n, MAX_FRAMES)).round().astype(int).tolist())):
            try:
                shown = read_dicom_bytes(data, frame=i).pixels
            except UserFacingError:
                continue
            if not builder.add(shown, modality, name, "default", uid, frames[i]):
                continue
            kept += 1
            if modality in ("ct", "mr") and frames[i].ndim == 2:
                real = apply_modality_lut(frames[i], ds).astype(np.float32)
                for label, image in windowed(real, modality):
                    builder.add(image, modality, name, label, uid)
        builder.files.append({"file": name, "modality": modality, "frames": n, "kept": kept})


def nifti_volumes(builder: Builder, nib, paths: list[tuple[str, Path]], step: int):
    for name, path in paths:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj).astype(np.float32)
        if data.ndim == 4:
            data = data[..., 0]
        zooms = img.header.get_zooms()[:3]
        # nibabel's array is (x, y, z): as (z, y, x), spacing (dz, dy, dx)
        vol = np.transpose(data, (2, 1, 0))[::-1, ::-1]
        builder.volume(vol, (float(zooms[2]), float(zooms[1]), float(zooms[0])), "mr", name, step)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, required=True, help="folder with the four pinned wheels")
    parser.add_argument("--shared", type=Path, required=True, help="the shared DICOM data folder (series/, single/)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    for wheel, digest in WHEELS.items():
        path = args.wheels / wheel
        if not path.is_file():
            parser.error(f"missing {wheel} in {args.wheels} (pip download --no-deps it)")
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            parser.error(f"{wheel}: sha256 differs from the pinned wheel's")
    held = HeldOut()
    builder = Builder(held)
    sources = {}
    # the shared series (the held-out slices left out first; every slice of what is left, resliced)
    series = args.shared / "series"
    vol, spacing = read_series(series / "CT_head_phantom_philips_1mm_140sl", [i for r in CT_KEEP for i in r])
    for k, block in enumerate(CT_KEEP):  # reslice each contiguous block on its own
        lo = sum(len(b) for b in CT_KEEP[:k])
        builder.volume(vol[lo:lo + len(block)], spacing, "ct", "shared:CT_head_phantom_philips_1mm_140sl",
                       max(4, len(block) // 3))
    vol, spacing = read_series(series / "MR_T1_3D_MPRAGE_sag_philips_1mm_170sl", MR_KEEP)
    builder.volume(vol, spacing, "mr", "shared:MR_T1_3D_MPRAGE_sag_philips_1mm_170sl", 40)
    sources["shared series"] = "dcm_qa_ct / dcm_qa_philips_enh (BSD-2-Clause, Chris Rorden), see data/dicom/README.md"
    # shared single files that are not held out (e.g. the 240-frame Philips pCASL MR)
    held_names = {p.name for p in SINGLE.glob("*.dcm")}
    singles = [(f"shared:{p.name}", p.read_bytes()) for p in sorted((args.shared / "single").glob("*.dcm"))
               if p.name not in held_names]
    dicom_files(builder, singles)
    # the wheels' DICOM test files
    with tempfile.TemporaryDirectory() as tmp:
        for wheel in WHEELS:
            with zipfile.ZipFile(args.wheels / wheel) as z:
                z.extractall(tmp)
        tmp = Path(tmp)
        files = []
        for path in sorted(list((tmp / "pydicom" / "data" / "test_files").rglob("*"))
                           + list((tmp / "data_store" / "data").rglob("*"))
                           + list((tmp / "nibabel").rglob("*.dcm")) + list((tmp / "nibabel").rglob("*.dcm.gz"))):
            if path.is_file() and path.suffix in (".dcm", ".gz", ""):
                data = path.read_bytes()
                if path.suffix == ".gz":
                    try:
                        data = gzip.decompress(data)
                    except OSError:
                        continue
                files.append((f"{path.relative_to(tmp).parts[0]}:{path.name}", data))
        dicom_files(builder, files)
        sources["pydicom 3.0.2 test_files, pydicom-data 1.0.0, nibabel 5.4.2 DICOMs"] = \
            "MIT (pydicom, pydicom-data; NEMA WG04 test images freely redistributable; GDCM BSD-3), MIT (nibabel)"
        sys.path.insert(0, str(tmp))
        import nibabel as nib

        nifti_volumes(builder, nib, [(f"nibabel:{n}", tmp / "nibabel" / "tests" / "data" / n)
                                     for n in ("anatomical.nii", "example4d.nii.gz", "functional.nii",
                                               "example_nifti2.nii.gz")], 12)
        nifti_volumes(builder, nib, [("nilearn:mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
                                      tmp / "nilearn" / "datasets" / "data" /
                                      "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")], 24)
        sources["nibabel 5.4.2 test volumes"] = "MIT (nibabel)"
        sources["nilearn 0.14.1 MNI152 2009a T1 template"] = \
            "BSD-3-Clause (nilearn); ICBM 2009a template (c) McConnell Brain Imaging Centre, free use with notice"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = builder.save(args.out, sources)
    summary["files"] = builder.files
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: summary[k] for k in ("images", "counts", "bytes")}), "dropped:",
          sum(builder.dropped.values()))
    return summary


if __name__ == "__main__":
    main()
