"""The Images workspace's state without Qt (napari's ViewerModel pattern): open series, decoded
frames, per-series display state, series-sync geometry, the MPR volume and the measurements with
their files. Controllers run the slow parts on workers and relay this model's events."""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from healthfm_desktop.core.errors import UserFacingError
from healthfm_desktop.core.events import Event, Progress
from healthfm_desktop.core.imaging import measure
from healthfm_desktop.core.imaging.orientation import frame_edge_letters
from healthfm_desktop.core.storage.atomic import background_writer

if TYPE_CHECKING:
    from healthfm_desktop.core.imaging.series import Series

#: the series browser's thumbnails are 96 logical pixels: 192 device pixels at 2x, so at least that
THUMBNAIL_PIXELS = 256
FRAME_CACHE_BYTES = 1536 * 1024**2


def _display():
    """core.imaging.display, imported on first use: it pulls in pydicom (about half a second),
    which the app's start does not need to wait for."""
    from healthfm_desktop.core.imaging import display

    return display


class SessionEvents:
    """What a ViewerSession announces (a controller relays each as a Qt signal)."""

    def __init__(self) -> None:
        self.series_added = Event()  # [Series]
        self.unreadable_changed = Event()  # [(path, reason)]
        self.notes_changed = Event()  # [str]
        self.measurements_changed = Event()  # ()
        self.message = Event()  # level, text
        self.display_changed = Event()  # series key


class FrameCache:
    """Decoded frames by (series key, index), least recently used out first."""

    def __init__(self, max_bytes: int = FRAME_CACHE_BYTES):
        self._items: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes
        self._lock = threading.Lock()

    def get(self, key: str, index: int) -> np.ndarray | None:
        with self._lock:
            item = self._items.get((key, index))
            if item is not None:
                self._items.move_to_end((key, index))
            return item

    def put(self, key: str, index: int, pixels: np.ndarray) -> None:
        with self._lock:
            if (key, index) in self._items:
                return
            self._items[(key, index)] = pixels
            self._bytes += pixels.nbytes
            while self._bytes > self._max and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes

    def count(self, key: str) -> int:
        with self._lock:
            return sum(1 for k, _ in self._items if k == key)

    def drop(self, key: str) -> None:
        with self._lock:
            for item_key in [k for k in self._items if k[0] == key]:
                self._bytes -= self._items.pop(item_key).nbytes


@dataclasses.dataclass
class DisplayState:
    """How the user left a series (Weasis and RadiAnt keep it per series): the slice, the
    window (None: the file's default), inversion on top of the photometric one, and the
    viewport's zoom/pan/flip/rotation as the view reports it (None: fit)."""

    index: int = 0
    window: tuple[float, float] | None = None
    inverted: bool = False
    view: dict | None = None


def _first_shown(series: Series | None) -> int:
    """The slice a series opens at: the middle of a positioned stack (sorted along its normal)."""
    if series is None or series.frame_count < 2 or any(f.position is None for f in series.frames):
        return 0
    return series.frame_count // 2


def default_window(series: Series, index: int, pixels: np.ndarray | None) -> tuple[float, float] | None:
    """The core's default window (the file's first, else min/max) as (centre, width); None for
    colour frames and before the pixels are decoded."""
    if pixels is None or (pixels.ndim == 3 and pixels.dtype == np.uint8):
        return None
    window = _display().default_window(series.frames[index], pixels)
    return float(window.center), float(window.width)


def compact_frame(pixels: np.ndarray) -> np.ndarray:
    """Whole-number grey frames (most CT/MR: integer stored values, integer rescale) as int16:
    half the memory of float32 with the same modality values, so the 2-D cache plus an MPR
    volume stay near twice the int16 volume."""
    if pixels.dtype != np.float32 or pixels.ndim != 2 or pixels.size == 0:
        return pixels
    low, high = float(pixels.min()), float(pixels.max())
    if low < -32768 or high > 32767 or not np.array_equal(pixels, np.round(pixels)):
        return pixels
    compact = pixels.astype(np.int16)
    compact.setflags(write=False)
    return compact


def stored_scaling(series: Series) -> tuple[float, float] | None:
    """(slope, intercept) when one linear rescale with a fractional part maps every frame's
    stored integers (at most 16 bits) to modality values, as Philips MR does. Such series are
    cached as stored values (half of float32) and rescaled where values are needed; None
    when the modality values themselves are whole numbers (compact_frame keeps those)."""
    if series.is_colour or series.first.bits_allocated > 16:
        return None
    transforms = {(f.modality_transform.slope, f.modality_transform.intercept) for f in series.frames}
    if len(transforms) != 1 or any(f.modality_transform.lut_dataset is not None for f in series.frames):
        return None
    slope, intercept = transforms.pop()
    if slope <= 0 or (float(slope).is_integer() and float(intercept).is_integer()):
        return None
    return float(slope), float(intercept)


def thumbnail_pixels(pixels: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """A small uint8 picture of a frame with its default window (for the series browser)."""
    step = max(1, int(np.ceil(max(pixels.shape[:2]) / THUMBNAIL_PIXELS)))
    small = pixels[::step, ::step]
    if small.ndim == 3 and small.dtype == np.uint8:
        return np.ascontiguousarray(small)
    return np.ascontiguousarray(_display().render_uint8(small, _display().Window(*window) if window else None))


def render_window(pixels: np.ndarray, center: float, width: float, invert: bool,
                  scale: float = 1.0, offset: float = 0.0) -> np.ndarray:
    """The viewports' W/L: the core's VOI function (PS3.3 C.11.2.1.2) to uint8, on modality
    values ``pixels * scale + offset``. Integer frames (stored values, or whole-number
    modality values cached as int16) go through the core's lookup table of Modality LUT +
    VOI: one gather per pixel instead of float arithmetic, with identical output."""
    window = _display().Window(float(center), max(float(width), 1.0))
    if pixels.ndim == 2 and pixels.dtype.kind in "iu" and pixels.dtype.itemsize <= 2:
        from healthfm_desktop.core.imaging.decoding import ModalityTransform

        transform = ModalityTransform(slope=scale, intercept=offset)
        lut = _display().window_lut_for_stored(8 * pixels.dtype.itemsize, pixels.dtype.kind == "i", transform, window, invert)
        return _display().render_stored(pixels, lut)
    if (scale, offset) != (1.0, 0.0):
        pixels = pixels.astype(np.float32) * np.float32(scale) + np.float32(offset)
    return _display().render_uint8(pixels, window, invert=invert)


#: Transfer Syntax UID prefixes -> the compression a user knows them by
_COMPRESSION_FAMILIES = (
    ("1.2.840.10008.1.2.4.20", "HTJ2K (JPEG 2000)"), ("1.2.840.10008.1.2.4.9", "JPEG 2000"),
    ("1.2.840.10008.1.2.4.8", "JPEG-LS"), ("1.2.840.10008.1.2.4.5", "JPEG"), ("1.2.840.10008.1.2.4.7", "JPEG"),
    ("1.2.840.10008.1.2.4.10", "MPEG video"), ("1.2.840.10008.1.2.5", "RLE"),
    ("1.2.840.10008.1.2.1.99", "deflated"),
)


def compression_family(transfer_syntax: str | None) -> str:
    """"JPEG 2000", "JPEG-LS", "RLE"... for a Transfer Syntax UID; "image" when uncompressed or unknown."""
    for prefix, family in _COMPRESSION_FAMILIES:
        if (transfer_syntax or "").startswith(prefix):
            return family
    return "image"


def fmt_date(value: str) -> str:
    return f"{value[0:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 and value.isdigit() else value


# ------------------------------------------------------------------ measurement files
_POINT_COUNTS = {"distance": 2, "angle": 3, "rectangle": 2, "ellipse": 2}


def measurement_records_from_json(text: str) -> tuple[list[dict], int]:
    """Measurements saved with a study (core.measure's JSON) as session records, each with a
    fresh session id; damaged entries are left out and counted, never raised."""
    try:
        payload = json.loads(text)
        items = payload.get("measurements", []) if isinstance(payload, dict) else None
    except (ValueError, RecursionError):
        return [], 1
    if not isinstance(items, list):
        return [], 1
    records, dropped = [], 0
    for item in items:
        record = _valid_record(item)
        if record is None:
            dropped += 1
        else:
            records.append(record)
    return records, dropped


def _valid_record(item) -> dict | None:
    if not isinstance(item, dict):
        return None
    try:
        saved = measure.Measurement.from_dict(item)
    except (TypeError, ValueError):
        return None
    if not isinstance(saved.kind, str) or saved.kind not in _POINT_COUNTS or not isinstance(saved.points, list) or len(saved.points) != _POINT_COUNTS[saved.kind]:
        return None
    points = []
    for point in saved.points:
        if not isinstance(point, (list, tuple)) or len(point) != 2:
            return None
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in point):
            return None
        points.append([float(point[0]), float(point[1])])
    texts = (saved.study_uid, saved.series_uid, saved.sop_instance_uid, saved.label, saved.text)
    if not all(isinstance(t, str) for t in texts) or not isinstance(saved.values, dict):
        return None
    if not isinstance(saved.frame_index, int) or isinstance(saved.frame_index, bool) or saved.frame_index < 0:
        return None
    record = saved.to_dict()
    record.update(points=points, id=uuid.uuid4().hex[:12])
    return record


def measurement_file(folder: Path, study_uid: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in ".-" else "_" for ch in study_uid)[:120]
    return folder / f"{safe}.json"


@dataclasses.dataclass
class SavedMeasurements:
    """What a study's measurement file held: sound records, how many were damaged, or why the
    file could not be read at all."""

    study_uid: str
    records: list[dict]
    dropped: int = 0
    error: str | None = None


def read_saved_measurements(folder: Path, study_uids: Iterable[str]) -> list[SavedMeasurements]:
    """Read and check the measurement files of these studies (a worker's job: disk and JSON)."""
    found = []
    for study_uid in dict.fromkeys(study_uids):
        path = measurement_file(folder, study_uid)
        # another session's autosave of this study may still be on its way to the disk
        background_writer().wait_for(path, timeout=10.0)
        if not path.exists():
            found.append(SavedMeasurements(study_uid, []))
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            found.append(SavedMeasurements(study_uid, [], error=str(exc)))
            continue
        records, dropped = measurement_records_from_json(text)
        found.append(SavedMeasurements(study_uid, records, dropped))
    return found


class ViewerSession:
    """Everything the Images workspace knows, as plain Python; thread-safe where workers touch it
    (the frame cache), otherwise used from one thread."""

    def __init__(self, measurement_folder: Path):
        self.events = SessionEvents()
        self.measurement_folder = Path(measurement_folder)
        self._saver = background_writer()
        self.series: list[Series] = []
        self.unreadable: list[tuple[str, str]] = []
        self.notes: list[str] = []
        self.cache = FrameCache()
        self._by_key: dict[str, Series] = {}
        self._failures: dict[tuple[str, int], str] = {}
        self._scalings: dict[str, tuple[float, float] | None] = {}
        self._loaded: set[str] = set()
        self._display: dict[str, DisplayState] = {}
        self.current: tuple[str, int] | None = None
        self._measurements: dict[str, dict] = {}  # id -> record
        self._studies_loaded: set[str] = set()
        self._mpr: tuple[str, Any, dict] | None = None  # one volume at a time: memory stays bounded
        self._positions_along_normal: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # -------------------------------------------------------------- series
    def add_scan(self, result) -> tuple[list[Series], list[Series]]:
        """Take a scan result: (series new to the session, series already open)."""
        known = {s.key for s in self.series}
        added = [s for s in result.series if s.key not in known]
        already = [s for s in result.series if s.key in known]
        for series in added:
            self.series.append(series)
            self._by_key[series.key] = series
        self.unreadable.extend(result.rejected)
        self.notes.extend(result.notes)
        if added:
            self.events.series_added.emit(added)
        self.events.unreadable_changed.emit(list(self.unreadable))
        self.events.notes_changed.emit(list(self.notes))
        return added, already

    def clear_unreadable(self) -> None:
        self.unreadable.clear()
        self.notes.clear()
        self.events.unreadable_changed.emit([])
        self.events.notes_changed.emit([])

    def series_by_key(self, key: str) -> Series:
        return self._by_key[key]

    def get(self, key: str) -> Series | None:
        return self._by_key.get(key)

    def frame_count(self, key: str) -> int:
        series = self._by_key.get(key)
        return 0 if series is None else series.frame_count

    def is_plain_image(self, key: str) -> bool:
        from healthfm_desktop.core.imaging.plain_images import is_plain_image

        return is_plain_image(self._by_key.get(key))

    def series_entries(self) -> list[dict]:
        entries = []
        # series of one study together, studies in the order they were opened
        order = {uid: i for i, uid in enumerate(dict.fromkeys(s.study_uid for s in self.series))}
        for series in sorted(self.series, key=lambda s: order[s.study_uid]):
            note = ""
            if series.stack_count > 1:
                note = f"stack {series.stack_number} of {series.stack_count} (series split: mixed sizes/orientations)"
            elif series.notes:
                note = series.notes[0]
            entries.append({
                "key": series.key,
                "modality": series.modality,
                "description": series.description or (f"Series {series.series_number}" if series.series_number else ""),
                "frames": series.frame_count,
                "patient": series.patient_name.replace("^", " ").strip(),
                "study": self._study_heading(series),
                "note": note,
            })
        return entries

    @staticmethod
    def _study_heading(series: Series) -> str:
        from healthfm_desktop.core.imaging.plain_images import is_plain_image

        if is_plain_image(series):
            return "Plain images (not DICOM)"
        patient = series.patient_name.replace("^", " ").strip() or "(no name)"
        parts = [patient, series.study_description or "Study", fmt_date(series.study_date)]
        return " · ".join(part for part in parts if part)

    # ------------------------------------------------------- display state
    def display_state(self, key: str) -> DisplayState:
        """How the user left series ``key`` (a fresh default the first time: the middle slice of
        a stack of positioned slices, where the anatomy is; frame 0 of a cine loop or single image)."""
        state = self._display.get(key)
        if state is None:
            state = self._display[key] = DisplayState(index=_first_shown(self._by_key.get(key)))
        return state

    def update_display(self, key: str, **changes: Any) -> None:
        """Remember part of a series' display state (index, window, inverted, view)."""
        state = self.display_state(key)
        changed = False
        for name, value in changes.items():
            if name == "window" and value is not None:
                value = (float(value[0]), float(value[1]))
            if getattr(state, name) != value:
                setattr(state, name, value)
                changed = True
        if changed:
            self.events.display_changed.emit(key)

    # -------------------------------------------------------------- frames
    def scaling(self, series: Series) -> tuple[float, float] | None:
        if series.key not in self._scalings:
            self._scalings[series.key] = stored_scaling(series)
        return self._scalings[series.key]

    def display_frame(self, key: str, index: int) -> tuple[np.ndarray, float, float] | None:
        """What a viewport draws: (pixels, scale, offset) with modality value = pixels * scale
        + offset (stored integers for rescaled series, else the values themselves), or None
        while the frame is not decoded yet."""
        pixels = self.cache.get(key, index)
        if pixels is None:
            return None
        scaling = self.scaling(self._by_key[key])
        return (pixels, *scaling) if scaling else (pixels, 1.0, 0.0)

    def cached_frame(self, key: str, index: int) -> np.ndarray | None:
        """Frame ``index`` in modality units if it is decoded already, else None."""
        series = self._by_key.get(key)
        pixels = None if series is None else self.cache.get(key, index)
        return None if pixels is None else self.to_modality(series, pixels)

    def to_modality(self, series: Series, pixels: np.ndarray) -> np.ndarray:
        scaling = self.scaling(series)
        if scaling is None:
            return pixels
        values = pixels.astype(np.float32)
        values *= np.float32(scaling[0])
        values += np.float32(scaling[1])
        return values

    def cacheable(self, series: Series, index: int, stored: np.ndarray | None = None,
                  values: np.ndarray | None = None) -> np.ndarray:
        """The array the cache keeps for a frame: stored values for rescaled series, else the
        modality values (int16 when whole numbers)."""
        if self.scaling(series) is not None:
            return stored if stored is not None else series.load_stored(index)
        return compact_frame(values if values is not None else series.to_modality(index, stored))

    def keep_decoded(self, series: Series, index: int, pixels: np.ndarray) -> None:
        """Cache what a series' iter_frames gave (stored values when the series is rescaled)."""
        self.cache.put(series.key, index, pixels if self.scaling(series) is not None else compact_frame(pixels))

    def load(self, series: Series, index: int) -> np.ndarray:
        """The cached array of a frame, decoding it (on the calling thread) if needed."""
        pixels = self.cache.get(series.key, index)
        if pixels is None:
            pixels = self.cacheable(series, index, stored=series.load_stored(index))
            self.cache.put(series.key, index, pixels)
        return pixels

    def decode_series(self, key: str, cancelled: Callable[[], bool], decoded: Callable[[str, int], None],
                      failed: Callable[[str, int, str], None]) -> Iterator[Progress]:
        """Job: decode every frame of series ``key`` not in the cache yet, keeping each there and
        announcing it through ``decoded`` (or ``failed`` with the reason); yields progress,
        returns {index: reason} of the frames that would not decode."""
        series = self._by_key[key]
        total = series.frame_count
        missing = [i for i in range(total) if self.cache.get(key, i) is None]
        done = total - len(missing)
        failures: dict[int, str] = {}
        iterator = series.iter_frames(missing, stored=self.scaling(series) is not None, cancel=cancelled)
        while not cancelled():
            try:
                index, pixels = next(iterator)
            except StopIteration:
                break
            except UserFacingError:
                # one undecodable object: go on frame by frame so the others still load
                for index in missing:
                    if cancelled():
                        break
                    if self.cache.get(key, index) is not None or index in failures:
                        continue
                    try:
                        self.load(series, index)
                    except UserFacingError as exc:
                        failures[index] = str(exc)
                        failed(key, index, str(exc))
                    else:
                        decoded(key, index)
                    done += 1
                    yield Progress(done / total, f"Loading {series.description or 'series'} {done}/{total}")
                break
            self.keep_decoded(series, index, pixels)
            decoded(key, index)
            done += 1
            yield Progress(done / total, f"Loading {series.description or 'series'} {done}/{total}")
        return failures

    def build_mpr_volume(self, key: str, cancelled: Callable[[], bool]) -> Iterator[Progress]:
        """Job: read the slices of series ``key`` the cache lacks and build its MPR volume;
        yields progress, returns the volume (None when cancelled before every slice was read)."""
        from healthfm_desktop.core.imaging import mpr

        series = self._by_key[key]
        total = series.frame_count
        slices: list[np.ndarray | None] = [self.cache.get(key, i) for i in range(total)]
        missing = [i for i, cached in enumerate(slices) if cached is None]
        done = total - len(missing)
        scaling = self.scaling(series)
        for index, pixels in series.iter_frames(missing, stored=scaling is not None, cancel=cancelled):
            slices[index] = pixels if scaling is not None else compact_frame(pixels)
            self.cache.put(key, index, slices[index])
            done += 1
            yield Progress(0.9 * done / total, f"MPR: reading {done}/{total}")
        if any(s is None for s in slices):
            return None
        yield Progress(0.95, "MPR: building the volume")
        volume = mpr.build_volume(series, slices)
        if scaling is not None:
            # the slices are stored values: the volume keeps them and the one rescale
            volume = dataclasses.replace(volume, scale=scaling[0], offset=scaling[1])
        return volume

    def modality(self, series: Series, index: int) -> np.ndarray:
        return self.to_modality(series, self.load(series, index))

    def record_failure(self, key: str, index: int, reason: str) -> None:
        self._failures[(key, index)] = reason

    def frame_failure(self, key: str, index: int) -> str | None:
        """Why frame ``index`` cannot be shown, once a decode has failed."""
        return self._failures.get((key, index))

    def failure_sentence(self, key: str, index: int) -> str:
        """One plain sentence for an image that will not decode (the technical reason goes
        behind "Details"): what kind of data it is, and what the user still sees."""
        series = self._by_key[key]
        reason = self._failures.get((key, index), "")
        family = compression_family(series.frames[index].instance.transfer_syntax)
        others = series.frame_count - 1
        rest = (f"the other {others} image(s) of the series are shown" if others
                else "the series has no other image")
        if "no decoder" in reason or "unsupported" in reason:
            return f"This image is stored as {family}, which this installation cannot decode; {rest}."
        return f"The {family} data in this file is damaged; {rest}."

    def has_failed(self, key: str, index: int) -> bool:
        return (key, index) in self._failures

    def mark_loaded_if_complete(self, key: str) -> bool:
        if self.cache.count(key) == self.frame_count(key):
            self._loaded.add(key)
            return True
        return False

    def is_series_loaded(self, key: str) -> bool:
        return key in self._loaded or self.cache.count(key) == self.frame_count(key)

    def is_loaded(self, key: str) -> bool:
        return key in self._loaded

    def frame_info(self, key: str, index: int) -> dict:
        """What the viewport shows beside the pixels: spacing, window, inversion, units, corners."""
        series = self._by_key[key]
        frame = series.frames[index]
        cached = self.cache.get(key, index)
        scaling = self.scaling(series) or (1.0, 0.0)
        pixels = None
        if cached is not None:
            # the default window needs only the modality range, not a float copy of the frame
            pixels = cached if scaling == (1.0, 0.0) or cached.ndim == 3 else \
                np.array([cached.min(), cached.max()], dtype=np.float32) * np.float32(scaling[0]) + np.float32(scaling[1])
        if self.is_plain_image(key):
            return self._plain_frame_info(series, pixels)
        spacing = frame.pixel_spacing
        location = series.slice_location(index)
        patient = series.patient_name.replace("^", " ").strip() or "(no name)"
        birth = fmt_date(series.patient_birth_date)
        top_left = [patient, f"ID {series.patient_id}" if series.patient_id else "",
                    " ".join(x for x in (birth, series.patient_sex) if x)]
        top_right = [series.institution, series.study_description, fmt_date(series.study_date),
                     f"{series.modality} {series.description}".strip(),
                     f"Series {series.series_number}" if series.series_number else ""]
        bottom_left = [f"Image {index + 1} / {series.frame_count}"]
        if location is not None:
            bottom_left.append(f"Position {location:.1f} mm")
        if frame.slice_thickness:
            bottom_left.append(f"Thickness {frame.slice_thickness:g} mm")
        if spacing:
            bottom_left.append(f"Pixel {spacing[1]:.3g} x {spacing[0]:.3g} mm ({frame.spacing_source})")
        else:
            bottom_left.append("No pixel spacing: lengths in pixels")
        return {
            "pixel_spacing": spacing,
            "spacing_source": frame.spacing_source,
            "invert": series.photometric == "MONOCHROME1",
            "units": "HU" if series.modality == "CT" and not series.is_colour else "",
            "window": default_window(series, index, pixels),
            "voi_lut": self._file_voi_lut(series, index),
            "value_scale": scaling[0],
            "value_offset": scaling[1],
            "edges": frame_edge_letters(frame.orientation),
            "top_left": [line for line in top_left if line],
            "top_right": [line for line in top_right if line],
            "bottom_left": bottom_left,
        }

    @staticmethod
    def _plain_frame_info(series: Series, pixels: np.ndarray | None) -> dict:
        window = None
        if pixels is not None and pixels.ndim == 2:
            low, high = float(pixels.min()), float(pixels.max())
            window = ((low + high) / 2, max(high - low, 1.0))  # the file's own value range
        bits = series.first.bits_stored
        return {
            "pixel_spacing": None, "spacing_source": None, "invert": False, "units": "",
            "window": window, "voi_lut": None, "value_scale": 1.0, "value_offset": 0.0, "edges": None,
            "top_left": [f"{series.modality}, not DICOM"],
            "top_right": [series.description, f"{series.columns} x {series.rows}, "
                          f"{'RGB' if series.is_colour else f'{bits}-bit grey'}"],
            "bottom_left": ["No pixel spacing: measurements in pixels"],
        }

    def _file_voi_lut(self, series: Series, index: int):
        """The frame's VOI LUT Sequence as a pixels -> uint8 function, when it has one and no
        window (the file's LUT is then the default display)."""
        frame = series.frames[index]
        if frame.voi_lut_dataset is None or frame.window_centers:
            return None
        invert = series.photometric == "MONOCHROME1"
        scaling = self.scaling(series)

        def apply(pixels: np.ndarray) -> np.ndarray:
            if scaling is not None:
                pixels = pixels.astype(np.float32) * np.float32(scaling[0]) + np.float32(scaling[1])
            out = np.floor(_display().apply_voi_lut_sequence(pixels, frame.voi_lut_dataset) + 0.5).astype(np.uint8)
            return 255 - out if invert else out

        return apply

    def window_presets(self, key: str) -> list[tuple[str, float, float]]:
        """The file's own windows, then the modality's presets: (name, centre, width)."""
        series = self._by_key.get(key)
        if series is None or series.is_colour:
            return []
        windows = _display().windows_from_file(series.frames[0]) + list(_display().presets_for(series.modality).values())
        return [(w.label, float(w.center), float(w.width)) for w in windows]

    def frame_rate(self, key: str) -> float | None:
        """Frames per second the file asks cine to play at (Cine Rate, Recommended Display
        Frame Rate, else 1000 / Frame Time), or None."""
        series = self._by_key.get(key)
        if series is None:
            return None
        header = series.first.header
        for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
            try:
                value = float(header.get(keyword, 0) or 0)
            except (TypeError, ValueError):
                continue
            if 0 < value <= 1000:
                return value
        try:
            frame_time = float(header.get("FrameTime", 0) or 0)
        except (TypeError, ValueError):
            return None
        return 1000.0 / frame_time if frame_time > 0 else None

    # ----------------------------------------------------------------- sync
    def sync_relation(self, source_key: str, target_key: str) -> tuple[bool, str]:
        """Whether scrolling ``source_key`` moves ``target_key`` (True for the same series, or
        another series of the same frame of reference with parallel slices), and why, in
        words the viewport shows."""
        source, target = self._by_key.get(source_key), self._by_key.get(target_key)
        if source is None or target is None:
            return False, "nothing to synchronise"
        if source_key == target_key:
            return True, "same series"
        if not source.frame_of_reference_uid or not target.frame_of_reference_uid:
            return False, "no frame of reference"
        if source.frame_of_reference_uid != target.frame_of_reference_uid:
            return False, "other frame of reference"
        normal, other = source.frames[0].normal, target.frames[0].normal
        if normal is None or other is None:
            return False, "no slice geometry"
        if abs(float(np.dot(normal, other))) < 0.99:
            return False, "slices not parallel"
        return True, "same frame of reference"

    def matching_index(self, source_key: str, source_index: int, target_key: str) -> int | None:
        """The slice of ``target_key`` nearest in space to ``source_index`` of ``source_key``:
        ImagePositionPatient of both projected on the target's slice normal, so series with
        other spacing, extent or slice order land on the same anatomy (not the same index).
        None unless ``sync_relation`` allows it."""
        synced, _why = self.sync_relation(source_key, target_key)
        if not synced:
            return None
        if source_key == target_key:
            return source_index
        source, target = self._by_key[source_key], self._by_key[target_key]
        src = source.frames[source_index]
        normal = target.frames[0].normal
        if src.position is None:
            return None
        positions = self._projected_positions(target, normal)
        if not np.isfinite(positions).any():
            return None
        wanted = float(np.dot(np.asarray(src.position, dtype=float), normal))
        return int(np.argmin(np.abs(positions - wanted)))

    def _projected_positions(self, series: Series, normal: np.ndarray) -> np.ndarray:
        """Each slice's ImagePositionPatient along ``normal`` (inf where a slice has none);
        kept per series, as scrolling asks for it at every step."""
        cache = self._positions_along_normal
        known = cache.get(series.key)
        if known is None or not np.array_equal(known[0], normal):
            values = np.array([float(np.dot(np.asarray(f.position, dtype=float), normal)) if f.position else np.inf
                               for f in series.frames])
            known = cache[series.key] = (np.array(normal), values)
        return known[1]

    # ------------------------------------------------------------------ MPR
    def mpr_volume(self, key: str) -> tuple[Any, dict] | None:
        if self._mpr is not None and self._mpr[0] == key:
            return self._mpr[1], self._mpr_meta(key, self._mpr[2])
        return None

    def keep_mpr_volume(self, key: str, volume) -> tuple[Any, dict]:
        """Keep the one MPR volume; its meta carries the series' W/L and the user's inversion
        ("inverted", on top of the photometric "invert") as the user left them."""
        series = self._by_key[key]
        middle = series.frame_count // 2
        meta = {"description": f"{series.modality} {series.description}".strip(),
                "units": "HU" if series.modality == "CT" else "",
                "window": default_window(series, middle, self.cached_frame(key, middle)),
                "invert": series.photometric == "MONOCHROME1",
                "notes": list(getattr(volume, "notes", []))}
        self._mpr = (key, volume, meta)
        return volume, self._mpr_meta(key, meta)

    def _mpr_meta(self, key: str, meta: dict) -> dict:
        state = self.display_state(key)
        window = state.window or meta["window"]
        return {**meta, "window": window, "inverted": state.inverted, "key": key}

    # --------------------------------------------------------- measurements
    def studies_to_read(self, series: Iterable[Series]) -> list[str]:
        """Studies whose saved measurements are not in the session yet."""
        return [uid for uid in dict.fromkeys(s.study_uid for s in series) if uid not in self._studies_loaded]

    def merge_saved(self, saved: list[SavedMeasurements]) -> None:
        """Add what read_saved_measurements found (once per study), telling the user of damage."""
        for study in saved:
            if study.study_uid in self._studies_loaded:
                continue
            self._studies_loaded.add(study.study_uid)
            if study.error:
                self.events.message.emit("warning", f"Saved measurements for this study could not be read "
                                                    f"({study.error}); starting empty.")
                continue
            if study.dropped:
                self.events.message.emit("warning", f"{study.dropped} saved measurement(s) of this study were "
                                                    "damaged and left out.")
            for record in study.records:
                self._measurements[record["id"]] = record
        self.events.measurements_changed.emit()

    def _save_study(self, study_uid: str) -> None:
        """Autosave, written atomically on a worker thread: a slow disk's fsync never stalls the
        hand dragging a caliper (``flush_saves`` waits for it)."""
        kept = [m for m in self._measurements.values() if m.get("study_uid") == study_uid]
        text = measure.measurements_to_json([measure.Measurement.from_dict(m) for m in kept])
        self._saver.write(measurement_file(self.measurement_folder, study_uid), text, on_error=self._save_failed)

    def _save_failed(self, path, exc: OSError) -> None:
        self.events.message.emit("error", f"Measurements could not be saved: {exc.strerror or exc}")

    def flush_saves(self, timeout: float | None = 10.0) -> bool:
        """Wait until the measurements autosaved so far are on disk."""
        return self._saver.flush(timeout)

    def _locate(self, record: dict) -> tuple[str, int] | None:
        for series in self.series:
            if series.series_uid != record.get("series_uid"):
                continue
            for index, frame in enumerate(series.frames):
                if frame.instance.sop_instance_uid == record["sop_instance_uid"] and frame.frame_index == record.get("frame_index", 0):
                    return series.key, index
        return None

    def measurement_location(self, measurement_id: str) -> tuple[str, int] | None:
        record = self._measurements.get(measurement_id)
        return None if record is None else self._locate(record)

    def _compute(self, series: Series, index: int, kind: str, points: list) -> tuple[dict, str]:
        frame = series.frames[index]
        pixels = self.modality(series, index)
        values, text = measure.describe_measurement(kind, points, pixels, frame.pixel_spacing, frame.spacing_source,
                                                    "HU" if series.modality == "CT" else "")
        source = values.get("spacing_source")
        if kind == "distance" and source and source not in text:
            text += f" ({source})"  # the user must know which spacing a length rests on
        return values, text

    def add_measurement(self, key: str, index: int, kind: str, points: list) -> str | None:
        """Measure on image ``index`` of ``key``, keep and save it; None (and a message) when
        it cannot be measured."""
        series = self._by_key[key]
        try:
            values, text = self._compute(series, index, kind, points)
        except UserFacingError as exc:
            self.events.message.emit("warning", str(exc))
            return None
        frame = series.frames[index]
        number = 1 + sum(1 for m in self._measurements.values() if m["kind"] == kind)
        record = {
            "id": uuid.uuid4().hex[:12],
            "kind": kind,
            "label": f"{kind.title()} {number}",
            "points": [[float(x), float(y)] for x, y in points],
            "values": values,
            "text": text,
            "study_uid": series.study_uid,
            "series_uid": series.series_uid,
            "sop_instance_uid": frame.instance.sop_instance_uid,
            "frame_index": frame.frame_index,
        }
        self._measurements[record["id"]] = record
        self._save_study(series.study_uid)
        self.events.measurements_changed.emit()
        return record["id"]

    def move_measurement(self, measurement_id: str, points: list) -> None:
        record = self._measurements.get(measurement_id)
        where = None if record is None else self._locate(record)
        if where is None:
            return
        series = self._by_key[where[0]]
        try:
            values, text = self._compute(series, where[1], record["kind"], points)
        except UserFacingError as exc:
            self.events.message.emit("warning", str(exc))
            return
        record.update(points=[[float(x), float(y)] for x, y in points], values=values, text=text)
        self._save_study(record["study_uid"])
        self.events.measurements_changed.emit()

    def rename_measurement(self, measurement_id: str, label: str) -> None:
        record = self._measurements.get(measurement_id)
        if record is not None and record["label"] != label:
            record["label"] = label.strip() or record["label"]
            self._save_study(record["study_uid"])
            self.events.measurements_changed.emit()

    def delete_measurements(self, ids: list[str]) -> None:
        studies = {self._measurements[i]["study_uid"] for i in ids if i in self._measurements}
        for measurement_id in ids:
            self._measurements.pop(measurement_id, None)
        for study in studies:
            self._save_study(study)
        self.events.measurements_changed.emit()

    def measurements_for(self, key: str, index: int) -> list[dict]:
        series = self._by_key.get(key)
        if series is None:
            return []
        frame = series.frames[index]
        return [
            {"id": m["id"], "kind": m["kind"], "points": m["points"], "text": f"{m['label']}\n{m['text']}"}
            for m in self._measurements.values()
            if m["sop_instance_uid"] == frame.instance.sop_instance_uid and m.get("frame_index", 0) == frame.frame_index
            and m["series_uid"] == series.series_uid
        ]

    def measurement_rows(self) -> list[dict]:
        rows = []
        for record in self._measurements.values():
            where = self._locate(record)
            image = "not open" if where is None else f"{self._by_key[where[0]].description or 'series'} #{where[1] + 1}"
            rows.append({"id": record["id"], "label": record["label"], "kind": record["kind"],
                         "value": record["text"].replace("\n", "; "), "image": image})
        return rows

    def measurement_records(self) -> list[dict]:
        return [dict(m) for m in self._measurements.values()]
