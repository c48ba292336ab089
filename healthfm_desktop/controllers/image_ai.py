"""Image AI in the Images workspace: "Analyse" runs the shipped classifier or segmenter on the
image on screen, on a worker (cancellable, with progress), and hands the outcome to the
analysis panel; "Export" writes DICOM SEG/SR (or JSON) on a worker."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from healthfm_desktop.controllers.workers import Job, Progress, relay_progress, run_job


class ImageAnalysisController(QObject):
    started = Signal(str)  # what is being done
    progress = Signal(object)  # Progress
    result = Signal(object)  # core.imaging.ai.analysis.AnalysisOutcome
    series_result = Signal(object)  # core.imaging.ai.analysis.SeriesAnalysis
    failed = Signal(str)  # message for the user
    cancelled = Signal()
    finished = Signal()
    exported = Signal(list)  # paths written

    def __init__(self, images_controller, parent: QObject | None = None):
        super().__init__(parent)
        self.images = images_controller
        self._job: Job | None = None
        self.last_outcome = None
        self.last_series = None
        self._location: tuple[str, int] | None = None  # (series key, index) the job is for
        self.last_location: tuple[str, int] | None = None
        self.last_wall_ms: float | None = None

    @property
    def busy(self) -> bool:
        return self._job is not None and self._job.is_running

    def current_object(self) -> tuple[object, int, str] | None:
        """(source ref, frame number inside the object, display name) of the image on screen."""
        series = self.images.current_series()
        index = self.images.current_index()
        if series is None or index < 0:
            return None
        frame = series.frames[index]
        source = frame.instance.source
        name = source.member or str(source.path)
        return source, frame.frame_index, name

    def analyse(self, choice: str = "auto", pixel_spacing_mm: float | None = None, force: bool = False) -> Job | None:
        """Run on the current image; a running analysis is cancelled first. ``force``: give
        the answer even if the image is outside the model's scope ("Run anyway")."""
        current = self.current_object()
        if current is None:
            self.failed.emit("Open an image first: there is nothing on screen to analyse.")
            return None
        self.cancel()
        source, frame, name = current
        self._location = (self.images.current_series().key, self.images.current_index())

        def work():
            from healthfm_desktop.core.imaging.ai.analysis import analyse
            from healthfm_desktop.core.imaging.ai.analysis import read_for_analysis

            yield Progress(0.05, "reading the image")
            image = read_for_analysis(source, frame, name)  # DICOM, or a PNG / JPEG file
            return (yield from relay_progress(analyse(image, choice, pixel_spacing_mm, force)))

        return self._start(work, f"Analysing {Path(name).name}", self._on_result)

    def analyse_series(self, choice: str = "auto", pixel_spacing_mm: float | None = None) -> Job | None:
        """Run one model over every image of the series on screen (progress per image,
        cancellable between images); the image on screen gets its overlay."""
        series = self.images.current_series()
        if series is None:
            self.failed.emit("Open a series first: there is nothing on screen to analyse.")
            return None
        self.cancel()
        frames = list(series.frames)
        on_screen = max(self.images.current_index(), 0)
        from healthfm_desktop.controllers.app import compute_scheduler

        scheduler = compute_scheduler()  # Settings > Compute: "" for this computer
        self._location = (series.key, on_screen)

        def work():
            from healthfm_desktop.core.imaging.ai.analysis import analyse_series, image_from_dicom_object, read_for_analysis
            from healthfm_desktop.core.imaging.plain_images import plain_image_kind

            cache: dict = {}

            def load(index: int):
                frame = frames[index]
                source = frame.instance.source
                if source.member is None and plain_image_kind(source.path):
                    return read_for_analysis(source, 0, str(source.path))
                key = (str(source.path), source.member)
                if key not in cache:  # a multi-frame object is read once, not once per frame
                    cache.clear()
                    cache[key] = source.read_bytes()
                return image_from_dicom_object(cache[key], frame.frame_index, source.member or str(source.path))

            from healthfm_desktop.core.cluster import cluster_state, compute_client, describe_state
            from healthfm_desktop.core.imaging.ai.analysis import USER_MODEL

            # the user's own models stay on this computer (nothing adapted leaves it unexported)
            with compute_client(None if choice.startswith(USER_MODEL) else scheduler) as client:
                if client is None:
                    yield Progress(0.0, f"analysing {len(frames)} image(s)")
                    steps = analyse_series(load, len(frames), on_screen, choice, pixel_spacing_mm)
                else:
                    yield Progress(0.0, f"analysing {len(frames)} image(s) on "
                                        f"{describe_state(cluster_state(client))}")
                    remote = [(i, f.instance.source, f.frame_index, f.instance.source.member or str(f.instance.source.path))
                              for i, f in enumerate(frames)]
                    steps = analyse_series(load, len(frames), on_screen, choice, pixel_spacing_mm,
                                           cluster=(client, remote))
                return (yield from relay_progress(steps))

        return self._start(work, f"Analysing the series ({len(frames)} images)", self._on_series_result)

    def _start(self, work, label: str, on_result) -> Job:
        """Run ``work`` on a worker; ``on_result(result, started)`` gets the time it began."""
        started = time.perf_counter()
        self.started.emit(label)
        job = Job(work, parent=self)
        job.progress.connect(self.progress.emit)
        job.result.connect(lambda result: on_result(result, started))
        job.error.connect(self.failed.emit)
        job.cancelled.connect(self.cancelled.emit)
        job.finished.connect(self._on_finished)
        self._job = job
        job.start()
        return job

    def _on_series_result(self, result, started: float) -> None:
        self.last_series = result
        self.series_result.emit(result)
        if result.on_screen is not None:
            self._on_result(result.on_screen, started)

    def result_is_on_screen(self) -> bool:
        """Whether the image the last result belongs to is still the one on screen (the user
        may have scrolled while the model ran)."""
        series = self.images.current_series()
        return series is not None and self.last_location == (series.key, self.images.current_index())

    def _on_result(self, outcome, started: float) -> None:
        self.last_location = self._location
        self.last_outcome = outcome
        self.last_wall_ms = (time.perf_counter() - started) * 1000
        self.result.emit(outcome)

    def _on_finished(self) -> None:
        self._job = None
        self.finished.emit()

    def cancel(self) -> None:
        if self._job is not None and self._job.is_running:
            self._job.cancel()

    def export(self, folder: Path) -> Job | None:
        outcome = self.last_outcome
        if outcome is None:
            self.failed.emit("Nothing to export yet: run Analyse first.")
            return None

        def work():
            from healthfm_desktop.core.imaging.ai.analysis import export_results

            return export_results(outcome, folder)

        def done(paths) -> None:
            if not paths:
                self.failed.emit("There was nothing to export (no head found and no classification).")
            else:
                self.exported.emit([str(p) for p in paths])

        return run_job(work, on_result=done, on_error=self.failed.emit, parent=self)

