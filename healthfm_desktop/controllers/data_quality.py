"""The data-quality report of every import: each opened file or folder is read once more on a
worker, the way its workspace imports it, and its report (unreadable, out of range, duplicated,
missing) handed to the Data quality panel."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from healthfm_desktop.controllers.workers import run_job


def _reports(paths: list[Path]) -> list:
    from healthfm_desktop.core.data_quality import report_for
    from healthfm_desktop.core.errors import UserFacingError

    reports = []
    for path in paths:
        try:
            reports.append(report_for(path))
        except UserFacingError:
            continue  # the workspace that opens it says why; nothing to report on
    return reports


class DataQualityController(QObject):
    report_ready = Signal(object)  # core.data_quality.QualityReport
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.reports: list = []
        self._jobs: list = []

    def check(self, paths: list) -> None:
        def done(reports) -> None:
            for report in reports:
                self.reports.append(report)
                self.report_ready.emit(report)

        job = run_job(_reports, [Path(p) for p in paths], on_result=done, on_error=self.failed.emit, parent=self)
        self._jobs = [j for j in self._jobs if j.is_running] + [job]

    @property
    def busy(self) -> bool:
        return any(j.is_running for j in self._jobs)
