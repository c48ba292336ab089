"""The imaging data model: instances (one DICOM object), frames (one 2-D image in display
order, with its own geometry and value transforms), series (a consistent stack of frames) and
studies, as built by ``scanning.scan_paths``. Pixels are decoded lazily, on request."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset

from healthfm_desktop.core.errors import UnreadableFileError, UserFacingError
from healthfm_desktop.core.imaging.decoding import (
    ModalityTransform,
    colour_to_rgb8,
    decode_stored,
    palette_to_rgb8,
)
from healthfm_desktop.core.imaging.sources import SourceRef

ProgressCallback = Callable[[int, int], None]
CancelCheck = Callable[[], bool]


@dataclass
class Instance:
    """One DICOM object (a file or a zip member) indexed from its header only."""

    source: SourceRef
    header: Dataset  # read with stop_before_pixels: everything but the pixel data
    forced: bool  # read without preamble/File Meta (force=True)
    byte_offset: int  # stray bytes before the dataset (0 for a proper file)
    transfer_syntax: str | None  # from the File Meta, else guessed from how the dataset parsed
    transfer_syntax_guessed: bool
    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    modality: str
    photometric: str
    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    number_of_frames: int
    instance_number: int | None
    # where the Pixel Data value lies in the file, so decoding reads just those bytes instead of
    # parsing the header a second time (None: not known, decode the whole file)
    pixel_value_offset: int | None = None
    pixel_value_length: int | None = None  # None with an offset: encapsulated (undefined length)
    # a worker process decoding this object's pixels since it was indexed (a Future of the
    # stored values, see parallel_decode.DecodeAhead); the first reader takes it
    pending_pixels: object = field(default=None, repr=False, compare=False)

    @property
    def is_colour(self) -> bool:
        return self.samples_per_pixel == 3 or self.photometric == "PALETTE COLOR"


@dataclass
class Frame:
    """One 2-D image of a series: the object it comes from, its frame number there, and the
    geometry and value transforms that apply to it (per-frame functional groups included)."""

    instance: Instance
    frame_index: int  # 0-based frame number inside ``instance``
    position: tuple[float, float, float] | None  # ImagePositionPatient (mm), centre of first pixel
    orientation: tuple[float, float, float, float, float, float] | None  # ImageOrientationPatient
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns) in mm
    spacing_source: str | None  # "PixelSpacing", "ImagerPixelSpacing", ... (say which to the user)
    slice_thickness: float | None
    modality_transform: ModalityTransform
    window_centers: tuple[float, ...] = ()
    window_widths: tuple[float, ...] = ()
    window_explanations: tuple[str, ...] = ()
    voi_function: str = "LINEAR"
    voi_lut_dataset: Dataset | None = None  # holds a VOILUTSequence when the file has one
    instance_number: int | None = None

    @property
    def normal(self) -> np.ndarray | None:
        if self.orientation is None:
            return None
        row, col = np.array(self.orientation[:3]), np.array(self.orientation[3:])
        n = np.cross(row, col)
        norm = np.linalg.norm(n)
        return n / norm if norm > 0 else None


@dataclass
class Series:
    """A consistent stack of frames (same size, orientation and pixel type) in display order.

    A DICOM series with mixed sizes or orientations becomes several ``Series`` objects sharing
    ``series_uid``, numbered by ``stack_number`` (1-based) out of ``stack_count``.
    """

    study_uid: str
    series_uid: str
    frames: list[Frame]
    stack_number: int = 1
    stack_count: int = 1
    notes: list[str] = field(default_factory=list)
    _cache: "OrderedDict[int, np.ndarray]" = field(default_factory=OrderedDict, repr=False)
    _cache_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    cache_bytes_limit: int = 64 * 1024**2  # the viewer keeps its own, larger cache

    # --- header facts, for lists and overlays --------------------------------------------
    @property
    def first(self) -> Instance:
        return self.frames[0].instance

    def _h(self, keyword: str, default: str = "") -> str:
        try:
            value = self.first.header.get(keyword, None)
            return default if value is None else str(value)
        except Exception:  # a corrupt value must not break a list or an overlay
            return default

    @property
    def key(self) -> str:
        """Unique within a scan: the series UID, plus ``#k`` for stacks after the first."""
        return self.series_uid if self.stack_number == 1 else f"{self.series_uid}#{self.stack_number}"

    @property
    def modality(self) -> str:
        return self.first.modality

    @property
    def description(self) -> str:
        return self._h("SeriesDescription")

    @property
    def series_number(self) -> str:
        return self._h("SeriesNumber")

    @property
    def patient_name(self) -> str:
        return self._h("PatientName")

    @property
    def patient_id(self) -> str:
        return self._h("PatientID")

    @property
    def patient_birth_date(self) -> str:
        return self._h("PatientBirthDate")

    @property
    def patient_sex(self) -> str:
        return self._h("PatientSex")

    @property
    def study_date(self) -> str:
        return self._h("StudyDate")

    @property
    def study_time(self) -> str:
        return self._h("StudyTime")

    @property
    def study_description(self) -> str:
        return self._h("StudyDescription")

    @property
    def accession_number(self) -> str:
        return self._h("AccessionNumber")

    @property
    def institution(self) -> str:
        return self._h("InstitutionName")

    @property
    def manufacturer(self) -> str:
        return self._h("Manufacturer")

    @property
    def frame_of_reference_uid(self) -> str:
        return self._h("FrameOfReferenceUID")

    @property
    def rows(self) -> int:
        return self.first.rows

    @property
    def columns(self) -> int:
        return self.first.columns

    @property
    def photometric(self) -> str:
        return self.first.photometric

    @property
    def is_colour(self) -> bool:
        return self.first.is_colour

    @property
    def instances(self) -> list[Instance]:
        seen: dict[int, Instance] = {}
        for frame in self.frames:
            seen.setdefault(id(frame.instance), frame.instance)
        return list(seen.values())

    @property
    def frame_count(self) -> int:
        return len(self.frames)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def transfer_syntaxes(self) -> list[str]:
        return sorted({i.transfer_syntax or "" for i in self.instances} - {""})

    # --- pixels -----------------------------------------------------------------------------
    def load_stored(self, index: int) -> np.ndarray:
        """Stored values of frame ``index`` (display order) before any LUT: integer grey, or
        RGB / palette indices for colour. Used by fast LUT rendering and volumes."""
        frame = self.frames[index]
        arr = None
        if frame.instance.number_of_frames == 1 and frame.instance.pending_pixels is not None:
            from healthfm_desktop.core.imaging.parallel_decode import take_decoded_ahead

            arr = take_decoded_ahead(frame.instance)
        if arr is None:
            arr = decode_stored(frame.instance, frame.frame_index if frame.instance.number_of_frames > 1 else None)
        if frame.instance.number_of_frames > 1 and arr.ndim > (3 if frame.instance.samples_per_pixel == 3 else 2):
            arr = arr[frame.frame_index]
        return arr

    def to_modality(self, index: int, stored: np.ndarray) -> np.ndarray:
        """Stored -> display-ready pixels: float32 modality values (grey) or uint8 RGB."""
        frame = self.frames[index]
        instance = frame.instance
        if instance.photometric == "PALETTE COLOR":
            return palette_to_rgb8(stored, instance.header)
        if instance.samples_per_pixel == 3:
            return colour_to_rgb8(stored, instance.bits_stored)
        return frame.modality_transform.apply(stored)

    def load_frame(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based, display order) ready to display.

        Grey: float32 rows x columns in modality units (Modality LUT applied: HU for CT).
        Colour: uint8 rows x columns x 3 RGB (YBR converted, PALETTE COLOR applied).
        Raises ``UnreadableFileError`` (a ``UserFacingError``) when the pixels cannot be decoded.
        Thread-safe; recently used frames are cached.
        """
        if not 0 <= index < len(self.frames):
            raise IndexError(f"frame {index} out of range (series has {len(self.frames)})")
        with self._cache_lock:
            cached = self._cache.get(index)
            if cached is not None:
                self._cache.move_to_end(index)
                return cached
        pixels = _user_facing(lambda: self.to_modality(index, self.load_stored(index)))
        pixels.setflags(write=False)
        with self._cache_lock:
            self._cache[index] = pixels
            total = sum(a.nbytes for a in self._cache.values())
            while total > self.cache_bytes_limit and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                total -= old.nbytes
        return pixels

    def iter_frames(
        self,
        indices: Sequence[int] | None = None,
        *,
        stored: bool = False,
        workers: int | None = None,
        cancel: CancelCheck | None = None,
        processes: int | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, pixels)`` for many frames, in index order.

        Objects decode in the app's worker processes (``parallel_decode``: the codecs hold the
        GIL, so only processes use a second core) when that pays: ``processes=None`` decides
        from the number of objects and whether the pool already runs, ``processes=0`` (or 1)
        decodes in this process (with ``workers`` threads), ``processes>=2`` uses the pool
        whenever it can start. Frames of one multi-frame object are decoded together (one
        read, one decode). ``stored=True`` yields stored values (as ``load_stored``) instead
        of ``load_frame``'s. A frame that cannot be decoded raises ``UnreadableFileError``
        when reached.
        """
        wanted = list(range(len(self.frames))) if indices is None else list(indices)
        by_instance: OrderedDict[int, list[int]] = OrderedDict()
        for i in wanted:
            by_instance.setdefault(id(self.frames[i].instance), []).append(i)
        groups = list(by_instance.values())

        def split(group: list[int], every: np.ndarray) -> list[tuple[int, np.ndarray]]:
            instance = self.frames[group[0]].instance
            single_ndim = 3 if instance.samples_per_pixel == 3 else 2
            if instance.number_of_frames == 1:
                return [(group[0], every)]
            if every.ndim == single_ndim:
                every = every[np.newaxis]
            return [(i, every[self.frames[i].frame_index]) for i in group]

        def finish(pairs: list[tuple[int, np.ndarray]]) -> list[tuple[int, np.ndarray]]:
            return pairs if stored else [(i, self.to_modality(i, arr)) for i, arr in pairs]

        def decode_group(group: list[int]) -> list[tuple[int, np.ndarray]]:
            if cancel is not None and cancel():
                return []
            instance = self.frames[group[0]].instance
            if instance.number_of_frames > 1 and len(group) > 1:
                from healthfm_desktop.core.imaging.parallel_decode import take_decoded_ahead

                every = take_decoded_ahead(instance)
                out = split(group, decode_stored(instance, None) if every is None else every)
            else:
                out = [(i, self.load_stored(i)) for i in group]
            return finish(out)

        def decode_group_safely(group: list[int]) -> list[tuple[int, np.ndarray]]:
            return _user_facing(lambda: decode_group(group))

        from healthfm_desktop.core.imaging import parallel_decode

        if processes is None:
            pool = parallel_decode.pool_for(len(groups))
        elif processes >= 2 and len(groups) > 1:
            pool = parallel_decode.shared_pool(start=True)
        else:
            pool = None
        if pool is not None:
            while groups and not pool.ready and pool.starting:
                # the workers are still starting (the viewer starts them as an import begins):
                # decode here meanwhile rather than wait for them
                if cancel is not None and cancel():
                    return
                yield from decode_group_safely(groups.pop(0))
            if not pool.ready:
                pool = None
        if pool is not None and groups:
            instances = [self.frames[g[0]].instance for g in groups]
            outcomes = pool.decode_instances(instances, cancel=cancel)
            for group, outcome in zip(groups, outcomes):
                if cancel is not None and cancel():
                    return
                if isinstance(outcome, BaseException):
                    raise outcome
                yield from _user_facing(lambda group=group, outcome=outcome: finish(split(group, outcome)))
            return
        workers = workers or default_decode_workers()
        if workers <= 1 or len(groups) <= 1:
            for group in groups:
                if cancel is not None and cancel():
                    return
                yield from decode_group_safely(group)
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dicom-decode") as pool:
            # bounded look-ahead keeps memory flat on a long series
            pending = []
            group_iter = iter(groups)
            for _ in range(workers * 2):
                group = next(group_iter, None)
                if group is None:
                    break
                pending.append(pool.submit(decode_group_safely, group))
            while pending:
                future = pending.pop(0)
                group = next(group_iter, None)
                if group is not None:
                    pending.append(pool.submit(decode_group_safely, group))
                results = future.result()
                if cancel is not None and cancel():
                    for f in pending:
                        f.cancel()
                    return
                yield from results

    # --- geometry ---------------------------------------------------------------------------
    @property
    def pixel_spacing(self) -> tuple[float, float] | None:
        return self.frames[0].pixel_spacing

    @property
    def spacing_source(self) -> str | None:
        return self.frames[0].spacing_source

    def slice_location(self, index: int) -> float | None:
        """Position of frame ``index`` along the slice normal (mm), for the overlay."""
        frame = self.frames[index]
        n = frame.normal
        if n is None or frame.position is None:
            return None
        return float(np.dot(np.array(frame.position), n))


def _user_facing(work):
    """Run ``work``; any failure on a corrupt file becomes an ``UnreadableFileError``."""
    try:
        return work()
    except UserFacingError:
        raise
    except MemoryError as exc:
        raise UnreadableFileError("the image is too large to decode in the memory available") from exc
    except Exception as exc:  # corrupt headers make numpy/pydicom fail in many ways
        raise UnreadableFileError(f"pixel data could not be decoded ({type(exc).__name__}: {exc})") from exc


def default_decode_workers() -> int:
    """Decoding threads per series: 1. The codec bindings (pyjpegls, pylibjpeg-libjpeg and
    -openjpeg, GDCM) hold the GIL while decoding (no ``nogil`` in their sources), so a second
    thread only adds contention (measured 0.97-1.35x the time of one on the 140-slice CT).
    Parallel decoding uses worker processes instead (``parallel_decode``)."""
    return 1


def default_decode_processes() -> int:
    import os

    return max(1, min(4, os.cpu_count() or 1))


@dataclass
class Study:
    """Series sharing a Study Instance UID."""

    study_uid: str
    series: list[Series]

    @property
    def description(self) -> str:
        return self.series[0].study_description

    @property
    def date(self) -> str:
        return self.series[0].study_date

    @property
    def patient_name(self) -> str:
        return self.series[0].patient_name

    @property
    def patient_id(self) -> str:
        return self.series[0].patient_id


@dataclass
class ScanResult:
    """What ``scan_paths`` found: series (display-ready stacks), files it could not use
    (``(path, reason)``), and notes for the user (split series, skipped archives...)."""

    series: list[Series] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cancelled: bool = False

    @property
    def studies(self) -> list[Study]:
        grouped: OrderedDict[str, list[Series]] = OrderedDict()
        for s in self.series:
            grouped.setdefault(s.study_uid, []).append(s)
        return [Study(uid, series) for uid, series in grouped.items()]

    def find_series(self, uid_or_key: str) -> list[Series]:
        """All stacks of the series with this UID (or the one stack with this ``key``)."""
        exact = [s for s in self.series if s.key == uid_or_key]
        if "#" in uid_or_key:
            return exact
        return [s for s in self.series if s.series_uid == uid_or_key]
