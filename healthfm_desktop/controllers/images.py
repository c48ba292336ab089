"""Images workspace controller: starts the work on workers (index, first image, thumbnails and
the rest of the series in the background, measurement files, MPR, tags, exports) and relays
the Qt-free ViewerSession (core.imaging.viewer_session), which holds the workspace state."""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QBuffer, QIODevice, Signal
from PySide6.QtGui import QImage

from healthfm_desktop.controllers.base import WorkspaceController
from healthfm_desktop.controllers.workers import AppWidePool, Progress
from healthfm_desktop.core.errors import UserFacingError
from healthfm_desktop.core.imaging.orientation import frame_edge_letters
from healthfm_desktop.core.imaging.viewer_session import (
    ViewerSession,
    default_window,
    read_saved_measurements,
    render_window,
    thumbnail_pixels,
)
from healthfm_desktop.core.paths import user_data_dir
from healthfm_desktop.core.routing import IMAGES
from healthfm_desktop.core.storage.atomic import atomic_write_bytes


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


log = logging.getLogger(__name__)


def stored_series_items(open_keys: set[str]):
    """The series of the user's study database that are not open (find-similar), read lazily."""
    from healthfm_desktop.core.foundation.datasets import Items
    from healthfm_desktop.core.foundation.stored import stored_series
    from healthfm_desktop.core.storage.studies import StudyDatabase, default_database_path

    path = default_database_path()
    if not path.is_file():
        return Items("image")
    with StudyDatabase(path) as database:
        return stored_series(database, lazy=True, skip=open_keys)


class ImagesController(WorkspaceController):
    name = IMAGES
    title = "Images"

    series_changed = Signal()
    frame_ready = Signal(str, int)  # series key, index: decoded and cached
    thumbnail_ready = Signal(str, object)  # series key, uint8 HxW or HxWx3
    unreadable_changed = Signal(list)  # [(path, reason)] of every import so far
    notes_changed = Signal(list)  # [str]
    measurements_changed = Signal()
    mpr_ready = Signal(object, dict)  # volume for the MPR view, {description, units, window, invert, notes, key}
    mpr_failed = Signal(str)  # why this series cannot be reformatted
    tags_ready = Signal(str, list)  # title, elements
    #: the image the user looks at changed: series key, index (for the AI panel and others)
    current_image_changed = Signal(str, int)
    status = Signal(str)
    #: the first image found, shown while the rest is indexed: pixels (modality units), info
    preview_ready = Signal(object, dict)
    show_requested = Signal(str)  # series key the user asked for again (re-opened)
    import_finished = Signal(dict)  # {series, frames, rejected, cancelled, seconds}
    #: what an import read: its core.imaging ScanResult and the paths it was given (data quality)
    import_scanned = Signal(object, list)
    series_loaded = Signal(str)  # every frame of the series is decoded
    frame_failed = Signal(str, int, str)  # series key, index, why it cannot be shown

    # emitted from worker threads (queued to the UI thread by Qt)
    _decoded = Signal(str, int)
    _failed = Signal(str, int, str)
    _scan_step = Signal(int, int)

    #: the viewports' W/L function (core): pixels, centre, width, invert, scale, offset -> uint8
    render_window = staticmethod(render_window)

    def __init__(self, parent=None, session: ViewerSession | None = None):
        super().__init__(parent)
        self.session = session or ViewerSession(user_data_dir() / "measurements")
        from healthfm_desktop.controllers.adaptation import WorkspaceAdaptation

        self.adaptation = WorkspaceAdaptation("images", "image", self.adaptation_items, parent=self)
        self.adaptation.add_similar_source("stored", stored_series_items, self.open_stored_series)
        events = self.session.events
        events.unreadable_changed.connect(self.unreadable_changed.emit)
        events.notes_changed.connect(self.notes_changed.emit)
        events.measurements_changed.connect(self.measurements_changed.emit)
        events.message.connect(self.message.emit)
        self._pending: set[tuple[str, int]] = set()
        self._prefetching: set[str] = set()
        # one event per running job: Cancel sets them all, a new job starts with a fresh one
        self._cancel_events: set[threading.Event] = set()
        self._scan_jobs: set = set()
        self._anonymisers: dict = {}  # DeidOptions -> core.imaging.anonymise.Anonymiser of this run's exports
        self._decoded.connect(self._on_decoded)
        self._failed.connect(self._on_failed)
        DECODE_POOL.stop_when_the_app_quits()
        self._scan_step.connect(lambda done, total: self.progress.emit(
            Progress(done / max(total, 1), f"Indexing {done}/{total} files")))
        # the decode workers (~50 MB each) start with the first import (open_paths), not here: a
        # session that never opens an image never pays for them; the first image is decoded
        # in-process while they start beside the indexing. Their module is imported now, on the
        # UI thread as AppWidePool needs, so that the first import (a drop, a PACS retrieval)
        # does not stall the event loop on it (measured: 100-170 ms during a retrieval)
        importlib.import_module(DECODE_POOL.module)

    def open_stored_series(self, series_uid: str) -> None:
        """Open a series of the study database (a find-similar neighbour the user clicked)."""
        from healthfm_desktop.core.storage.studies import StudyDatabase, default_database_path

        with StudyDatabase(default_database_path()) as database:
            paths = database.instance_paths(series_uid=series_uid)
        if paths:
            self.open_paths(paths)
        else:
            self.message.emit("warning", f"Series {series_uid} is no longer in the study database.")

    def adaptation_items(self, keys: list[str] | None):
        """Items (series key, its middle image as grey uint8, read on the worker) for labelling,
        training, running and similarity: every opened series, or those with ``keys``."""
        from healthfm_desktop.core.foundation.datasets import Items

        def middle_image(series: Series):
            from healthfm_desktop.core.imaging.ai.analysis import read_for_analysis

            frame = series.frames[len(series.frames) // 2]
            source = frame.instance.source
            return lambda: read_for_analysis(source, frame.frame_index, source.member or str(source.path)).pixels

        items = Items("image")
        for series in self.session.series:
            if keys is None or series.key in keys:
                items.add(series.key, middle_image(series), None)
        return items

    # the session's state, under the names views and other controllers use
    @property
    def series(self) -> list[Series]:
        return self.session.series

    @property
    def unreadable(self) -> list[tuple[str, str]]:
        return self.session.unreadable

    @property
    def notes(self) -> list[str]:
        return self.session.notes

    # ------------------------------------------------------------------ import
    def open_paths(self, paths: list[Path], read_ahead: dict[Path, bytes] | None = None) -> None:
        """Index the paths on a worker; the first series' first image is requested as soon as
        the index is ready, the rest decodes in the background. ``read_ahead``: bytes of files
        the drop routing read whole while sniffing them (``Routing.contents``), not read again."""
        self.status.emit(f"Reading {len(paths)} item(s)…")
        started = time.perf_counter()
        DECODE_POOL.start()  # the first import needs them (no-op when they already run)
        cancel = self._new_cancel_event()
        paths = [Path(p) for p in paths]
        job = self.start_job(self._scan, paths, cancel, read_ahead,
                             on_result=lambda result: self._on_scanned(result, started, paths))
        self._scan_jobs.add(job)
        job.finished.connect(lambda: (self._scan_jobs.discard(job), self._cancel_events.discard(cancel)))

    def _scan(self, paths: list[Path], cancel: threading.Event, read_ahead: dict[Path, bytes] | None = None):
        from healthfm_desktop.core.imaging.scanning import scan_paths

        ahead = self._decode_ahead()
        shown = []  # the instance the preview showed (its pixels wait on it)

        def preview(instance) -> bool:
            return self._emit_preview(instance) and (shown.append(instance) or True)

        with _collector_paused():
            result = scan_paths(paths, progress=self._paced_scan_step(), cancel=cancel.is_set,
                                decode_ahead=ahead, read_ahead=read_ahead, first=preview)
        result = self._with_plain_images(result)
        self._cache_preview(result.series, shown)
        # the measurements saved with these studies: disk and JSON, here rather than on the UI thread
        saved = read_saved_measurements(self.session.measurement_folder, self.session.studies_to_read(result.series))
        return result, saved, shown

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
        return self.session.is_plain_image(key)

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

    def _emit_preview(self, instance) -> bool:
        """Show the scan's first indexed image while the rest is indexed (a folder of a
        thousand slices takes seconds to index; one image takes milliseconds). Its decoded
        pixels wait on the instance for the series' own decode, so the file is decoded once.
        False when it cannot be shown (the scan then offers the next file; it reports errors)."""
        from healthfm_desktop.core.imaging.parallel_decode import decode_in_worker, keep_decoded
        from healthfm_desktop.core.imaging.scanning import build_series

        try:
            series = build_series([instance])[0][0]
            if instance.number_of_frames == 1:
                decoded = decode_in_worker(instance)  # None: no workers yet, decoded here
                if decoded is not None:
                    keep_decoded(instance, decoded)  # what load_stored takes
            stored = series.load_stored(0)
            pixels = series.to_modality(0, stored)
        except Exception:  # noqa: BLE001 - the series' own decode reports this file properly
            return False
        if instance.number_of_frames == 1:
            keep_decoded(instance, stored)
        window = default_window(series, 0, pixels)
        patient = series.patient_name.replace("^", " ").strip()
        self.preview_ready.emit(pixels, {
            "pixel_spacing": series.frames[0].pixel_spacing,
            "edges": frame_edge_letters(series.frames[0].orientation),
            "invert": series.photometric == "MONOCHROME1",
            "units": "HU" if series.modality == "CT" and not series.is_colour else "",
            "window": window,
            "top_left": [patient] if patient else [],
            "top_right": [f"{series.modality} {series.description}".strip()],
            "bottom_left": ["Indexing the files…"],
        })
        return True

    def _new_cancel_event(self) -> threading.Event:
        event = threading.Event()
        self._cancel_events.add(event)
        return event

    def cancel_jobs(self) -> None:
        """Cancel: indexing stops and keeps what it found so far; decoding, thumbnails and MPR
        stop at their next step."""
        for event in list(self._cancel_events):
            event.set()
        self.session.flush_saves()  # the app may be closing: the last measurement reaches the disk
        if "healthfm_desktop.core.imaging.parallel_decode" in sys.modules:
            self._drop_decoded_ahead()
        for job in list(self._jobs):
            if job not in self._scan_jobs:
                job.cancel()

    def _on_scanned(self, scanned, started: float, paths: list[Path]) -> None:
        result, saved, shown = scanned
        self.import_scanned.emit(result, paths)
        added, already = self.session.add_scan(result)
        frames = sum(s.frame_count for s in added)
        summary = {"series": len(added), "frames": frames, "rejected": len(result.rejected),
                   "cancelled": result.cancelled, "seconds": time.perf_counter() - started}
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
        self.session.merge_saved(saved)  # announces measurements_changed
        self.import_finished.emit(summary)

    def _cache_preview(self, scanned: list[Series], shown: list) -> None:
        """The preview's decoded pixels go into the frame cache (no decode: they wait on their
        instance), before the view and the background decode both ask for that frame. On the
        scan's worker: the cached form (modality values, whole numbers as int16) is worked out
        over the whole image, which the UI thread then need not do while the series arrives."""
        for series in scanned if shown and shown[0].number_of_frames == 1 else []:
            for index, frame in enumerate(series.frames):
                pending = frame.instance.pending_pixels
                if frame.instance is shown[0] and pending is not None and pending.done():  # never a decode here
                    with contextlib.suppress(UserFacingError):
                        self.session.load(series, index)
                    return

    def clear_unreadable(self) -> None:
        """Forget the list of files that could not be read (and the import notes)."""
        self.session.clear_unreadable()

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
        return self.session.series_entries()

    def series_by_key(self, key: str) -> Series:
        return self.session.series_by_key(key)

    def frame_count(self, key: str) -> int:
        return self.session.frame_count(key)

    def display_frame(self, key: str, index: int) -> tuple[np.ndarray, float, float] | None:
        """What a viewport draws: (pixels, scale, offset), or None while not decoded yet."""
        return self.session.display_frame(key, index)

    def cached_frame(self, key: str, index: int) -> np.ndarray | None:
        """Frame ``index`` in modality units if it is decoded already, else None."""
        return self.session.cached_frame(key, index)

    def _modality(self, series: Series, index: int) -> np.ndarray:
        return self.session.modality(series, index)

    def display_state(self, key: str):
        """How the user left series ``key`` (slice, W/L, inversion, zoom/pan): the session's."""
        return self.session.display_state(key)

    def remember_display(self, key: str, **changes) -> None:
        self.session.update_display(key, **changes)

    def request_frame(self, key: str, index: int) -> None:
        """Decode one frame on a worker (the view shows it on ``frame_ready``)."""
        series = self.session.get(key)
        if (key, index) in self._pending or series is None or self.session.has_failed(key, index):
            return
        self._pending.add((key, index))

        def decode() -> tuple[str, int]:
            self.session.load(series, index)
            return key, index

        self.start_job(decode, on_result=lambda r: self._on_decoded(*r),
                       on_error=lambda text, key=key, index=index: self._on_failed(key, index, text))
        self._prefetch(key)

    def _prefetch(self, key: str) -> None:
        """Decode the whole series in the background (both cores), so scrolling is instant."""
        if key in self._prefetching or self.session.is_loaded(key):
            return
        self._prefetching.add(key)
        session = self.session
        series = session.series_by_key(key)
        cancel = self._new_cancel_event()

        def decode_all():
            failures = yield from session.decode_series(key, cancel.is_set, self._decoded.emit, self._failed.emit)
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
            elif session.mark_loaded_if_complete(key):
                self.series_loaded.emit(key)

        def done() -> None:  # after a result, an error or a cancel alike
            self._prefetching.discard(key)
            self._cancel_events.discard(cancel)

        job = self.start_job(decode_all, on_result=finished)
        job.finished.connect(done)

    def _on_failed(self, key: str, index: int, reason: str) -> None:
        self._pending.discard((key, index))
        self.session.record_failure(key, index, reason)
        self.frame_failed.emit(key, index, reason)

    def frame_failure(self, key: str, index: int) -> str | None:
        """Why frame ``index`` cannot be shown, once a decode has failed."""
        return self.session.frame_failure(key, index)

    def failure_sentence(self, key: str, index: int) -> str:
        """The plain sentence a viewport shows for an image that will not decode."""
        return self.session.failure_sentence(key, index)

    def _on_decoded(self, key: str, index: int) -> None:
        self._pending.discard((key, index))
        self.frame_ready.emit(key, index)
        if self.session.current == (key, index):
            self.current_image_changed.emit(key, index)

    def is_series_loaded(self, key: str) -> bool:
        return self.session.is_series_loaded(key)

    def frame_info(self, key: str, index: int) -> dict:
        """What the viewport shows beside the pixels: spacing, window, inversion, units, corners."""
        return self.session.frame_info(key, index)

    def window_presets(self, key: str) -> list[tuple[str, float, float]]:
        """The file's own windows, then the modality's presets: (name, centre, width)."""
        return self.session.window_presets(key)

    def frame_rate(self, key: str) -> float | None:
        """Frames per second the file asks cine to play at, or None."""
        return self.session.frame_rate(key)

    def sync_relation(self, source_key: str, target_key: str) -> tuple[bool, str]:
        """Whether scrolling ``source_key`` moves ``target_key``, and why, in words."""
        return self.session.sync_relation(source_key, target_key)

    def matching_index(self, source_key: str, source_index: int, target_key: str) -> int | None:
        """The slice of ``target_key`` nearest in space to ``source_index`` of ``source_key``."""
        return self.session.matching_index(source_key, source_index, target_key)

    # ---------------------------------------------------------- current image
    def set_current(self, key: str, index: int) -> None:
        if self.session.current == (key, index):
            return
        self.session.current = (key, index)
        self.session.update_display(key, index=index)
        if self.session.cache.get(key, index) is not None:
            self.current_image_changed.emit(key, index)
        # else: emitted by _on_decoded when the pixels are there

    def current_series(self) -> Series | None:
        current = self.session.current
        return None if current is None else self.session.get(current[0])

    def current_index(self) -> int:
        current = self.session.current
        return -1 if current is None else current[1]

    def current_frame(self) -> np.ndarray | None:
        """Pixels of the current image (modality units, or uint8 RGB), decoding if needed."""
        series = self.current_series()
        if series is None:
            return None
        return self._modality(series, self.session.current[1])

    # ----------------------------------------------------------- measurements
    def measurement_location(self, measurement_id: str) -> tuple[str, int] | None:
        return self.session.measurement_location(measurement_id)

    def add_measurement(self, key: str, index: int, kind: str, points: list) -> str | None:
        return self.session.add_measurement(key, index, kind, points)

    def move_measurement(self, measurement_id: str, points: list) -> None:
        self.session.move_measurement(measurement_id, points)

    def rename_measurement(self, measurement_id: str, label: str) -> None:
        self.session.rename_measurement(measurement_id, label)

    def delete_measurements(self, ids: list[str]) -> None:
        self.session.delete_measurements(ids)

    def measurements_for(self, key: str, index: int) -> list[dict]:
        return self.session.measurements_for(key, index)

    def measurement_rows(self) -> list[dict]:
        return self.session.measurement_rows()

    def measurement_records(self) -> list[dict]:
        return self.session.measurement_records()

    # -------------------------------------------------------------------- MPR
    def request_mpr(self, key: str) -> None:
        session = self.session
        series = session.get(key)
        if series is None:
            return
        kept = session.mpr_volume(key)
        if kept is not None:
            self.mpr_ready.emit(*kept)
            return
        cancel = self._new_cancel_event()

        def build():
            return (yield from session.build_mpr_volume(key, cancel.is_set))

        def ready(volume) -> None:
            if volume is not None:
                self.mpr_ready.emit(*session.keep_mpr_volume(key, volume))

        job = self.start_job(build, on_result=ready, on_error=self.mpr_failed.emit)
        job.finished.connect(lambda: self._cancel_events.discard(cancel))

    # ------------------------------------------------------------------- tags
    def request_tags(self, key: str, index: int) -> None:
        series = self.session.get(key)
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

        series = self.session.get(key)
        return None if series is None or self.is_plain_image(key) else series_burned_in_risk(series)

    def export_deidentified(self, key: str, folder: Path, shift_dates: bool = False, keep_descriptions: bool = False,
                            folders: bool = False):
        """De-identify series ``key`` into ``folder`` on a worker: the basic profile, with the
        Modified Dates option (``shift_dates``), descriptions kept, Patient/Study/Series folders."""
        series = self.session.get(key)
        if series is None:
            return None
        if self.is_plain_image(key):
            self.message.emit("warning", f"{series.description} is not DICOM: there is no header to "
                                         "de-identify (use Export > View as PNG).")
            return None

        from healthfm_desktop.controllers.app import compute_scheduler

        scheduler = compute_scheduler()
        where = {"text": "this computer"}

        def export():
            from healthfm_desktop.core.cluster import cluster_state, compute_client, describe_state
            from healthfm_desktop.core.imaging import anonymise

            # one de-identification session per set of options for the whole app run: two series
            # of one study exported one after the other keep one (new) Study UID, patient and
            # date offset, here or on the cluster (its tasks get the session's secret)
            options = anonymise.DeidOptions(shift_dates=shift_dates, keep_descriptions=keep_descriptions)
            if options not in self._anonymisers:
                self._anonymisers[options] = anonymise.Anonymiser(options=options)
            with compute_client(scheduler) as client:
                if client is not None:
                    where["text"] = describe_state(cluster_state(client))
                yield Progress(0.0, f"de-identifying {len(series.instances)} file(s) on {where['text']}")
                return anonymise.anonymise_series(series, folder, self._anonymisers[options], folders=folders,
                                                  client=client)

        def done(report) -> None:
            count = len(report.written)
            on = "" if not scheduler else f" on {where['text']}"
            self.status.emit(f"De-identified copy written to {folder} ({count} file(s){on})")
            problems = [f"{Path(source).name}: {reason}" for source, reason in report.rejected]
            warnings = list(report.warnings) + problems
            if warnings:
                self.message.emit("warning", "\n".join(warnings))
            else:
                self.message.emit("info", f"De-identified copy written to {folder}{on}")

        return self.start_job(export, on_result=done)
