"""What the image training scripts share: static INT8 quantisation of an exported model."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def quantise(float_path: Path, int8_path: Path, calibration: np.ndarray) -> None:
    """Static QDQ quantisation (per-channel int8 weights, uint8 activations) calibrated on
    ``calibration``, one image at a time, fed to the graph input named "image"."""
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
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    )
    pre.unlink()
