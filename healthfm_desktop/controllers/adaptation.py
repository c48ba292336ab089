"""Models and adaptation in the GUI: list the registry's models, train a head on a labelled
file (progress, cancel), run a user model on files, export and import a model. Every step is a
worker job over core/foundation; results come back as signals."""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from healthfm_desktop.controllers.workers import Job, run_job


def _entries():
    from healthfm_desktop.core.inference.registry import load_registry

    return [entry.to_json() for entry in load_registry().entries()]


def _train(kind: str, data: str, name: str, task: str, label_column: str, progress, cancelled):
    from healthfm_desktop.core.foundation.adaptation import train_adapted_model
    from healthfm_desktop.core.foundation.datasets import read_labelled

    items = read_labelled(kind, data, label_column)
    try:
        return train_adapted_model(kind, items, name, task, data_name=Path(data).name, progress=progress,
                                   cancelled=cancelled)
    except InterruptedError:
        return None  # cancelled before anything was saved


def _predict(name: str, paths: list[str]):
    from healthfm_desktop.core.foundation.adaptation import AdaptedModel
    from healthfm_desktop.core.foundation.datasets import read_unlabelled
    from healthfm_desktop.core.inference.registry import load_registry

    manifest = load_registry().get(name)
    items = read_unlabelled(manifest.kind, paths)
    records = [{"id": i, **r} for i, r in zip(items.ids, AdaptedModel.load(manifest).predict(items.payloads))]
    return records + [{"id": i, "error": reason} for i, reason in items.errors]


def _export(name: str, out: str) -> str:
    from healthfm_desktop.core.foundation.model_files import export_model

    return str(export_model(name, out))


def _import(path: str) -> str:
    from healthfm_desktop.core.foundation.model_files import import_model

    manifest = import_model(path)
    return f"{manifest.name} {manifest.version}"


class AdaptationController(QObject):
    models_changed = Signal(list)  # ModelEntry.to_json() dicts
    progress = Signal(float, str)
    trained = Signal(object)  # AdaptationSummary
    predicted = Signal(list)  # adapt predict records
    exported = Signal(str)
    imported = Signal(str)
    failed = Signal(str)
    busy_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.jobs: set[Job] = set()
        self._cancel = threading.Event()

    def _start(self, func, *args, on_result) -> Job:
        job = run_job(func, *args, on_result=on_result, on_error=self.failed.emit, parent=self)
        self.jobs.add(job)
        self.busy_changed.emit(True)
        job.finished.connect(lambda: (self.jobs.discard(job), self.busy_changed.emit(bool(self.jobs))))
        return job

    def refresh(self) -> Job:
        return self._start(_entries, on_result=self.models_changed.emit)

    def train(self, kind: str, data: str, name: str, task: str = "classification", label_column: str = "label") -> Job:
        self._cancel.clear()
        # the worker thread reports through a queued signal; cancel is a flag the job polls
        report = lambda fraction, step: self.progress.emit(float(fraction), step)  # noqa: E731

        def done(summary):
            if summary is None:
                self.failed.emit("Training cancelled; nothing was saved.")
                return
            self.trained.emit(summary)
            self.refresh()

        return self._start(_train, kind, data, name, task, label_column, report, self._cancel.is_set, on_result=done)

    def cancel(self) -> None:
        self._cancel.set()

    def predict(self, name: str, paths: list[str]) -> Job:
        return self._start(_predict, name, list(paths), on_result=self.predicted.emit)

    def export(self, name: str, out: str) -> Job:
        return self._start(_export, name, out, on_result=self.exported.emit)

    def import_model(self, path: str) -> Job:
        def done(text):
            self.imported.emit(text)
            self.refresh()

        return self._start(_import, path, on_result=done)
