"""The data-quality report of every import: the Images workspace's own index is reported on,
the other files are read once more on a worker the way their workspace imports them; each
report (unreadable, out of range, duplicated, missing) goes to the Data quality panel."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from healthfm_desktop.controllers.workers import run_job
from healthfm_desktop.core.routing import IMAGES


def _reports(paths: list[tuple[Path, str]]) -> list:
    from healthfm_desktop.core.data_quality import report_for
    from healthfm_desktop.core.errors import UserFacingError

    reports = []
    for path, workspace in paths:
        try:
            reports.append(report_for(path, workspace))
        except UserFacingError:
            continue  # the workspace that opens it says why; nothing to report on
    return reports


def _image_reports(scan, paths: list[Path]) -> list:
    from healthfm_desktop.core.data_quality import image_reports

    return image_reports(scan, paths)


class DataQualityController(QObject):
    report_ready = Signal(object)  # core.data_quality.QualityReport
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.reports: list = []
        self._jobs: list = []
        self._awaited_images: list[list[Path]] = []  # routed to Images, reported when it has read them

    def follow_images(self, images) -> None:
        """Report on the imports of ``images`` (an ImagesController) that ``check`` saw routed."""
        images.import_scanned.connect(self._on_images_scanned)

    def check(self, routing) -> None:
        """Report on each path of an open (a core.routing.Routing); rejected paths have none."""
        if routing.by_workspace.get(IMAGES):
            self._awaited_images.append(list(routing.by_workspace[IMAGES]))
        others = [(path, name) for name, paths in routing.by_workspace.items() if name != IMAGES for path in paths]
        if others:
            self._start(_reports, others)

    def _on_images_scanned(self, scan, paths: list) -> None:
        paths = [Path(p) for p in paths]
        if paths and paths in self._awaited_images:
            self._awaited_images.remove(paths)
            self._start(_image_reports, scan, paths)

    def _start(self, func, *args) -> None:
        def done(reports) -> None:
            for report in reports:
                self.reports.append(report)
                self.report_ready.emit(report)

        job = run_job(func, *args, on_result=done, on_error=self.failed.emit, parent=self)
        self._jobs = [j for j in self._jobs if j.is_running] + [job]

    @property
    def busy(self) -> bool:
        return any(j.is_running for j in self._jobs)
