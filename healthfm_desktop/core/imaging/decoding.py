"""Pixel decoding of one DICOM object: pydicom's decoder plugins (pyjpegls / pylibjpeg first,
GDCM as the fallback), colour conversion to RGB, PALETTE COLOR applied, and the Modality LUT
(rescale or LUT sequence) that turns stored values into modality units (HU for CT)."""

from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder, pixel_array
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
    JPEGLSNearLossless,
)

from healthfm_desktop.core.errors import UnreadableFileError

if TYPE_CHECKING:
    from healthfm_desktop.core.imaging.series import Instance

log = logging.getLogger(__name__)

# CharLS (pyjpegls) decodes JPEG-LS about 3x faster than libjpeg here; GDCM last because it is
# the broadest but slowest fallback.
_PLUGIN_ORDER_JPEGLS = ("pyjpegls", "pylibjpeg", "gdcm")
_PLUGIN_ORDER_DEFAULT = ("pylibjpeg", "pillow", "pyjpegls", "gdcm")


# one decode call never allocates more than this (a corrupt header can claim any size)
MAX_DECODED_BYTES = 4 * 1024**3


class UnsupportedCodecError(UnreadableFileError):
    """No installed decoder handles the file's transfer syntax."""


class DecodeError(UnreadableFileError):
    """Every decoder failed on the file's pixel data (corrupt or truncated codestream)."""


@dataclass(frozen=True)
class ModalityTransform:
    """Stored value -> modality value. Either a linear rescale or a LUT (PS3.3 C.11.1)."""

    slope: float = 1.0
    intercept: float = 0.0
    lut_dataset: Dataset | None = None  # holds ModalityLUTSequence when the LUT form is used

    @property
    def is_identity(self) -> bool:
        return self.lut_dataset is None and self.slope == 1.0 and self.intercept == 0.0

    def apply(self, stored: np.ndarray) -> np.ndarray:
        """Modality values as float32."""
        if self.lut_dataset is not None:
            return np.asarray(apply_modality_lut(stored, self.lut_dataset), dtype=np.float32)
        values = stored.astype(np.float32)
        if self.slope != 1.0:
            values *= np.float32(self.slope)
        if self.intercept != 0.0:
            values += np.float32(self.intercept)
        return values


def transfer_syntax_of(ds: Dataset) -> UID | None:
    meta = getattr(ds, "file_meta", None)
    uid = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    return UID(str(uid)) if uid else None


def guess_missing_transfer_syntax(ds: Dataset) -> UID:
    """A dataset read without a Transfer Syntax (no File Meta, or meta lacking it) was parsed by
    pydicom with a guessed encoding; the pixels are native in that encoding."""
    implicit = getattr(ds, "is_implicit_VR", None)
    little = getattr(ds, "is_little_endian", None)
    encoding = getattr(ds, "original_encoding", None)
    if encoding is not None and None not in encoding:
        implicit, little = encoding
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little in (True, None) else ExplicitVRBigEndian


def check_decoder_available(transfer_syntax: UID) -> None:
    """Raise UnsupportedCodecError when nothing installed can decode this transfer syntax."""
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError as exc:
        raise UnsupportedCodecError(f"unsupported transfer syntax {transfer_syntax.name} ({transfer_syntax})") from exc
    if not decoder.is_available:
        raise UnsupportedCodecError(
            f"no decoder installed for {transfer_syntax.name} ({transfer_syntax})"
        )


def _plugins_for(transfer_syntax: UID) -> list[str]:
    decoder = get_decoder(transfer_syntax)
    if decoder.is_native:
        return [""]
    order = _PLUGIN_ORDER_JPEGLS if transfer_syntax in (JPEGLSLossless, JPEGLSNearLossless) else _PLUGIN_ORDER_DEFAULT
    available = list(decoder.available_plugins)
    plugins = [p for p in order if p in available] + [p for p in available if p not in order]
    return plugins


class _DatasetCache:
    """A few recently read full datasets (multi-frame files, zip members) so scrolling through
    the frames of one object does not re-read and re-inflate it for every frame."""

    def __init__(self, max_bytes: int = 256 * 1024**2):
        self._items: OrderedDict[object, tuple[Dataset, int]] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes
        self._lock = threading.Lock()

    def get(self, key: object) -> Dataset | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: object, ds: Dataset, size: int) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = (ds, size)
            self._bytes += size
            while self._bytes > self._max and len(self._items) > 1:
                _, (_, old) = self._items.popitem(last=False)
                self._bytes -= old


_dataset_cache = _DatasetCache()


def read_full_dataset(instance: "Instance") -> Dataset:
    """The whole object, pixel data included, with a usable Transfer Syntax in its File Meta."""
    cached = _dataset_cache.get(instance.source)
    if cached is not None:
        return cached
    raw = instance.source.read_bytes()
    try:
        ds = dcmread(io.BytesIO(raw[instance.byte_offset :]), force=instance.forced)
    except Exception as exc:  # pydicom raises many types on corrupt input
        raise UnreadableFileError(f"cannot read the DICOM dataset ({type(exc).__name__}: {exc})") from exc
    if transfer_syntax_of(ds) is None:
        if not hasattr(ds, "file_meta") or ds.file_meta is None:
            from pydicom.dataset import FileMetaDataset

            ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = guess_missing_transfer_syntax(ds)
    _dataset_cache.put(instance.source, ds, len(raw))
    return ds


def _decode_with_plugins(src, transfer_syntax: UID, index: int | None) -> np.ndarray:
    check_decoder_available(transfer_syntax)
    errors: list[str] = []
    for plugin in _plugins_for(transfer_syntax):
        try:
            kwargs = {"decoding_plugin": plugin} if plugin else {}
            return pixel_array(src, index=index, **kwargs)
        except Exception as exc:  # each plugin raises its own types; try the next one
            errors.append(f"{plugin or 'native'}: {type(exc).__name__}: {exc}")
            if hasattr(src, "seek"):
                src.seek(0)
    details = []
    for error in errors:
        # pydicom's message lists each plugin's failure on its own line: keep them on one line
        lines = [line.strip(" :") for line in error.splitlines() if line.strip(" :")]
        details.append(" ".join(lines))
    detail = "; ".join(dict.fromkeys(details)) if details else "no decoder"
    raise DecodeError(f"corrupt or undecodable {transfer_syntax.name} pixel data ({detail[:400]})")


def decode_stored(instance: "Instance", index: int | None = None) -> np.ndarray:
    """Stored pixel values of frame ``index`` (or all frames when None), colour as RGB.

    Grey: the integer stored values (signed per Pixel Representation). YBR_* comes back as RGB.
    PALETTE COLOR comes back as palette indices (see ``to_display_rgb``).
    """
    frames = instance.number_of_frames
    if index is not None and not 0 <= index < frames:
        raise IndexError(f"frame {index} out of range (object has {frames})")
    frame_bytes = instance.rows * instance.columns * max(instance.samples_per_pixel, 1) * max(instance.bits_allocated // 8, 1)
    wanted = frame_bytes * (1 if index is not None else frames)
    if wanted > MAX_DECODED_BYTES:
        raise UnreadableFileError(
            f"image too large to decode: {instance.rows} x {instance.columns} x {frames} frame(s) "
            f"would need {wanted / 1024**3:.1f} GiB"
        )
    direct = (
        not instance.forced
        and not instance.source.in_archive
        and not instance.transfer_syntax_guessed
        and instance.transfer_syntax != DeflatedExplicitVRLittleEndian
    )
    offset = getattr(instance, "pixel_value_offset", None)
    if direct and offset is not None and getattr(instance, "header", None) is not None:
        # read only the Pixel Data bytes: the header was parsed when the file was indexed
        key = (instance.source, "pixels")
        ds = _dataset_cache.get(key) if frames > 1 else None
        if ds is None:
            ds = _pixel_dataset(instance)
            if frames > 1:  # scrolling through a multi-frame object reads it once
                _dataset_cache.put(key, ds, len(ds.PixelData))
        arr = _decode_with_plugins(ds, UID(instance.transfer_syntax), None if frames == 1 else index)
    elif direct and frames == 1:
        # pydicom reads the file itself
        arr = _decode_with_plugins(str(instance.source.path), UID(instance.transfer_syntax), None)
    else:
        ds = read_full_dataset(instance)
        if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
            raise UnreadableFileError("the file has no pixel data")
        arr = _decode_with_plugins(ds, transfer_syntax_of(ds), None if frames == 1 else index)
    return arr


_PIXEL_MODULE = (
    "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration", "NumberOfFrames", "Rows", "Columns",
    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "ExtendedOffsetTable",
    "ExtendedOffsetTableLengths",
)
_ITEM = b"\xfe\xff\x00\xe0"
_SEQUENCE_END = b"\xfe\xff\xdd\xe0"


def _encapsulated_value(data: bytes) -> bytes:
    """The items of an encapsulated Pixel Data value, up to its Sequence Delimitation Item
    (whatever follows the pixel data in the file is left out)."""
    pos = 0
    while pos + 8 <= len(data):
        tag = data[pos : pos + 4]
        if tag == _SEQUENCE_END:
            return data[:pos]
        if tag != _ITEM:
            raise UnreadableFileError("corrupt compressed pixel data (bad item tag)")
        pos += 8 + int.from_bytes(data[pos + 4 : pos + 8], "little")
    raise UnreadableFileError("truncated compressed pixel data (no sequence delimiter)")


def _pixel_dataset(instance: "Instance") -> Dataset:
    """A small dataset with the Image Pixel module from the indexed header and the Pixel Data
    value read from its known place in the file."""
    from pydicom.dataelem import DataElement
    from pydicom.dataset import FileMetaDataset

    with instance.source.open() as handle:
        handle.seek(instance.pixel_value_offset)
        length = instance.pixel_value_length
        data = handle.read() if length is None else handle.read(length)
    encapsulated = length is None
    if encapsulated:
        data = _encapsulated_value(data)
    header = instance.header
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(instance.transfer_syntax)
    for keyword in _PIXEL_MODULE:
        if keyword in header:
            ds[keyword] = header[keyword]
    if header.get("PhotometricInterpretation", "") == "PALETTE COLOR":
        for element in header:
            if element.tag.group == 0x0028 and 0x1100 <= element.tag.element <= 0x1223:
                ds[element.tag] = element
    vr = "OB" if encapsulated or instance.bits_allocated <= 8 else "OW"
    ds[0x7FE00010] = DataElement(0x7FE00010, vr, data, is_undefined_length=encapsulated)
    ts = UID(instance.transfer_syntax)
    ds.set_original_encoding(ts.is_implicit_VR, ts.is_little_endian, None)
    return ds


def palette_to_rgb8(indices: np.ndarray, header: Dataset) -> np.ndarray:
    """Apply the PALETTE COLOR lookup tables and scale to 8 bits per channel."""
    rgb = apply_color_lut(indices, header)
    depth = int(header.RedPaletteColorLookupTableDescriptor[2])
    if depth > 8:
        rgb = rgb >> (depth - 8) if rgb.max(initial=0) > 255 else rgb
    return np.clip(rgb, 0, 255).astype(np.uint8)


def colour_to_rgb8(rgb: np.ndarray, bits_stored: int) -> np.ndarray:
    if rgb.dtype == np.uint8:
        return rgb
    shift = max(int(bits_stored) - 8, 0)
    return np.clip(rgb.astype(np.int64) >> shift, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class DecodeRequest:
    """What a worker process needs to decode one object (small and picklable, unlike the
    Instance with its header dataset). Duck-types the Instance fields ``decode_stored`` uses."""

    source: object  # SourceRef
    forced: bool
    byte_offset: int
    transfer_syntax: str | None
    transfer_syntax_guessed: bool
    number_of_frames: int
    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    pixel_value_offset: int | None = None
    pixel_value_length: int | None = None
    header: Dataset | None = None  # just the Image Pixel module: cheap to send to a process

    @classmethod
    def from_instance(cls, instance: "Instance") -> "DecodeRequest":
        pixel_module = Dataset()
        for keyword in _PIXEL_MODULE:
            if keyword in instance.header:
                pixel_module[keyword] = instance.header[keyword]
        return cls(
            instance.source, instance.forced, instance.byte_offset, instance.transfer_syntax,
            instance.transfer_syntax_guessed, instance.number_of_frames, instance.rows, instance.columns,
            instance.samples_per_pixel, instance.bits_allocated, instance.pixel_value_offset,
            instance.pixel_value_length, pixel_module,
        )
