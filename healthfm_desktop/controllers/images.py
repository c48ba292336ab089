"""Images workspace controller: imports DICOM on workers (index, then first image, thumbnails
and the rest of the series in the background), holds the open series, the current image and
the measurements (saved per study next to the user data), and runs MPR, tag reading and
exports on workers. Views get plain values and signals; the DICOM work is in core.imaging."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import sys
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QBuffer, QIODevice, Signal
from PySide6.QtGui import QImage

from healthfm_desktop.controllers.base import WorkspaceController
from healthfm_desktop.controllers.workers import AppWidePool, Progress
from healthfm_desktop.core.errors import UserFacingError
from healthfm_desktop.core.imaging import measure
from healthfm_desktop.core.paths import user_data_dir
from healthfm_desktop.core.routing import IMAGES
from healthfm_desktop.core.storage.atomic import atomic_write_bytes, atomic_write_text


if TYPE_CHECKING:
    from healthfm_desktop.core.imaging.series import Series


_gc_pauses = 0
_gc_lock = threading.Lock()


@contextlib.contextmanager
def _collector_paused():
    """Indexing creates hundreds of thousands of small header objects that live as long as
    the series is open. Python's full collections walk all of them every time their number
    grows by a quarter, holding the GIL for 100-300 ms each: the UI freezes while a folder is
    indexed. So the collector pauses while indexing, and what indexing made is then frozen
    (moved out of the collector's sight; reference counting still frees it)."""
    global _gc_pauses
    with _gc_lock:
        _gc_pauses += 1
        if _gc_pauses == 1:
            gc.disable()
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0:
                gc.freeze()
                gc.enable()


def _decode_pool_needs_start(parallel_decode) -> bool:
    pool = parallel_decode.shared_pool()
    return pool is None or not pool.ready


# decode workers (a fork server importing pydicom, then two forks); a scan hands files to them
# once they answer
DECODE_POOL = AppWidePool("decode workers", "healthfm_desktop.core.imaging.parallel_decode",
                          _decode_pool_needs_start, start="warm_shared_pool", stop="shutdown_shared_pool")


def _display():
    """core.imaging.display, imported on first use: it pulls in pydicom (about half a second),
    which the app's start does not need to wait for."""
    from healthfm_desktop.core.imaging import display

    return display

log = logging.getLogger(__name__)

THUMBNAIL_PIXELS = 128
FRAME_CACHE_BYTES = 1536 * 1024**2


class _FrameCache:
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


_POINT_COUNTS = {"distance": 2, "angle": 3, "rectangle": 2, "ellipse": 2}


def measurement_records_from_json(text: str) -> tuple[list[dict], int]:
    """Measurements saved with a study (core.measure's JSON) as the controller's records, each
    with a fresh session id; damaged entries are left out and counted, never raised."""
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


def _fmt_date(value: str) -> str:
    return f"{value[0:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 and value.isdigit() else value


def thumbnail_pixels(pixels: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """A small uint8 picture of a frame with its default window (for the series browser)."""
    step = max(1, int(np.ceil(max(pixels.shape[:2]) / THUMBNAIL_PIXELS)))
    small = pixels[::step, ::step]
    if small.ndim == 3 and small.dtype == np.uint8:
        return np.ascontiguousarray(small)
    return np.ascontiguousarray(_display().render_uint8(small, _display().Window(*window) if window else None))


class ImagesController(WorkspaceController):
    name = IMAGES
    title = "Images"

    series_changed = Signal()
    frame_ready = Signal(str, int)  # series key, index: decoded and cached
    thumbnail_ready = Signal(str, object)  # series key, uint8 HxW or HxWx3
    unreadable_changed = Signal(list)  # [(path, reason)] of every import so far
    notes_changed = Signal(list)  # [str]
    measurements_changed = Signal()
    mpr_ready = Signal(object, dict)  # volume for the MPR view, {description, units, window, invert, notes}
    mpr_failed = Signal(str)  # why this series cannot be reformatted
    tags_ready = Signal(str, list)  # title, elements
    #: the image the user looks at changed: series key, index (for the AI panel and others)
    current_image_changed = Signal(str, int)
    status = Signal(str)
    #: the first image found, shown while the rest is indexed: pixels (modality units), info
    preview_ready = Signal(object, dict)
    show_requested = Signal(str)  # series key the user asked for again (re-opened)
    import_finished = Signal(dict)  # {series, frames, rejected, cancelled, seconds}
    series_loaded = Signal(str)  # every frame of the series is decoded
    frame_failed = Signal(str, int, str)  # series key, index, why it cannot be shown

    # emitted from worker threads (queued to the UI thread by Qt)
    _decoded = Signal(str, int)
    _failed = Signal(str, int, str)
    _scan_step = Signal(int, int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.series: list[Series] = []
        self.unreadable: list[tuple[str, str]] = []
        self.notes: list[str] = []
        self._by_key: dict[str, Series] = {}
        self._cache = _FrameCache()
        self._pending: set[tuple[str, int]] = set()
        self._failures: dict[tuple[str, int], str] = {}
        self._scalings: dict[str, tuple[float, float] | None] = {}
        self._prefetching: set[str] = set()
        self._loaded: set[str] = set()
        # one event per running job: Cancel sets them all, a new job starts with a fresh one
        self._cancel_events: set[threading.Event] = set()
        self._scan_jobs: set = set()
        self._current: tuple[str, int] | None = None
        self._measurements: dict[str, dict] = {}  # id -> record
        self._studies_loaded: set[str] = set()
        self._mpr_cache: dict[str, Any] = {}
        self._positions_along_normal: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # for sync
        self._anonymiser = None  # core.imaging.anonymise.Anonymiser of this session's exports
        self._decoded.connect(self._on_decoded)
        self._failed.connect(self._on_failed)
        DECODE_POOL.stop_when_the_app_quits()
        self._scan_step.connect(lambda done, total: self.progress.emit(
            Progress(done / max(total, 1), f"Indexing {done}/{total} files")))
        # the decode workers start now, in their own processes, so the first import does not pay
        # for them (0.1-0.3 s on an idle machine, 1-3 s on a loaded one: measured, it made the
        # first open 1.6x the plain pydicom loop instead of 0.5x); ~50 MB each, shared pages
        DECODE_POOL.start()

    # ------------------------------------------------------------------ import
    def open_paths(self, paths: list[Path]) -> None:
        """Index the paths on a worker; the first series' first image is requested as soon as
        the index is ready, the rest decodes in the background."""
        self.status.emit(f"Reading {len(paths)} item(s)…")
        started = time.perf_counter()
        DECODE_POOL.start()  # again, if it was shut down since
        cancel = self._new_cancel_event()
        job = self.start_job(self._scan, [Path(p) for p in paths], cancel,
                             on_result=lambda result: self._on_scanned(result, started))
        self._scan_jobs.add(job)
        job.finished.connect(lambda: (self._scan_jobs.discard(job), self._cancel_events.discard(cancel)))

    def _scan(self, paths: list[Path], cancel: threading.Event):
        from healthfm_desktop.core.imaging.scanning import scan_paths

        self._emit_preview(paths, cancel)
        ahead = self._decode_ahead()
        with _collector_paused():
            result = scan_paths(paths, progress=self._paced_scan_step(),
                                cancel=cancel.is_set, decode_ahead=ahead)
        return self._with_plain_images(result)

    @staticmethod
    def _with_plain_images(result):
        """PNG / JPEG files the DICOM scan turned down open as plain one-frame images."""
        from healthfm_desktop.core.imaging.plain_images import open_rejected_plain_images

        plain, result.rejected = open_rejected_plain_images(result.rejected)
        result.series.extend(plain)
        return result

    def image_notice(self, key: str) -> str | None:
        """A notice the viewport shows over the image itself (a PNG / JPEG is not DICOM)."""
        from healthfm_desktop.core.imaging.plain_images import NOT_DICOM_NOTE

        return NOT_DICOM_NOTE if self.is_plain_image(key) else None

    def is_plain_image(self, key: str) -> bool:
        """True for a PNG / JPEG image (no patient, geometry or spacing: measurements in px)."""
        from healthfm_desktop.core.imaging.plain_images import is_plain_image

        return is_plain_image(self._by_key.get(key))

    def _paced_scan_step(self):
        """A progress callback for the scan that signals the UI at most every 50 ms: a signal per
        file had the indexing thread wait on the UI thread (measured: 2/3 of a 140-file scan)."""
        last = [0.0]

        def step(done: int, total: int) -> None:
            now = time.perf_counter()
            if done == total or now - last[0] >= 0.05:
                last[0] = now
                self._scan_step.emit(done, total)

        return step

    @staticmethod
    def _decode_ahead():
        """Decode-ahead for a scan when the decode workers are up (else None: the series then
        decodes after indexing, in the pool if it is up by then)."""
        from healthfm_desktop.core.imaging.parallel_decode import DecodeAhead, shared_pool

        pool = shared_pool()
        return DecodeAhead(pool) if pool is not None else None

    def _drop_decoded_ahead(self) -> None:
        """Cancel decoding queued while indexing, and let go of pixels nobody asked for yet."""
        from healthfm_desktop.core.imaging.parallel_decode import take_pending  # loaded by __init__

        for series in self.series:
            for frame in series.frames:
                future = take_pending(frame.instance)
                if future is not None:
                    future.cancel()

    def _emit_preview(self, paths: list[Path], cancel: threading.Event) -> None:
        """Decode the first readable image found and show it while the rest is indexed (a
        folder of a thousand slices takes seconds to index; one image takes milliseconds).
        Whatever goes wrong here is left to the full scan to report."""
        from healthfm_desktop.core.imaging.scanning import build_series, expand_paths, index_object

        try:
            sources, _, _ = expand_paths(paths)
            for source in sources[:3]:
                if cancel.is_set():
                    return
                try:
                    series = build_series([index_object(source)])[0][0]
                    pixels = series.load_frame(0)
                except Exception:  # noqa: BLE001 - the scan reports this file properly
                    continue
                window = default_window(series, 0, pixels)
                patient = series.patient_name.replace("^", " ").strip()
                self.preview_ready.emit(pixels, {
                    "pixel_spacing": series.frames[0].pixel_spacing,
                    "invert": series.photometric == "MONOCHROME1",
                    "units": "HU" if series.modality == "CT" and not series.is_colour else "",
                    "window": window,
                    "top_left": [patient] if patient else [],
                    "top_right": [f"{series.modality} {series.description}".strip()],
                    "bottom_left": ["Indexing the files…"],
                })
                return
        except Exception:  # noqa: BLE001 - a preview must never break an import
            log.debug("no preview", exc_info=True)

    def _new_cancel_event(self) -> threading.Event:
        event = threading.Event()
        self._cancel_events.add(event)
        return event

    def cancel_jobs(self) -> None:
        """Cancel: indexing stops and keeps what it found so far; decoding, thumbnails and MPR
        stop at their next step."""
        for event in list(self._cancel_events):
            event.set()
        if "healthfm_desktop.core.imaging.parallel_decode" in sys.modules:
            self._drop_decoded_ahead()
        for job in list(self._jobs):
            if job not in self._scan_jobs:
                job.cancel()

    def _on_scanned(self, result, started: float) -> None:
        known = {s.key for s in self.series}
        added = [s for s in result.series if s.key not in known]
        for series in added:
            self.series.append(series)
            self._by_key[series.key] = series
            self._load_study_measurements(series)
        self.unreadable.extend(result.rejected)
        self.notes.extend(result.notes)
        self.unreadable_changed.emit(list(self.unreadable))
        self.notes_changed.emit(list(self.notes))
        frames = sum(s.frame_count for s in added)
        summary = {"series": len(added), "frames": frames, "rejected": len(result.rejected),
                   "cancelled": result.cancelled, "seconds": time.perf_counter() - started}
        already = [s for s in result.series if s.key in known]
        text = f"{len(added)} series, {frames} image(s) opened"
        if already and not added:
            text = f"Already open: {len(already)} series"
        if result.rejected:
            text += f"; {len(result.rejected)} file(s) could not be read (see Unreadable files)"
        split = len({s.series_uid for s in added if s.stack_count > 1})
        if split:
            text += f"; {split} series split into consistent stacks (mixed sizes or orientations, see the notes)"
        if result.cancelled:
            text += "; import cancelled"
        self.status.emit(text)
        if result.rejected and not added:
            self.message.emit("warning", f"No image could be read: {len(result.rejected)} file(s) rejected "
                                         "(see the Unreadable files panel).")
        if added:
            # the first image first: the view asks for it when it sees the new series
            self.series_changed.emit()
            cancel = self._new_cancel_event()
            thumbnails = self.start_job(self._make_thumbnails, added, cancel)
            thumbnails.finished.connect(lambda: self._cancel_events.discard(cancel))
            self._prefetch(added[0].key)
        elif already:
            self.show_requested.emit(already[0].key)
        self.measurements_changed.emit()
        self.import_finished.emit(summary)

    def clear_unreadable(self) -> None:
        """Forget the list of files that could not be read (and the import notes)."""
        self.unreadable.clear()
        self.notes.clear()
        self.unreadable_changed.emit([])
        self.notes_changed.emit([])

    def _make_thumbnails(self, series_list: list[Series], cancel: threading.Event):
        for series in series_list:
            if cancel.is_set():
                return
            index = series.frame_count // 2
            try:
                pixels = self._modality(series, index)
            except UserFacingError:
                continue
            self.thumbnail_ready.emit(series.key, thumbnail_pixels(pixels, default_window(series, index, pixels)))
            yield Progress(None, "Making thumbnails")

    # ------------------------------------------------------------------ frames
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
        parts = [patient, series.study_description or "Study", _fmt_date(series.study_date)]
        return " · ".join(part for part in parts if part)

    def series_by_key(self, key: str) -> Series:
        return self._by_key[key]

    def frame_count(self, key: str) -> int:
        series = self._by_key.get(key)
        return 0 if series is None else series.frame_count

    def _scaling(self, series: Series) -> tuple[float, float] | None:
        if series.key not in self._scalings:
            self._scalings[series.key] = stored_scaling(series)
        return self._scalings[series.key]

    def display_frame(self, key: str, index: int) -> tuple[np.ndarray, float, float] | None:
        """What a viewport draws: (pixels, scale, offset) with modality value = pixels * scale
        + offset (stored integers for rescaled series, else the values themselves), or None
        while the frame is not decoded yet."""
        pixels = self._cache.get(key, index)
        if pixels is None:
            return None
        scaling = self._scaling(self._by_key[key])
        return (pixels, *scaling) if scaling else (pixels, 1.0, 0.0)

    def cached_frame(self, key: str, index: int) -> np.ndarray | None:
        """Frame ``index`` in modality units if it is decoded already, else None."""
        series = self._by_key.get(key)
        pixels = None if series is None else self._cache.get(key, index)
        return None if pixels is None else self._to_modality(series, pixels)

    def _to_modality(self, series: Series, pixels: np.ndarray) -> np.ndarray:
        scaling = self._scaling(series)
        if scaling is None:
            return pixels
        values = pixels.astype(np.float32)
        values *= np.float32(scaling[0])
        values += np.float32(scaling[1])
        return values

    def _cacheable(self, series: Series, index: int, stored: np.ndarray | None = None, values: np.ndarray | None = None) -> np.ndarray:
        """The array the cache keeps for a frame: stored values for rescaled series, else the
        modality values (int16 when whole numbers)."""
        if self._scaling(series) is not None:
            return stored if stored is not None else series.load_stored(index)
        return compact_frame(values if values is not None else series.to_modality(index, stored))

    def _load(self, series: Series, index: int) -> np.ndarray:
        """The cached array of a frame, decoding it (on the calling thread) if needed."""
        pixels = self._cache.get(series.key, index)
        if pixels is None:
            pixels = self._cacheable(series, index, stored=series.load_stored(index))
            self._cache.put(series.key, index, pixels)
        return pixels

    def _modality(self, series: Series, index: int) -> np.ndarray:
        return self._to_modality(series, self._load(series, index))

    def request_frame(self, key: str, index: int) -> None:
        """Decode one frame on a worker (the view shows it on ``frame_ready``)."""
        if (key, index) in self._pending or key not in self._by_key or (key, index) in self._failures:
            return
        self._pending.add((key, index))
        series = self._by_key[key]

        def decode() -> tuple[str, int]:
            self._load(series, index)
            return key, index

        self.start_job(decode, on_result=lambda r: self._on_decoded(*r),
                       on_error=lambda text, key=key, index=index: self._on_failed(key, index, text))
        self._prefetch(key)

    def _prefetch(self, key: str) -> None:
        """Decode the whole series in the background (both cores), so scrolling is instant."""
        if key in self._prefetching or key in self._loaded:
            return
        self._prefetching.add(key)
        series = self._by_key[key]
        cancel = self._new_cancel_event()

        def decode_all():
            total = series.frame_count
            missing = [i for i in range(total) if self._cache.get(key, i) is None]
            done = total - len(missing)
            failures: dict[int, str] = {}
            stored = self._scaling(series) is not None
            iterator = series.iter_frames(missing, stored=stored, cancel=cancel.is_set)
            while not cancel.is_set():
                try:
                    index, pixels = next(iterator)
                except StopIteration:
                    break
                except UserFacingError:
                    # one undecodable object: go on frame by frame so the others still load
                    for index in missing:
                        if cancel.is_set():
                            break
                        if self._cache.get(key, index) is not None or index in failures:
                            continue
                        try:
                            self._load(series, index)
                        except UserFacingError as exc:
                            failures[index] = str(exc)
                            self._failed.emit(key, index, str(exc))
                        else:
                            self._decoded.emit(key, index)
                        done += 1
                        yield Progress(done / total, f"Loading {series.description or 'series'} {done}/{total}")
                    break
                self._cache.put(key, index, pixels if stored else compact_frame(pixels))
                self._decoded.emit(key, index)
                done += 1
                yield Progress(done / total, f"Loading {series.description or 'series'} {done}/{total}")
            return key, failures

        def finished(result) -> None:
            if result is None:
                return
            _, failures = result
            if failures:
                first = min(failures)
                self.message.emit("warning", f"{len(failures)} of {series.frame_count} image(s) of "
                                             f"{series.description or 'the series'} could not be decoded "
                                             f"(image {first + 1}: {failures[first]}).")
            elif self._cache.count(key) == series.frame_count:
                self._loaded.add(key)
                self.series_loaded.emit(key)

        def done() -> None:  # after a result, an error or a cancel alike
            self._prefetching.discard(key)
            self._cancel_events.discard(cancel)

        job = self.start_job(decode_all, on_result=finished)
        job.finished.connect(done)

    def _on_failed(self, key: str, index: int, reason: str) -> None:
        self._pending.discard((key, index))
        self._failures[(key, index)] = reason
        self.frame_failed.emit(key, index, reason)

    def frame_failure(self, key: str, index: int) -> str | None:
        """Why frame ``index`` cannot be shown, once a decode has failed."""
        return self._failures.get((key, index))

    def _on_decoded(self, key: str, index: int) -> None:
        self._pending.discard((key, index))
        self.frame_ready.emit(key, index)
        if self._current == (key, index):
            self.current_image_changed.emit(key, index)

    def is_series_loaded(self, key: str) -> bool:
        return key in self._loaded or self._cache.count(key) == self.frame_count(key)

    def frame_info(self, key: str, index: int) -> dict:
        """What the viewport shows beside the pixels: spacing, window, inversion, units, corners."""
        series = self._by_key[key]
        frame = series.frames[index]
        cached = self._cache.get(key, index)
        scaling = self._scaling(series) or (1.0, 0.0)
        pixels = None
        if cached is not None:
            # the default window needs only the modality range, not a float copy of the frame
            pixels = cached if scaling == (1.0, 0.0) or cached.ndim == 3 else \
                np.array([cached.min(), cached.max()], dtype=np.float32) * np.float32(scaling[0]) + np.float32(scaling[1])
        spacing = frame.pixel_spacing
        location = series.slice_location(index)
        if self.is_plain_image(key):
            return self._plain_frame_info(series, pixels)
        patient = series.patient_name.replace("^", " ").strip() or "(no name)"
        birth = _fmt_date(series.patient_birth_date)
        top_left = [patient, f"ID {series.patient_id}" if series.patient_id else "",
                    " ".join(x for x in (birth, series.patient_sex) if x)]
        top_right = [series.institution, series.study_description, _fmt_date(series.study_date),
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
            "window": window, "voi_lut": None, "value_scale": 1.0, "value_offset": 0.0,
            "top_left": [f"{series.modality}, not DICOM"],
            "top_right": [series.description, f"{series.columns} x {series.rows}, "
                          f"{'RGB' if series.is_colour else f'{bits}-bit grey'}"],
            "bottom_left": ["No pixel spacing: measurements in pixels"],
        }

    @staticmethod
    def _scaling_of(series: Series) -> tuple[float, float] | None:
        return stored_scaling(series)

    @staticmethod
    def _file_voi_lut(series: Series, index: int):
        """The frame's VOI LUT Sequence as a pixels -> uint8 function, when it has one and no
        window (the file's LUT is then the default display)."""
        frame = series.frames[index]
        if frame.voi_lut_dataset is None or frame.window_centers:
            return None
        invert = series.photometric == "MONOCHROME1"

        scaling = ImagesController._scaling_of(series)

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

    @staticmethod
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

    # ---------------------------------------------------------- current image
    def set_current(self, key: str, index: int) -> None:
        if self._current == (key, index):
            return
        self._current = (key, index)
        if self._cache.get(key, index) is not None:
            self.current_image_changed.emit(key, index)
        # else: emitted by _on_decoded when the pixels are there

    def current_series(self) -> Series | None:
        return None if self._current is None else self._by_key.get(self._current[0])

    def current_index(self) -> int:
        return -1 if self._current is None else self._current[1]

    def current_frame(self) -> np.ndarray | None:
        """Pixels of the current image (modality units, or uint8 RGB), decoding if needed."""
        series = self.current_series()
        if series is None:
            return None
        return self._modality(series, self._current[1])

    # ----------------------------------------------------------- measurements
    def _measurement_file(self, study_uid: str) -> Path:
        safe = "".join(ch if ch.isalnum() or ch in ".-" else "_" for ch in study_uid)[:120]
        return user_data_dir() / "measurements" / f"{safe}.json"

    def _load_study_measurements(self, series: Series) -> None:
        if series.study_uid in self._studies_loaded:
            return
        self._studies_loaded.add(series.study_uid)
        path = self._measurement_file(series.study_uid)
        if not path.exists():
            return
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.message.emit("warning", f"Saved measurements for this study could not be read ({exc}); starting empty.")
            return
        records, dropped = measurement_records_from_json(text)
        if dropped:
            self.message.emit("warning", f"{dropped} saved measurement(s) of this study were damaged and left out.")
        for record in records:
            self._measurements[record["id"]] = record

    def _save_study(self, study_uid: str) -> None:
        kept = [m for m in self._measurements.values() if m.get("study_uid") == study_uid]
        text = measure.measurements_to_json([measure.Measurement.from_dict(m) for m in kept])
        try:
            atomic_write_text(self._measurement_file(study_uid), text)
        except OSError as exc:
            self.message.emit("error", f"Measurements could not be saved: {exc.strerror or exc}")

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
        pixels = self._modality(series, index)
        values, text = measure.describe_measurement(kind, points, pixels, frame.pixel_spacing, frame.spacing_source,
                                                    "HU" if series.modality == "CT" else "")
        source = values.get("spacing_source")
        if kind == "distance" and source and source not in text:
            text += f" ({source})"  # the user must know which spacing a length rests on
        return values, text

    def add_measurement(self, key: str, index: int, kind: str, points: list) -> str | None:
        series = self._by_key[key]
        try:
            values, text = self._compute(series, index, kind, points)
        except UserFacingError as exc:
            self.message.emit("warning", str(exc))
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
        self.measurements_changed.emit()
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
            self.message.emit("warning", str(exc))
            return
        record.update(points=[[float(x), float(y)] for x, y in points], values=values, text=text)
        self._save_study(record["study_uid"])
        self.measurements_changed.emit()

    def rename_measurement(self, measurement_id: str, label: str) -> None:
        record = self._measurements.get(measurement_id)
        if record is not None and record["label"] != label:
            record["label"] = label.strip() or record["label"]
            self._save_study(record["study_uid"])
            self.measurements_changed.emit()

    def delete_measurements(self, ids: list[str]) -> None:
        studies = {self._measurements[i]["study_uid"] for i in ids if i in self._measurements}
        for measurement_id in ids:
            self._measurements.pop(measurement_id, None)
        for study in studies:
            self._save_study(study)
        self.measurements_changed.emit()

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

    # -------------------------------------------------------------------- MPR
    def request_mpr(self, key: str) -> None:
        series = self._by_key.get(key)
        if series is None:
            return
        if key in self._mpr_cache:
            volume, meta = self._mpr_cache[key]
            self.mpr_ready.emit(volume, meta)
            return
        cancel = self._new_cancel_event()

        def build():
            from healthfm_desktop.core.imaging import mpr

            total = series.frame_count
            slices: list[np.ndarray | None] = [None] * total
            missing = []
            for i in range(total):
                cached = self._cache.get(key, i)
                if cached is None:
                    missing.append(i)
                else:
                    slices[i] = cached
            done = total - len(missing)
            scaling = self._scaling(series)
            for index, pixels in series.iter_frames(missing, stored=scaling is not None, cancel=cancel.is_set):
                slices[index] = pixels if scaling is not None else compact_frame(pixels)
                self._cache.put(key, index, slices[index])
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

        def ready(volume) -> None:
            if volume is None:
                return
            meta = {"description": f"{series.modality} {series.description}".strip(),
                    "units": "HU" if series.modality == "CT" else "",
                    "window": default_window(series, series.frame_count // 2, self.cached_frame(key, series.frame_count // 2)),
                    "invert": series.photometric == "MONOCHROME1",
                    "notes": list(getattr(volume, "notes", []))}
            self._mpr_cache.clear()  # one volume at a time keeps memory bounded
            self._mpr_cache[key] = (volume, meta)
            self.mpr_ready.emit(volume, meta)

        job = self.start_job(build, on_result=ready, on_error=self.mpr_failed.emit)
        job.finished.connect(lambda: self._cancel_events.discard(cancel))

    # ------------------------------------------------------------------- tags
    def request_tags(self, key: str, index: int) -> None:
        series = self._by_key.get(key)
        if series is None:
            return
        instance = series.frames[index].instance

        def read():
            from healthfm_desktop.core.imaging import tags

            return tags.element_tree(instance.header)

        title = f"{instance.source.path.name if not instance.source.member else instance.source.member} — image {index + 1}"
        self.start_job(read, on_result=lambda elements: self.tags_ready.emit(title, elements))

    # ----------------------------------------------------------------- export
    def save_png(self, image: QImage, path: Path) -> None:
        buffer = QBuffer()
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        if not image.save(buffer, "PNG"):
            self.message.emit("error", "The view could not be encoded as PNG.")
            return
        try:
            atomic_write_bytes(path, bytes(buffer.data()))
        except OSError as exc:
            self.message.emit("error", f"Could not save {path.name}: {exc.strerror or exc}")
            return
        self.status.emit(f"Saved {path}")

    def burned_in_reason(self, key: str) -> str | None:
        """Why the series may show burned-in identifying text (its headers say so, or its
        modality / SOP class usually does), or None: the view asks before exporting it."""
        from healthfm_desktop.core.imaging.anonymise import series_burned_in_risk

        series = self._by_key.get(key)
        return None if series is None or self.is_plain_image(key) else series_burned_in_risk(series)

    def export_deidentified(self, key: str, folder: Path):
        series = self._by_key.get(key)
        if series is None:
            return None
        if self.is_plain_image(key):
            self.message.emit("warning", f"{series.description} is not DICOM: there is no header to "
                                         "de-identify (use Export > View as PNG).")
            return None

        def export():
            from healthfm_desktop.core.imaging import anonymise

            # one de-identification session for the whole app run: two series of one study
            # exported one after the other keep one (new) Study Instance UID and patient
            if self._anonymiser is None:
                self._anonymiser = anonymise.Anonymiser()
            return anonymise.anonymise_series(series, folder, self._anonymiser)

        def done(report) -> None:
            written = getattr(report, "written", report)
            count = len(written) if isinstance(written, (list, tuple)) else written
            self.status.emit(f"De-identified copy written to {folder} ({count} file(s))")
            warnings = list(getattr(report, "warnings", []) or [])
            if warnings:
                self.message.emit("warning", "\n".join(warnings))
            else:
                self.message.emit("info", f"De-identified copy written to {folder}")

        return self.start_job(export, on_result=done)
