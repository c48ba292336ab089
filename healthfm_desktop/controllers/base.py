"""What every workspace controller shares: a name, an ``open_paths`` entry point for files the
main window routes to it, and jobs whose progress and errors reach the UI as signals."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from healthfm_desktop.controllers.workers import Job, run_job


class WorkspaceController(QObject):
    #: machine name of the workspace ("images", "notes", "molecules", "patients")
    name = ""
    #: what the user sees in the workspace switcher
    title = ""

    message = Signal(str, str)  # level ("info" | "warning" | "error"), text for the user
    progress = Signal(object)  # Progress
    busy_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._jobs: set[Job] = set()

    def open_paths(self, paths: list[Path]) -> None:
        """Take files or folders the user dropped or opened (already routed to this workspace)."""
        raise NotImplementedError

    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    def start_job(
        self,
        func: Callable[..., Any],
        *args: Any,
        on_result: Callable[[Any], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        **kwargs: Any,
    ) -> Job:
        """Run ``func`` on a worker; errors become a visible message unless ``on_error`` is given."""
        was_busy = self.busy
        job = run_job(
            func,
            *args,
            on_result=on_result,
            on_error=on_error or (lambda text: self.message.emit("error", text)),
            on_progress=self.progress.emit,
            parent=self,
            **kwargs,
        )
        self._jobs.add(job)
        job.finished.connect(lambda job=job: self._job_done(job))
        if not was_busy:
            self.busy_changed.emit(True)
        return job

    def cancel_jobs(self) -> None:
        for job in list(self._jobs):
            job.cancel()

    def _job_done(self, job: Job) -> None:
        self._jobs.discard(job)
        if not self._jobs:
            self.busy_changed.emit(False)
