"""What the image training scripts share: static INT8 quantisation of an exported model, the
INT8 copy's manifest and card, the cards' common sections, and DICOM files read with their modality."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


# 7-bit weights (reduce_range): onnxruntime's fused U8S8 kernels saturate with full-range int8
# weights on x86 CPUs with AVX2 but no VNNI, which turned the pneumonia model's answers to noise
# there (requantise_image_models.py has the figures)
QUANTISATION = "onnxruntime static QDQ, per-channel INT8 weights in 7-bit range (reduce_range), UINT8 activations"


def quantise(float_path: Path, int8_path: Path, calibration: np.ndarray) -> None:
    """Static QDQ quantisation (QUANTISATION) calibrated on ``calibration``, one image at a time,
    fed to the graph input named "image"."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"image": calibration[i : i + 1]} for i in range(len(calibration))])

        def get_next(self):
            return next(self.batches, None)

    pre = int8_path.with_suffix(".pre.onnx")
    quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
    quantize_static(
        str(pre), str(int8_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True,
    )
    pre.unlink()


def ship_int8_variant(out_dir: Path, name: str, version: str, common: dict, quantization: str,
                      metrics: dict, shipped: bool) -> None:
    """Write the INT8 copy's manifest and card beside the float model when it ``shipped`` (its
    test metric stayed within the float model's tolerance); otherwise delete the copy and any
    stale manifest/card of an earlier run."""
    from healthfm_desktop.core.inference.registry import write_manifest

    int8_path = out_dir / f"{name}_int8.onnx"
    stale = (out_dir / f"{name}_int8.json", out_dir / f"{name}_int8.md")
    if not shipped:
        int8_path.unlink()
        for path in stale:
            path.unlink(missing_ok=True)
        return
    manifest = {
        "name": f"{name}_int8", "version": version, "file": int8_path.name, **common,
        "quantization": quantization, "float_model": name, "metrics": metrics,
    }
    write_manifest(stale[0], manifest)
    stale[1].write_text(int8_card(manifest), encoding="utf-8")


def int8_card(manifest: dict) -> str:
    """The INT8 variant's card: what differs, its own test metrics, and the float model's card."""
    return f"""# {manifest['name']} {manifest['version']}: INT8 variant of {manifest['float_model']}

{manifest['quantization']}. Chosen in Settings (`inference/quantized = true`); shipped only
because its test metric stayed within 0.5 points of the float model's.

## Test metrics ({manifest['metrics']['split']})
```
{json.dumps({k: v for k, v in manifest['metrics'].items() if k != 'split'}, indent=1)}
```

Everything else (data, intended use, limitations, training) is the float model's:
see [{manifest['float_model']}.md]({manifest['float_model']}.md).
"""


def reproduce_and_log(manifest: dict, log_lines: list[str]) -> str:
    """The card's "Reproduce" and "Training log" sections, the same for every image model."""
    return f"""## Reproduce
`nice -n 10 python {manifest['training_script']} --threads 1` (seed {manifest['seed']}, CPU; the wall time of this run is the last line of the log below).

## Training log
```
{chr(10).join(log_lines)}
```"""


# the image encoder's modality classes, and the DICOM Modality values that map onto them
MODALITIES = ["xray", "ultrasound", "ct", "mr"]
DICOM_MODALITY = {"CR": "xray", "DX": "xray", "US": "ultrasound", "CT": "ct", "MR": "mr"}


def images_with_modality(paths):
    """(path, first frame as the app reads it, encoder modality) for each file of ``paths`` the
    app can read whose Modality is one of DICOM_MODALITY's; the others are skipped."""
    from healthfm_desktop.core.errors import UserFacingError
    from healthfm_desktop.core.imaging.ai.preprocessing import read_image

    for path in paths:
        if not path.is_file() or path.name == "DICOMDIR":
            continue
        try:
            image = read_image(path)
        except UserFacingError:
            continue
        modality = DICOM_MODALITY.get((image.modality or "").upper())
        if modality:
            yield path, image, modality
