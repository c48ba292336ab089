"""Pixel decoding of one DICOM object: pydicom's decoder plugins (pyjpegls / pylibjpeg first,
GDCM as the fallback), colour conversion to RGB, PALETTE COLOR applied, and the Modality LUT
(rescale or LUT sequence) that turns stored values into modality units (HU for CT)."""

from __future__ import annotations

import io
import logging
import os
import sys
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
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
    JPEGExtended12Bit,
    JPEGLSLossless,
    JPEGLSNearLossless,
)

from healthfm_desktop.core.errors import UnreadableFileError

if TYPE_CHECKING:
    from healthfm_desktop.core.imaging.series import Instance

log = logging.getLogger(__name__)

# CharLS (pyjpegls) decodes JPEG-LS fastest; GDCM last because it is the broadest but slowest.
_PLUGIN_ORDER_JPEGLS = ("pyjpegls", "gdcm")
_PLUGIN_ORDER_DEFAULT = ("pylibjpeg", "pillow", "pyjpegls", "gdcm")
# For these syntaxes pydicom's "pylibjpeg" plugin means pylibjpeg-libjpeg, which is GPL-3 and
# may not ship in the MIT bundle; it is never used even where it happens to be installed
# (pylibjpeg's openjpeg and rle plugins, BSD/MIT, still serve JPEG 2000 and RLE).
_LIBJPEG_SYNTAXES = frozenset({
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
})


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
    if not decoder.is_available or not _plugins_for(transfer_syntax):
        raise UnsupportedCodecError(
            f"no decoder installed for {transfer_syntax.name} ({transfer_syntax})"
        )


_JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
# JPEG start-of-frame markers (ITU T.81 B.1.1.3; 0xF7 is JPEG-LS SOF55, T.87): P, Y, X, Nf follow
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7})


def _jpeg_problem(codestream: bytes, rows: int, columns: int, bits_allocated: int = 0,
                  transfer_syntax: str = "") -> str | None:
    """What is structurally wrong with a JPEG / JPEG-LS codestream (ITU T.81 B.2, T.87), or None.
    Some decoders (GDCM's) print an error and still return pixels for these: values known wrong."""
    pos, frame = 2, None
    while pos + 4 <= len(codestream):
        if codestream[pos] != 0xFF:
            return "a marker is missing where the codestream needs one"
        marker = codestream[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = int.from_bytes(codestream[pos + 2 : pos + 4], "big")
        if length < 2 or pos + 2 + length > len(codestream):
            return "a marker segment runs past the end of the codestream (truncated)"
        segment = codestream[pos + 4 : pos + 2 + length]
        if marker in _JPEG_SOF:
            if len(segment) < 6:
                return "the frame header is cut short"
            precision = segment[0]
            height, width = int.from_bytes(segment[1:3], "big"), int.from_bytes(segment[3:5], "big")
            if height <= 0 or width <= 0:
                return f"the codestream declares a {width} x {height} frame"
            if (height, width) != (rows, columns):
                return f"the codestream holds a {width} x {height} frame but the header says {columns} x {rows}"
            if bits_allocated and precision > bits_allocated:
                # the decoded samples cannot fit the stored ones: values would come out wrong
                return f"the codestream has {precision}-bit samples but the header allocates {bits_allocated} bits"
            frame = (marker, precision)
        elif marker == 0xDA:  # start of scan: check its parameters against the frame's process
            if frame is None:
                return "scan data comes before any frame header"
            count = segment[0] if segment else 0
            tail = segment[1 + 2 * count : 1 + 2 * count + 3]
            if count < 1 or len(tail) < 3:
                return "the scan header is cut short"
            ss, se, ah, al = tail[0], tail[1], tail[2] >> 4, tail[2] & 0x0F
            sof, precision = frame
            if sof in (0xC0, 0xC1, 0xC9) and (ss, se, ah, al) != (0, 63, 0, 0):
                return "invalid scan (SOS) parameters for sequential JPEG"
            if sof in (0xC3, 0xCB) and not (1 <= ss <= 7 and se == 0 and ah == 0 and al < precision):
                return "invalid scan (SOS) parameters for lossless JPEG"
            if transfer_syntax == _JPEG_LOSSLESS_SV1 and sof == 0xC3 and ss != 1:
                # the decoder follows the scan's predictor: pixels come back, every value wrong
                return (f"the scan uses predictor {ss} but its transfer syntax (JPEG Lossless, Selection Value 1) "
                        "allows only predictor 1")
            # DICOM pads an odd-length codestream with one byte (0x00 or 0xFF) after EOI
            if b"\xff\xd9" not in codestream[-4:]:
                return "the codestream has no end-of-image marker (truncated)"
            return None
        pos += 2 + length
    return "no frame or scan header in the codestream" if frame is None else "the codestream ends before its scan"


def _j2k_problem(codestream: bytes, rows: int, columns: int) -> str | None:
    start = codestream.find(b"\xff\x4f\xff\x51", 0, 4096)  # SOC then SIZ (also inside a JP2 box)
    if start < 0 or start + 24 > len(codestream):
        return None  # left to the decoder
    siz = codestream[start + 4 :]
    x, y, x0, y0 = (int.from_bytes(siz[k : k + 4], "big") for k in (4, 8, 12, 16))
    height, width = y - y0, x - x0
    if height <= 0 or width <= 0:
        return f"the codestream declares a {width} x {height} frame"
    if (height, width) != (rows, columns):
        return f"the codestream holds a {width} x {height} frame but the header says {columns} x {rows}"
    return None


def check_codestream(codestream: bytes, rows: int, columns: int, transfer_syntax: UID | str = "",
                     bits_allocated: int = 0) -> None:
    """Refuse a compressed frame before any decoder sees it when its own headers disagree with
    the DICOM header's Rows and Columns or break the codec's rules: a frame height of 0 made a
    decoder allocate until memory ran out, a bad scan header gave pixels known to be wrong."""
    if codestream[:2] == b"\xff\xd8":
        problem = _jpeg_problem(codestream, rows, columns, bits_allocated, str(transfer_syntax))
    else:
        problem = _j2k_problem(codestream, rows, columns)
    if problem is not None:
        name = UID(str(transfer_syntax)).name if transfer_syntax else "compressed"
        raise DecodeError(f"corrupt or undecodable {name} pixel data: {problem}")


def _first_frame(pixel_data: bytes, frames: int) -> bytes | None:
    from pydicom.encaps import generate_frames

    try:
        return next(generate_frames(pixel_data, number_of_frames=frames))
    except Exception:  # not encapsulated as expected: left to the decoder to refuse
        return None


def check_first_frame(ds: Dataset, transfer_syntax: UID) -> None:
    """``check_codestream`` on the first frame of an encapsulated dataset."""
    if not transfer_syntax.is_encapsulated or "PixelData" not in ds:
        return
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    codestream = _first_frame(ds.PixelData, frames)
    if codestream:
        check_codestream(codestream, int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0), transfer_syntax,
                         int(ds.get("BitsAllocated", 0) or 0))


def _plugins_for(transfer_syntax: UID) -> list[str]:
    decoder = get_decoder(transfer_syntax)
    if decoder.is_native:
        return [""]
    order = _PLUGIN_ORDER_JPEGLS if transfer_syntax in (JPEGLSLossless, JPEGLSNearLossless) else _PLUGIN_ORDER_DEFAULT
    available = list(decoder.available_plugins)
    if str(transfer_syntax) in _LIBJPEG_SYNTAXES:
        available = [p for p in available if p != "pylibjpeg"]
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
    try:
        if instance.byte_offset:
            # pydicom rewinds a stream without preamble to 0: give it one that starts there
            raw = instance.source.read_bytes()
            size = len(raw)
            ds = dcmread(io.BytesIO(raw[instance.byte_offset :]), force=instance.forced)
        else:
            # a stream (a big zip member is a temporary file), so the object is held once
            with instance.source.open() as handle:
                size = handle.seek(0, io.SEEK_END)
                handle.seek(0)
                ds = dcmread(handle, force=instance.forced)
    except UnreadableFileError:
        raise
    except Exception as exc:  # pydicom raises many types on corrupt input
        raise UnreadableFileError(f"cannot read the DICOM dataset ({type(exc).__name__}: {exc})") from exc
    if transfer_syntax_of(ds) is None:
        if not hasattr(ds, "file_meta") or ds.file_meta is None:
            from pydicom.dataset import FileMetaDataset

            ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = guess_missing_transfer_syntax(ds)
    _dataset_cache.put(instance.source, ds, size)
    return ds


class _GdcmReports:
    """What GDCM (its libjpeg included) printed while decoding. On entropy-coded data it cannot
    follow it prints "Corrupt JPEG data: ..." to the C stderr and still returns pixels, values
    known wrong; gdcm.Trace's own streams do not carry libjpeg's messages. So file descriptor 2
    goes to a temporary file for the call (one call at a time per process) and what it caught is
    read, then written back to the real stderr, so that another thread's output is not lost."""

    def __init__(self):
        self._lock = threading.Lock()
        self._libc = None

    def _flush_c_stdio(self) -> None:
        import ctypes
        import ctypes.util

        if self._libc is None:
            name = "msvcrt" if sys.platform == "win32" else ctypes.util.find_library("c")
            self._libc = ctypes.CDLL(name)
        self._libc.fflush(None)

    @contextmanager
    def checked(self, what: str) -> Iterator[None]:
        """Run a GDCM decode; DecodeError when GDCM reported corrupt data during it."""
        with self._lock, tempfile.TemporaryFile() as caught:
            sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(caught.fileno(), 2)
            try:
                yield
            finally:
                try:
                    self._flush_c_stdio()
                except (OSError, AttributeError):  # no C library to flush: what was written stays
                    pass
                os.dup2(saved, 2)
                os.close(saved)
            caught.seek(0)
            said = caught.read(256 * 1024)
        if said:
            os.write(2, said)
        text = said.decode("utf-8", "replace")
        corrupt = [line.strip() for line in text.splitlines() if line.lower().startswith("corrupt jpeg data")]
        if corrupt:
            raise DecodeError(f"corrupt {what} pixel data: the decoder reports \"{corrupt[0][:160]}\" "
                              "(it would return pixels, but their values are wrong)")


_gdcm_reports = _GdcmReports()


def _decode_jpeg12_with_gdcm(ds: Dataset, index: int | None) -> np.ndarray:
    """12-bit JPEG Extended through GDCM's own 12-bit codec. pydicom's GDCM plugin refuses
    this precision and the only other decoder, pylibjpeg-libjpeg, is GPL-3; GDCM decodes it to
    within the IDCT rounding of libjpeg (max difference 1 on the NEMA NM1 sample)."""
    import gdcm
    from pydicom.encaps import generate_frames

    rows, columns = int(ds.Rows), int(ds.Columns)
    spp, bits = int(ds.get("SamplesPerPixel", 1) or 1), int(ds.get("BitsStored", 12) or 12)
    signed = int(ds.get("PixelRepresentation", 0) or 0)
    if spp != 1:
        raise DecodeError("12-bit JPEG Extended colour images cannot be decoded here")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    wanted = range(frames) if index is None else [index]
    out = []
    for k, codestream in enumerate(generate_frames(ds.PixelData, number_of_frames=frames)):
        if k not in wanted:
            continue
        check_codestream(codestream, rows, columns, JPEGExtended12Bit, int(ds.get("BitsAllocated", 0) or 0))
        fragment = gdcm.Fragment()
        fragment.SetByteStringValue(codestream)
        fragments = gdcm.SequenceOfFragments.New()
        fragments.AddFragment(fragment)
        element = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
        element.SetValue(fragments.__ref__())
        image = gdcm.Image()
        image.SetNumberOfDimensions(2)
        image.SetDimensions((columns, rows, 1))
        image.SetDataElement(element)
        image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(gdcm.PhotometricInterpretation.MONOCHROME2))
        image.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGExtendedProcess2_4))
        image.SetPixelFormat(gdcm.PixelFormat(1, 16, bits, bits - 1, signed))
        with _gdcm_reports.checked("JPEG Extended (12-bit)"):
            buffer = image.GetBuffer()
        data = buffer.encode("utf-8", "surrogateescape") if isinstance(buffer, str) else bytes(buffer or b"")
        if len(data) != rows * columns * 2:
            raise DecodeError("corrupt or undecodable JPEG Extended (12-bit) pixel data (GDCM returned no image)")
        out.append(np.frombuffer(data, np.int16 if signed else np.uint16).reshape(rows, columns))
        if len(out) == len(wanted):
            break
    if len(out) != len(wanted):
        raise DecodeError("truncated JPEG Extended (12-bit) pixel data: fewer frames than the header says")
    return out[0] if index is not None or frames == 1 else np.stack(out)


def _decode_with_plugins(src, transfer_syntax: UID, index: int | None) -> np.ndarray:
    check_decoder_available(transfer_syntax)
    if isinstance(src, Dataset):
        check_first_frame(src, transfer_syntax)
    if transfer_syntax == JPEGExtended12Bit:
        ds = src if isinstance(src, Dataset) else dcmread(src)
        if int(ds.get("BitsStored", 8) or 8) > 8:
            try:
                return _decode_jpeg12_with_gdcm(ds, index)
            except UnreadableFileError:
                raise
            except Exception as exc:  # GDCM raises its own types on a corrupt codestream
                raise DecodeError(f"corrupt or undecodable JPEG Extended (12-bit) pixel data ({type(exc).__name__})") from exc
    errors: list[str] = []
    for plugin in _plugins_for(transfer_syntax):
        try:
            kwargs = {"decoding_plugin": plugin} if plugin else {}
            if plugin == "gdcm":
                with _gdcm_reports.checked(transfer_syntax.name):
                    return pixel_array(src, index=index, **kwargs)
            return pixel_array(src, index=index, **kwargs)
        except DecodeError:
            raise  # the decoder itself said the values are wrong: no other plugin hides that
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
