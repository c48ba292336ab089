"""Regenerates `bad/CT_jpeg_lossless_bad_codestream.dcm` from the CT series slice I700: GDCM
transcodes it to JPEG Lossless SV1 (1.2.840.10008.1.2.4.70; decoded values equal the original),
then 8 bytes of the Huffman-coded scan, half way through it, are XORed with 0x5A. The header
and the codestream's markers stay valid; GDCM still returns pixels, about half of them wrong.
Run from this folder: `python make_bad_jpeg_lossless.py` (needs python-gdcm and pydicom)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import gdcm
import numpy as np
import pydicom
from pydicom.encaps import encapsulate, generate_frames

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "series" / "CT_head_phantom_philips_1mm_20sl" / "I700.dcm"
TARGET = HERE / "bad" / "CT_jpeg_lossless_bad_codestream.dcm"


def transcode(source: Path, target: Path) -> None:
    reader = gdcm.ImageReader()
    reader.SetFileName(str(source))
    if not reader.Read():
        raise SystemExit(f"GDCM cannot read {source}")
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
    change.SetInput(reader.GetImage())
    if not change.Change():
        raise SystemExit("GDCM cannot encode JPEG Lossless")
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(target))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    if not writer.Write():
        raise SystemExit(f"GDCM cannot write {target}")


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        lossless = Path(work) / "lossless.dcm"
        transcode(SOURCE, lossless)
        ds = pydicom.dcmread(lossless)
        assert np.array_equal(ds.pixel_array, pydicom.dcmread(SOURCE).pixel_array), "transcoding changed values"
        codestream = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    sos = codestream.find(b"\xff\xda")
    scan = sos + 2 + int.from_bytes(codestream[sos + 2 : sos + 4], "big")
    middle = scan + (len(codestream) - scan) // 2
    for k in range(middle, middle + 8):  # never a marker byte or the byte after one
        if codestream[k] != 0xFF and codestream[k - 1] != 0xFF:
            codestream[k] ^= 0x5A
    ds.PixelData = encapsulate([bytes(codestream)])
    ds.save_as(TARGET, enforce_file_format=True)
    print(f"wrote {TARGET.relative_to(HERE)} ({TARGET.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
