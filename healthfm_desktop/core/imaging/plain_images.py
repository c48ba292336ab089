"""Plain PNG / JPEG images in the image viewer: a single-frame ``Series`` with no patient,
study, geometry or spacing information (measurements are in pixels), greyscale values kept at
their 8- or 16-bit depth so window/level works on them, real colour kept as RGB.

The AI analysis of such an image reads the file with the command line's own PNG/JPEG reader
(``core.imaging.ai.preprocessing.read_raster``), so `images classify` and the viewer's panel
give the same answer."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from healthfm_desktop.core.errors import UnreadableFileError
from healthfm_desktop.core.imaging.decoding import ModalityTransform
from healthfm_desktop.core.imaging.series import Frame, Instance, Series
from healthfm_desktop.core.imaging.sources import SourceRef

NOT_DICOM_NOTE = "Not DICOM: no patient or spacing information; measurements in pixels"
_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}
_MAX_PIXELS = 8192 * 8192


def plain_image_kind(path: str | os.PathLike) -> str | None:
    """'PNG' or 'JPEG' when the file starts like one (by content, not by name), else None."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError:
        return None
    for signature, kind in _SIGNATURES.items():
        if head.startswith(signature):
            return kind
    return None


def _uid_for(digest: bytes) -> str:
    # a UID under the 2.25 (UUID-derived) root: stable for the same file content, so the
    # measurements saved for the image come back when it is opened again
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def read_plain_pixels(path: str | os.PathLike) -> np.ndarray:
    """The file's pixels as displayed: uint8 / uint16 H x W for grey (16-bit PNGs keep their
    16 bits), uint8 H x W x 3 for real colour (an RGB file whose three channels are equal is
    grey). Raises ``UnreadableFileError`` with a reason a person understands."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.width * image.height > _MAX_PIXELS:
                raise UnreadableFileError(f"the image is too large ({image.width}x{image.height})")
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(image, dtype=np.uint16)
            if image.mode in ("I", "F"):
                values = np.asarray(image)
                if values.min() >= 0 and values.max() <= 65535 and np.all(np.mod(values, 1) == 0):
                    return values.astype(np.uint16)
                raise UnreadableFileError(f"unsupported pixel format ({image.mode} with values outside 0..65535)")
            if image.mode in ("1", "L", "LA"):
                return np.asarray(image.convert("L"))
            rgb = np.asarray(image.convert("RGB"))
    except UnreadableFileError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UnreadableFileError(f"not a readable PNG/JPEG image ({type(exc).__name__})") from exc
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
        return np.ascontiguousarray(rgb[..., 0])
    return rgb


class PlainImageSeries(Series):
    """One PNG / JPEG file as a one-frame series. Its pixels come from the image file, never
    through the DICOM decoders."""

    kind: str = "PNG"

    def load_stored(self, index: int) -> np.ndarray:
        if index != 0:
            raise IndexError(f"frame {index} out of range (a plain image has one)")
        return read_plain_pixels(self.frames[0].instance.source.path)

    def to_modality(self, index: int, stored: np.ndarray) -> np.ndarray:
        if stored.ndim == 3:
            return stored  # uint8 RGB, as DICOM colour frames are shown
        return stored.astype(np.float32)  # the values themselves: no modality LUT

    @property
    def description(self) -> str:
        return self.frames[0].instance.source.path.name

    @property
    def path(self) -> Path:
        return self.frames[0].instance.source.path


def open_plain_image(path: str | os.PathLike) -> PlainImageSeries:
    """Index one PNG / JPEG file (header only: size and pixel format; pixels on request)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    kind = plain_image_kind(path)
    if kind is None:
        raise UnreadableFileError("not a DICOM, PNG or JPEG file")
    try:
        data = path.read_bytes()
        with Image.open(path) as image:
            width, height, mode = image.width, image.height, image.mode
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UnreadableFileError(f"not a readable {kind} image ({type(exc).__name__})") from exc
    if width * height > _MAX_PIXELS:
        raise UnreadableFileError(f"the image is too large ({width}x{height})")
    uid = _uid_for(hashlib.sha256(data).digest())
    colour = mode not in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
    bits = 16 if mode.startswith("I") or mode == "F" else 8
    header = Dataset()  # what the viewer's lists and overlays read; nothing about a patient
    header.SeriesDescription = path.name
    header.Rows, header.Columns = height, width
    instance = Instance(
        source=SourceRef(path), header=header, forced=False, byte_offset=0, transfer_syntax=None,
        transfer_syntax_guessed=False, sop_instance_uid=uid, sop_class_uid="", study_uid=uid,
        series_uid=uid, modality=kind, photometric="RGB" if colour else "MONOCHROME2", rows=height,
        columns=width, samples_per_pixel=3 if colour else 1, bits_allocated=bits, bits_stored=bits,
        pixel_representation=0, number_of_frames=1, instance_number=1,
    )
    frame = Frame(instance=instance, frame_index=0, position=None, orientation=None, pixel_spacing=None,
                  spacing_source=None, slice_thickness=None, modality_transform=ModalityTransform())
    series = PlainImageSeries(study_uid=uid, series_uid=uid, frames=[frame], notes=[NOT_DICOM_NOTE])
    series.kind = kind
    if colour:
        # an RGB file holding grey (equal channels) is shown as grey, with window/level
        pixels = series.load_stored(0)
        if pixels.ndim == 2:
            instance.samples_per_pixel, instance.photometric = 1, "MONOCHROME2"
    return series


def open_rejected_plain_images(rejected: Iterable[tuple[str, str]]) -> tuple[list[PlainImageSeries], list[tuple[str, str]]]:
    """The DICOM scan rejects PNG / JPEG files as "not a DICOM file": open those as plain
    images. Returns (series, what stays rejected, with the image reader's reason if it is a
    broken PNG/JPEG)."""
    series: list[PlainImageSeries] = []
    still: list[tuple[str, str]] = []
    for path, reason in rejected:
        candidate = Path(str(path))
        if not candidate.is_file() or plain_image_kind(candidate) is None:
            still.append((path, reason))
            continue
        try:
            series.append(open_plain_image(candidate))
        except UnreadableFileError as exc:
            still.append((path, str(exc)))
    return series, still


def is_plain_image(series) -> bool:
    return isinstance(series, PlainImageSeries)
