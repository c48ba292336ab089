"""Import: index files, folders (recursive), zip archives and DICOMDIRs by header only, group
studies and series by UID, sort frames in display order, split multi-frame objects into frames
and mixed series into consistent stacks. Pixels are not decoded here (see ``Series.load_frame``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from healthfm_desktop.core.errors import UnreadableFileError, UnsafeArchiveError, UserFacingError
from healthfm_desktop.core.imaging.decoding import (
    ModalityTransform,
    UnsupportedCodecError,
    check_decoder_available,
    guess_missing_transfer_syntax,
)
from healthfm_desktop.core.imaging.series import (
    CancelCheck,
    Frame,
    Instance,
    ProgressCallback,
    ScanResult,
    Series,
)
from healthfm_desktop.core.imaging.sources import MAX_IMPORT_ARCHIVE_BYTES, SourceRef, check_archive
from healthfm_desktop.core.user_files import regular_file_problem

if TYPE_CHECKING:
    from healthfm_desktop.core.imaging.parallel_decode import DecodeAhead

log = logging.getLogger(__name__)

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_PIXEL_TAGS_LE = {b"\xe0\x7f\x10\x00", b"\xe0\x7f\x08\x00", b"\xe0\x7f\x09\x00"}
_PIXEL_TAGS_BE = {b"\x7f\xe0\x00\x10", b"\x7f\xe0\x00\x08", b"\x7f\xe0\x00\x09"}
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
# values bigger than this are left on disk when indexing (icons, private blobs, overlays)
_DEFER_SIZE = 64 * 1024


# --- reading one header ------------------------------------------------------------------


def _int(ds: Dataset, keyword: str, default: int | None = None) -> int | None:
    try:
        value = ds.get(keyword, None)
    except Exception as exc:
        raise UnreadableFileError(f"invalid header value for {keyword} ({exc})") from exc
    if value is None or value == "":
        return default
    if isinstance(value, (list, tuple)) or hasattr(value, "__iter__") and not isinstance(value, (str, bytes)):
        value = list(value)[0] if len(value) else default
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise UnreadableFileError(f"invalid header value for {keyword}: {value!r}") from exc


def _str(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword, None)
    except Exception:
        return ""
    return "" if value is None else str(value).strip()


def _floats(value, count: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        values = tuple(float(v) for v in (value if isinstance(value, (list, tuple)) or hasattr(value, "__len__") and not isinstance(value, str) else [value]))
    except (TypeError, ValueError):
        return None
    if len(values) < count or not all(np.isfinite(values[:count])):
        return None
    return values[:count]


def _has_identity(ds: Dataset) -> bool:
    return any(k in ds for k in ("SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "Rows"))


class HeaderRead(NamedTuple):
    header: Dataset
    forced: bool
    has_pixels: bool
    byte_offset: int
    pixel_value_offset: int | None = None  # where the Pixel Data value starts in the file
    pixel_value_length: int | None = None  # its length; None when encapsulated


def read_header(source: SourceRef, data: bytes | None = None) -> HeaderRead:
    """Read everything but the pixel data: ``(header, forced, has_pixels, byte_offset, ...)``.

    Raises ``UnreadableFileError`` with a reason a person understands. Files without preamble
    or File Meta are read with ``force=True`` and kept only when they parse as a dataset with
    identifying elements (SOP Class, Study/Series UID or Rows); up to 3 stray leading bytes are
    skipped (``byte_offset``), as some exporters write them. ``data``: the file's bytes when
    the caller has read them already (then the file is not opened).
    """
    with source.open() if data is None else contextlib.nullcontext(io.BytesIO(data)) as raw_fp:
        size = raw_fp.seek(0, io.SEEK_END)
        raw_fp.seek(0)
        # small files: one read, then parse from memory (BufferedReader.tell() is slow)
        fp = raw_fp if isinstance(raw_fp, io.BytesIO) or size > 8 * 1024**2 else io.BytesIO(raw_fp.read())
        head = fp.read(512)
        fp.seek(0)
        if not head:
            raise UnreadableFileError("empty file")
        if head[:4] in _ZIP_MAGIC and not source.in_archive:
            raise _IsArchive()
        forced = False
        offset = 0
        defer = None if source.in_archive or isinstance(fp, io.BytesIO) else _DEFER_SIZE
        try:
            ds = dcmread(fp, stop_before_pixels=True, defer_size=defer)
        except InvalidDicomError:
            ds = None
            first_error = None
            in_memory = isinstance(fp, io.BytesIO)
            for offset in range(0, 4 if in_memory else 1):
                # pydicom rewinds to 0 when there is no preamble: give it a stream that starts there
                attempt = io.BytesIO(fp.getbuffer()[offset:]) if in_memory else fp
                attempt.seek(0)
                try:
                    candidate = dcmread(attempt, stop_before_pixels=True, defer_size=defer, force=True)
                except Exception as exc:  # garbage parses fail in many ways
                    first_error = first_error or exc
                    continue
                if len(candidate) and _has_identity(candidate):
                    ds, forced, fp = candidate, True, attempt
                    break
            if ds is None:
                raise UnreadableFileError("not a DICOM file (no DICM header and not a readable DICOM dataset)") from None
        except (EOFError, OSError) as exc:
            raise UnreadableFileError(f"truncated or unreadable file ({exc})") from exc
        except Exception as exc:  # pydicom raises many types on corrupt input
            raise UnreadableFileError(f"bad DICOM header ({type(exc).__name__}: {exc})") from exc
        if len(ds) == 0:
            raise UnreadableFileError("not a DICOM file (no data elements)")
        ts = ds.file_meta.get("TransferSyntaxUID", None) if getattr(ds, "file_meta", None) is not None else None
        if ts is not None and UID(str(ts)) == DeflatedExplicitVRLittleEndian:
            # the deflated stream hides the file position: look inside the parsed dataset instead
            fp.seek(0)
            try:
                full = dcmread(fp, force=forced)
            except Exception as exc:
                raise UnreadableFileError(f"bad deflated DICOM data ({type(exc).__name__}: {exc})") from exc
            has_pixels = any(k in full for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
            return HeaderRead(ds, forced, has_pixels, offset)
        position = fp.tell()
        tag = fp.read(4)
        has_pixels = tag in _PIXEL_TAGS_LE or tag in _PIXEL_TAGS_BE
        location = (None, None)
        if has_pixels:
            location = _check_not_truncated(fp, ds, position, tag in _PIXEL_TAGS_BE)
            if tag not in (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10"):
                location = (None, None)  # float pixel data: decoded the ordinary way
    return HeaderRead(ds, forced, has_pixels, offset, location[0] if not forced else None, location[1])


def _check_not_truncated(fp, ds: Dataset, position: int, big_endian: bool) -> tuple[int, int | None]:
    """Compare the pixel data element's length, and the bytes really present, with what the
    header's Rows x Columns x ... asks for (native encodings only). Returns where the value
    starts and its length (None: encapsulated, undefined length)."""
    fp.seek(position + 4)
    rest = fp.read(8)
    order = "big" if big_endian else "little"
    if len(rest) < 4:
        raise UnreadableFileError("truncated: the file ends inside the pixel data header")
    # Decide explicit or implicit VR from the bytes themselves: files whose body is implicit
    # although their transfer syntax says explicit exist (pydicom reads them with a warning but
    # still reports the declared encoding), and the pixel element's VR can only be one of these.
    if rest[0:2] in (b"OB", b"OW", b"OF", b"OD", b"UN", b"OL", b"OV") and rest[2:4] == b"\0\0":
        if len(rest) < 8:
            raise UnreadableFileError("truncated: the file ends inside the pixel data header")
        length = int.from_bytes(rest[4:8], order)
        header_len = 12
    else:
        length = int.from_bytes(rest[0:4], order)
        header_len = 8
    fp.seek(0, io.SEEK_END)
    available = fp.tell() - position - header_len
    value_offset = position + header_len
    if length == 0xFFFFFFFF:
        if available < 8:
            raise UnreadableFileError("truncated: the compressed pixel data is missing")
        return value_offset, None
    if available < length:
        raise UnreadableFileError(f"truncated: pixel data has {max(available, 0)} of {length} bytes")
    rows, cols = _int(ds, "Rows", 0), _int(ds, "Columns", 0)
    spp, bits = _int(ds, "SamplesPerPixel", 1) or 1, _int(ds, "BitsAllocated", 0) or 0
    frames = _int(ds, "NumberOfFrames", 1) or 1
    samples = 2 if spp == 3 and _str(ds, "PhotometricInterpretation").upper() == "YBR_FULL_422" else spp
    expected = (rows * cols * samples * frames * bits + 7) // 8
    if bits and expected and length < expected:
        raise UnreadableFileError(f"truncated: pixel data has {length} bytes, the header needs {expected}")
    return value_offset, length


def index_object(source: SourceRef, data: bytes | None = None) -> Instance:
    """Index one DICOM object from its header (``data``: its bytes, when read already). Raises
    ``UnreadableFileError`` with the reason."""
    ds, forced, has_pixels, offset, pixel_offset, pixel_length = read_header(source, data)
    sop_class = _str(ds, "SOPClassUID")
    if not sop_class and getattr(ds, "file_meta", None) is not None:
        sop_class = _str(ds.file_meta, "MediaStorageSOPClassUID")
    if sop_class == MEDIA_STORAGE_DIRECTORY:
        raise _IsDicomDir()
    if not has_pixels:
        kind = UID(sop_class).name if sop_class else "object"
        raise UnreadableFileError(f"no pixel data: {kind} is not an image" if sop_class else "no pixel data in the file")
    ts = None
    if getattr(ds, "file_meta", None) is not None:
        ts = _str(ds.file_meta, "TransferSyntaxUID") or None
    if ts is not None:
        try:
            check_decoder_available(UID(ts))
        except UnsupportedCodecError:
            raise
        except Exception as exc:
            raise UnsupportedCodecError(f"unsupported transfer syntax {ts}") from exc
    guessed = ts is None
    if guessed:
        ts = str(guess_missing_transfer_syntax(ds))
    rows, cols = _int(ds, "Rows"), _int(ds, "Columns")
    if not rows or not cols:
        raise UnreadableFileError("bad header: Rows/Columns missing or zero")
    frames = _int(ds, "NumberOfFrames", 1) or 1
    if frames < 1:
        raise UnreadableFileError(f"invalid Number of Frames {frames}")
    bits_allocated = _int(ds, "BitsAllocated", 0) or 0
    if bits_allocated not in (1, 8, 16, 32, 64):
        raise UnreadableFileError(f"unsupported Bits Allocated {bits_allocated}")
    photometric = _str(ds, "PhotometricInterpretation").upper() or "MONOCHROME2"
    spp = _int(ds, "SamplesPerPixel", 1) or 1
    if photometric == "PALETTE COLOR" and "RedPaletteColorLookupTableDescriptor" not in ds:
        raise UnreadableFileError("PALETTE COLOR image without a palette")
    study_uid = _str(ds, "StudyInstanceUID") or "unknown-study"
    series_uid = _str(ds, "SeriesInstanceUID") or f"unknown-series:{source}"
    return Instance(
        source=source,
        header=ds,
        forced=forced,
        byte_offset=offset,
        pixel_value_offset=pixel_offset if not guessed and not source.in_archive else None,
        pixel_value_length=pixel_length,
        transfer_syntax=ts,
        transfer_syntax_guessed=guessed,
        sop_instance_uid=_str(ds, "SOPInstanceUID") or str(source),
        sop_class_uid=sop_class,
        study_uid=study_uid,
        series_uid=series_uid,
        modality=_str(ds, "Modality"),
        photometric=photometric,
        rows=rows,
        columns=cols,
        samples_per_pixel=spp,
        bits_allocated=bits_allocated,
        bits_stored=_int(ds, "BitsStored", bits_allocated) or bits_allocated,
        pixel_representation=_int(ds, "PixelRepresentation", 0) or 0,
        number_of_frames=frames,
        instance_number=_int(ds, "InstanceNumber", None) if _safe_has(ds, "InstanceNumber") else None,
    )


def _safe_has(ds: Dataset, keyword: str) -> bool:
    try:
        return ds.get(keyword, None) not in (None, "")
    except Exception:
        return False


class _IsDicomDir(Exception):
    """Internal: the object is a DICOMDIR, to be expanded rather than indexed."""


class _IsArchive(Exception):
    """Internal: the file is a zip archive without a .zip name, to be expanded rather than indexed."""


# --- frames: geometry and value transforms, per frame --------------------------------------


def _first_item(ds: Dataset | None, keyword: str) -> Dataset | None:
    if ds is None:
        return None
    try:
        seq = ds.get(keyword, None)
    except Exception:
        return None
    return seq[0] if seq else None


def _lut_holder(transfer_syntax: str | None) -> Dataset:
    """A dataset to hold a LUT sequence for pydicom, with the File Meta it needs to know the
    byte order of OW LUT data."""
    from pydicom.dataset import FileMetaDataset

    holder = Dataset()
    holder.file_meta = FileMetaDataset()
    holder.file_meta.TransferSyntaxUID = transfer_syntax or "1.2.840.10008.1.2.1"
    return holder


def _modality_transform(sources: list[Dataset | None], modality: str, spp: int, transfer_syntax: str | None = None) -> ModalityTransform:
    if spp != 1:
        return ModalityTransform()
    for ds in sources:
        if ds is None:
            continue
        slope = _floats(ds.get("RescaleSlope", None), 1) if "RescaleSlope" in ds else None
        intercept = _floats(ds.get("RescaleIntercept", None), 1) if "RescaleIntercept" in ds else None
        if slope or intercept:
            return ModalityTransform(slope=slope[0] if slope else 1.0, intercept=intercept[0] if intercept else 0.0)
        if "ModalityLUTSequence" in ds and len(ds.ModalityLUTSequence):
            holder = _lut_holder(transfer_syntax)
            holder.ModalityLUTSequence = ds.ModalityLUTSequence
            return ModalityTransform(lut_dataset=holder)
    return ModalityTransform()


def _voi(sources: list[Dataset | None], transfer_syntax: str | None = None):
    for ds in sources:
        if ds is None:
            continue
        centers = ds.get("WindowCenter", None)
        widths = ds.get("WindowWidth", None)
        c = _floats(centers, 1)
        w = _floats(widths, 1)
        if c and w:
            cs = _floats(centers, len(centers) if hasattr(centers, "__len__") and not isinstance(centers, str) else 1) or c
            ws = _floats(widths, len(widths) if hasattr(widths, "__len__") and not isinstance(widths, str) else 1) or w
            n = min(len(cs), len(ws))
            expl = ds.get("WindowCenterWidthExplanation", None)
            if expl is None:
                explanations: tuple[str, ...] = ()
            elif isinstance(expl, str):
                explanations = (expl,)
            else:
                explanations = tuple(str(e) for e in expl)
            function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
            return cs[:n], ws[:n], explanations[:n], function, None
        if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
            holder = _lut_holder(transfer_syntax)
            holder.VOILUTSequence = ds.VOILUTSequence
            return (), (), (), "LINEAR", holder
    return (), (), (), "LINEAR", None


def frames_of(instance: Instance) -> list[Frame]:
    """Split an object into frames; enhanced objects take position, orientation, spacing,
    rescale and window from their per-frame (else shared) functional groups."""
    ds = instance.header
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    try:
        per_frame = ds.get("PerFrameFunctionalGroupsSequence", None)
    except Exception:
        per_frame = None
    frames: list[Frame] = []
    for k in range(instance.number_of_frames):
        pf = per_frame[k] if per_frame is not None and k < len(per_frame) else None
        groups = [g for g in (pf, shared) if g is not None]

        def from_groups(seq_keyword: str) -> list[Dataset | None]:
            return [_first_item(g, seq_keyword) for g in groups]

        position = None
        for item in from_groups("PlanePositionSequence") + [ds]:
            if item is not None and "ImagePositionPatient" in item:
                position = _floats(item.ImagePositionPatient, 3)
                if position:
                    break
        orientation = None
        for item in from_groups("PlaneOrientationSequence") + [ds]:
            if item is not None and "ImageOrientationPatient" in item:
                orientation = _floats(item.ImageOrientationPatient, 6)
                if orientation:
                    break
        spacing, spacing_source, thickness = None, None, None
        for item in from_groups("PixelMeasuresSequence"):
            if item is not None and "PixelSpacing" in item:
                spacing = _floats(item.PixelSpacing, 2)
                spacing_source = "PixelSpacing"
                thickness = _floats(item.get("SliceThickness", None), 1)
                break
        if spacing is None:
            for keyword in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
                if keyword in ds:
                    spacing = _floats(ds.get(keyword), 2)
                    if spacing and spacing[0] > 0 and spacing[1] > 0:
                        spacing_source = keyword
                        break
                    spacing = None
        if spacing is not None and not (spacing[0] > 0 and spacing[1] > 0):
            spacing, spacing_source = None, None
        if thickness is None:
            thickness = _floats(ds.get("SliceThickness", None), 1)
        ts = instance.transfer_syntax
        transform = _modality_transform(from_groups("PixelValueTransformationSequence") + [ds], instance.modality, instance.samples_per_pixel, ts)
        centers, widths, explanations, function, voi_lut = _voi(from_groups("FrameVOILUTSequence") + [ds], ts)
        frames.append(
            Frame(
                instance=instance,
                frame_index=k,
                position=position,
                orientation=orientation,
                pixel_spacing=spacing,
                spacing_source=spacing_source,
                slice_thickness=thickness[0] if thickness else None,
                modality_transform=transform,
                window_centers=centers,
                window_widths=widths,
                window_explanations=explanations,
                voi_function=function,
                voi_lut_dataset=voi_lut,
                instance_number=instance.instance_number,
            )
        )
    return frames


# --- grouping and sorting -----------------------------------------------------------------


def _stack_key(frame: Frame) -> tuple:
    inst = frame.instance
    orient = tuple(round(v, 3) for v in frame.orientation) if frame.orientation else None
    return (inst.rows, inst.columns, inst.samples_per_pixel, inst.photometric == "PALETTE COLOR", orient)


def sort_frames(frames: list[Frame]) -> tuple[list[Frame], str | None]:
    """Display order: position along the slice normal, then Instance Number, then frame number.

    When positions repeat (a time series, several echoes) frames keep acquisition order
    (Instance Number, frame number) and a note says so.
    """
    def acquisition_key(f: Frame):
        return (f.instance_number if f.instance_number is not None else 0, str(f.instance.source), f.frame_index)

    normal = frames[0].normal
    if normal is None or any(f.position is None for f in frames) or len(frames) < 2:
        return sorted(frames, key=acquisition_key), None
    projected = [float(np.dot(np.array(f.position), normal)) for f in frames]
    rounded = [round(p, 3) for p in projected]
    if len(set(rounded)) < len(rounded):
        return sorted(frames, key=acquisition_key), (
            f"{len(rounded) - len(set(rounded))} frames share a slice position (time series or several "
            "echoes): kept in acquisition order"
        )
    order = sorted(range(len(frames)), key=lambda i: (projected[i],) + acquisition_key(frames[i]))
    return [frames[i] for i in order], None


def build_series(instances: Iterable[Instance], frames_by_instance: dict[int, list[Frame]] | None = None) -> tuple[list[Series], list[str]]:
    """Group instances by study/series UID, split into consistent stacks, sort frames.
    ``frames_by_instance`` (keyed by ``id(instance)``) reuses frames already split."""
    frames_by_instance = frames_by_instance or {}
    by_series: OrderedDict[tuple[str, str], list[Instance]] = OrderedDict()
    seen_sops: set[str] = set()
    notes: list[str] = []
    shared_uid = 0
    for inst in instances:
        if inst.sop_instance_uid in seen_sops:
            shared_uid += 1  # e.g. one image saved in several transfer syntaxes: keep them all
        seen_sops.add(inst.sop_instance_uid)
        by_series.setdefault((inst.study_uid, inst.series_uid), []).append(inst)
    if shared_uid:
        notes.append(f"{shared_uid} file(s) repeat the SOP Instance UID of another file (copies of one image?)")
    result: list[Series] = []
    for (study_uid, series_uid), members in by_series.items():
        frames = [f for inst in members for f in (frames_by_instance.get(id(inst)) or frames_of(inst))]
        stacks: OrderedDict[tuple, list[Frame]] = OrderedDict()
        for f in frames:
            stacks.setdefault(_stack_key(f), []).append(f)
        stack_list = sorted(stacks.values(), key=lambda fs: -len(fs))
        series_notes: list[str] = []
        if len(stack_list) > 1:
            sizes = ", ".join(f"{len(fs)} x {fs[0].instance.rows}x{fs[0].instance.columns}" for fs in stack_list)
            note = (
                f"series {series_uid} mixes image sizes or orientations: split into {len(stack_list)} "
                f"consistent stacks ({sizes})"
            )
            series_notes.append(note)
            notes.append(note)
        for number, stack_frames in enumerate(stack_list, start=1):
            ordered, sort_note = sort_frames(stack_frames)
            s = Series(
                study_uid=study_uid,
                series_uid=series_uid,
                frames=ordered,
                stack_number=number,
                stack_count=len(stack_list),
                notes=list(series_notes) + ([sort_note] if sort_note else []),
            )
            result.append(s)
    return result, notes


# --- walking paths --------------------------------------------------------------------------


def _dicomdir_references(path: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files a DICOMDIR references (relative to its folder), and the missing ones."""
    try:
        ds = dcmread(path, force=True)
    except Exception as exc:
        raise UnreadableFileError(f"unreadable DICOMDIR ({type(exc).__name__}: {exc})") from exc
    root = path.parent
    found: list[Path] = []
    missing: list[tuple[str, str]] = []
    for record in ds.get("DirectoryRecordSequence", []):
        ref = record.get("ReferencedFileID", None)
        if ref is None:
            continue
        parts = [str(p) for p in (ref if isinstance(ref, (list, tuple)) or hasattr(ref, "__iter__") and not isinstance(ref, str) else [ref])]
        if any(p in ("..", "") or "/" in p or "\\" in p for p in parts):
            missing.append((str(path), f"DICOMDIR entry {'/'.join(parts)!r} points outside its folder: skipped"))
            continue
        candidate = root.joinpath(*parts)
        if not candidate.exists():
            # media written on case-insensitive file systems
            alt = _case_insensitive(root, parts)
            if alt is None:
                missing.append((str(candidate), "referenced by the DICOMDIR but missing"))
                continue
            candidate = alt
        found.append(candidate)
    return found, missing


def _case_insensitive(root: Path, parts: list[str]) -> Path | None:
    current = root
    for part in parts:
        try:
            names = {p.name.lower(): p for p in current.iterdir()}
        except OSError:
            return None
        nxt = names.get(part.lower())
        if nxt is None:
            return None
        current = nxt
    return current


def _is_zip(path: Path) -> bool:
    if regular_file_problem(path) is not None:
        return False
    try:
        with open(path, "rb") as fh:
            return fh.read(4) in (b"PK\x03\x04", b"PK\x05\x06")
    except OSError:
        return False


def _is_dicomdir_name(path: Path) -> bool:
    return path.name.upper() == "DICOMDIR"


class _Archives:
    """Opens the zip archives of one import, within the import's total expanded size."""

    def __init__(self, result: ScanResult):
        self.result = result
        self.expanded = 0

    def members(self, path: Path) -> list[SourceRef]:
        """The archive's members to index (nothing when it is refused: the reason is in ``result``)."""
        result = self.result
        try:
            members = check_archive(path)
        except UserFacingError as exc:
            result.rejected.append((str(path), str(exc)))
            return []
        expanded = sum(info.file_size for info in members)
        if self.expanded + expanded > MAX_IMPORT_ARCHIVE_BYTES:
            result.rejected.append((str(path), (
                f"archive not opened: with it, the archives of this import would expand to "
                f"{(self.expanded + expanded) / 1024**3:.1f} GiB (limit {MAX_IMPORT_ARCHIVE_BYTES // 1024**3} GiB "
                "per import; import it on its own)")))
            return []
        self.expanded += expanded
        sources = []
        for info in members:
            if info.filename.lower().endswith(".zip"):
                result.notes.append(f"{path}!{info.filename}: zip inside a zip not opened")
                continue
            if os.path.basename(info.filename).upper() == "DICOMDIR":
                continue  # the members themselves are indexed directly
            sources.append(SourceRef(path, info.filename))
        return sources


def _expand(paths: Iterable[str | os.PathLike], result: ScanResult, archives: _Archives,
            sniff_archives: bool = True) -> list[SourceRef]:
    """Every candidate object under the paths, deduplicated, DICOMDIRs and zips expanded.
    ``sniff_archives=False`` opens only the files named .zip here: a zip with another name is
    found when its header is read (``_IsArchive``), so no file is opened twice."""
    sources: list[SourceRef] = []
    seen: set[str] = set()

    def add(source: SourceRef) -> None:
        key = str(source) if source.member else os.path.realpath(source.path)
        if key not in seen:
            seen.add(key)
            sources.append(source)

    def add_file(path: Path) -> None:
        problem = regular_file_problem(path)
        if problem is not None:  # a FIFO blocks its reader forever, /dev/zero never ends
            result.rejected.append((str(path), problem))
            return
        if _is_dicomdir_name(path):
            try:
                refs, missing = _dicomdir_references(path)
            except UserFacingError as exc:
                result.rejected.append((str(path), str(exc)))
                return
            result.rejected.extend(missing)
            for ref in refs:
                add(SourceRef(ref))
            return
        if path.suffix.lower() == ".zip" or (sniff_archives and _is_zip(path)):
            for member in archives.members(path):
                add(member)
            return
        add(SourceRef(path))

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames.sort()
                for name in sorted(filenames):
                    if name.startswith("."):
                        continue
                    full = Path(dirpath) / name
                    if _is_dicomdir_name(full):
                        continue  # the walk reaches the referenced files anyway
                    add_file(full)
        elif path.exists() or path.is_symlink():
            add_file(path)
        else:
            result.rejected.append((str(path), "no such file or folder"))
    return sources


def _natural_key(source: SourceRef) -> list:
    """A sort key that orders the digit runs of a file name by value (I9 before I10)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", source.member or str(source.path))]


#: how many files ``scan_paths`` offers its ``first`` callback before it gives up on a preview
FIRST_TRIES = 3


def scan_paths(
    paths: Iterable[str | os.PathLike],
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
    decode_ahead: "DecodeAhead | None" = None,
    read_ahead: Mapping[str | os.PathLike, bytes] | None = None,
    first: Callable[[Instance], bool] | None = None,
) -> ScanResult:
    """Index files, folders (recursive), zip archives and DICOMDIRs into series.

    Header only (fast; pixels decode later with ``Series.load_frame``). ``progress(done,
    total)`` is called as files are indexed; ``cancel()`` returning True stops early with
    ``result.cancelled`` set. Files that are not usable images land in ``result.rejected`` as
    ``(path, reason)``; unsafe archives are refused there too. Never raises for a bad input.

    Each file is opened once: ``read_ahead`` maps paths to the bytes a caller read already (the
    drop routing's sniff), parsed from memory instead. ``first(instance)`` is called before
    the rest is indexed with the middle file in natural name order (in a one-folder series,
    the slice the series opens at), then the next ones until it returns True (at most
    ``FIRST_TRIES`` files): a preview while a long folder indexes. The result does not depend
    on it.

    ``decode_ahead`` (a ``parallel_decode.DecodeAhead``, when the pixels will be loaded anyway)
    hands each object to a decode worker as soon as it is indexed, so decoding runs on the
    other cores while indexing goes on, and the header is parsed only once.
    """
    result = ScanResult()
    archives = _Archives(result)
    sources = _expand(paths, result, archives, sniff_archives=False)
    kept = {os.path.realpath(path): data for path, data in (read_ahead or {}).items()}

    def index(source: SourceRef) -> tuple[Instance, list[Frame]]:
        data = kept.pop(os.path.realpath(source.path), None) if kept and not source.member else None
        instance = index_object(source, data)
        return instance, frames_of(instance)

    # the first files, indexed ahead for ``first``: what they gave (or raised) waits for its turn
    ahead: dict[int, tuple[Instance, list[Frame]] | Exception] = {}
    if first is not None and sources:
        by_name = sorted(range(len(sources)), key=lambda i: _natural_key(sources[i]))
        middle = len(by_name) // 2
        for position in (by_name[middle:middle + FIRST_TRIES] + by_name[:FIRST_TRIES])[:FIRST_TRIES]:
            if cancel is not None and cancel():
                break
            try:
                ahead[position] = index(sources[position])
            except Exception as exc:  # noqa: BLE001 - reported in its turn below
                ahead[position] = exc
                continue
            try:
                shown = first(ahead[position][0])
            except Exception:  # noqa: BLE001 - a preview must never break an import
                log.debug("first-image callback failed", exc_info=True)
                shown = False
            if shown:
                break

    instances: list[Instance] = []
    frames_by_instance: dict[int, list[Frame]] = {}
    total = len(sources)
    done = 0
    while done < len(sources):
        source = sources[done]
        done += 1
        if cancel is not None and cancel():
            result.cancelled = True
            result.notes.append(f"import cancelled after {done - 1} of {total} files")
            break
        try:
            outcome = ahead.pop(done - 1, None) if ahead else None
            if isinstance(outcome, Exception):
                raise outcome
            instance, frames = outcome or index(source)
            frames_by_instance[id(instance)] = frames
            instances.append(instance)
            if decode_ahead is not None:
                decode_ahead.offer(instance)
        except _IsDicomDir:
            if not source.in_archive:
                try:
                    refs, missing = _dicomdir_references(source.path)
                except UserFacingError as exc:
                    result.rejected.append((str(source), str(exc)))
                else:
                    result.rejected.extend(missing)
                    for ref in refs:
                        key = os.path.realpath(ref)
                        if not any(not s.member and os.path.realpath(s.path) == key for s in sources):
                            sources.append(SourceRef(ref))
                            total += 1
        except _IsArchive:
            # its members are indexed next, where a .zip name would have put them
            members = archives.members(source.path)
            sources[done:done] = members
            total += len(members)
            ahead = {(p + len(members) if p >= done else p): o for p, o in ahead.items()}
        except UnsafeArchiveError as exc:
            result.rejected.append((str(source), str(exc)))
        except UserFacingError as exc:
            result.rejected.append((str(source), str(exc)))
        except Exception as exc:  # a file must never stop the folder: report and go on
            log.debug("unexpected error indexing a file", exc_info=True)
            result.rejected.append((str(source), f"unreadable file ({type(exc).__name__}: {exc})"))
        if progress is not None:
            progress(done, total)
    if decode_ahead is not None and result.cancelled:
        decode_ahead.cancel()
    elif decode_ahead is not None:
        decode_ahead.flush()
    series, notes = build_series(instances, frames_by_instance)
    result.series = series
    result.notes.extend(notes)
    return result


def expand_paths(paths: Iterable[str | os.PathLike]) -> tuple[list[SourceRef], list[tuple[str, str]], list[str]]:
    """Candidate objects under files, folders, zips and DICOMDIRs (no header read):
    ``(sources, rejected, notes)``; unsafe archives and missing paths are in ``rejected``."""
    result = ScanResult()
    sources = _expand(paths, result, _Archives(result))
    return sources, result.rejected, result.notes
