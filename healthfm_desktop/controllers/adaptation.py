"""Models and adaptation in the GUI: list the registry's models, train a head on a labelled
file (progress, cancel), run a user model on files, export and import a model. Every step is a
worker job over core/foundation; results come back as signals."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from healthfm_desktop.controllers.workers import Job, run_job


def _entries():
    from healthfm_desktop.core.inference.registry import load_registry

    return [entry.to_json() for entry in load_registry().entries()]


def leave_a_core():
    """BLAS/OpenMP threads for a training worker, one fewer than the cores: with every core
    running the head search the UI thread waited up to 257 ms for one (bench_adapt_stall.py)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=max(1, (os.cpu_count() or 2) - 1))


def _train(kind: str, data: str, name: str, task: str, label_column: str, progress, cancelled):
    from healthfm_desktop.core.foundation.adaptation import train_adapted_model
    from healthfm_desktop.core.foundation.datasets import read_labelled

    items = read_labelled(kind, data, label_column)
    try:
        with leave_a_core():
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
        return self._start_training(_train, kind, data, name, task, label_column)

    def _start_training(self, func, *args) -> Job:
        """``func(*args, progress, cancelled)`` on a worker; the worker thread reports through a
        queued signal, and cancel is a flag the job polls."""
        self._cancel.clear()
        report = lambda fraction, step: self.progress.emit(float(fraction), step)  # noqa: E731

        def done(summary):
            if summary is None:
                self.failed.emit("Training cancelled; nothing was saved.")
                return
            self.trained.emit(summary)
            self.refresh()

        return self._start(func, *args, report, self._cancel.is_set, on_result=done)

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


def _materialised(items):
    """Items whose lazy payloads (a loader the workspace gave, e.g. reading a frame) are read
    here on the worker; one that cannot be read joins ``errors``."""
    from healthfm_desktop.core.errors import UserFacingError
    from healthfm_desktop.core.foundation.datasets import Items

    out = Items(items.kind, errors=list(items.errors))
    for item_id, payload, label in zip(items.ids, items.payloads, items.labels):
        try:
            out.add(item_id, payload() if callable(payload) else payload, label)
        except UserFacingError as exc:
            out.errors.append((item_id, str(exc)))
    return out


def _train_items(kind: str, items, name: str, task: str, workspace: str, progress, cancelled):
    from healthfm_desktop.core.foundation.adaptation import train_adapted_model

    try:
        with leave_a_core():
            return train_adapted_model(kind, _materialised(items), name, task, data_name=f"{workspace} labels",
                                       progress=progress, cancelled=cancelled)
    except InterruptedError:
        return None


def _predict_items(name: str, items):
    from healthfm_desktop.core.foundation.adaptation import AdaptedModel
    from healthfm_desktop.core.inference.registry import load_registry

    items = _materialised(items)
    model = AdaptedModel.load(load_registry().get(name))
    records = [{"id": i, **r} for i, r in zip(items.ids, model.predict(items.payloads))]
    return records + [{"id": i, "error": reason} for i, reason in items.errors]


def _similar_items(kind: str, library, query_id: str, top: int, sources: dict, labels, metric: str = "cosine"):
    """The neighbours of ``query_id`` over ``library`` (what is open) and what each of
    ``sources`` ({name: items(skip_ids)}, run here on the worker) adds that is not open, with
    the user's labels; returns (records, {"open" or source name: items searched}, notes on what
    could not be searched)."""
    from healthfm_desktop.core.errors import UserFacingError
    from healthfm_desktop.core.foundation.similar import similar_records

    source_of: dict[str, str] = {}
    searched, notes = {"open": len(library.ids)}, []
    for name, items_of in sources.items():
        more = labels.with_labels(items_of(set(library.ids) | set(source_of)))
        source_of.update((item_id, name) for item_id in more.ids)
        searched[name] = len(more.ids)
        if more.errors:
            what, why = more.errors[0]
            notes.append(f"{len(more.errors)} not searched ({what}: {why})" if len(more.errors) > 1 else f"{what}: {why}")
        library.ids, library.payloads = library.ids + more.ids, library.payloads + more.payloads
        library.labels, library.errors = library.labels + more.labels, library.errors + more.errors
    library = _materialised(library)
    if query_id not in library.ids:
        raise UserFacingError("the chosen item could not be read, so nothing is similar to it")
    query = library.payloads[library.ids.index(query_id)]
    records = similar_records(kind, library, query, top, exclude=query_id, metric=metric)
    for record in records:
        if record["id"] in source_of:
            record["source"] = source_of[record["id"]]
    return records, searched, notes


_WARM_UP: list[Job] = []  # one per process, kept alive here: no workspace owns it


def _warm_up() -> Job:
    """The head libraries imported on a worker while the user is still labelling."""
    from healthfm_desktop.core.foundation.adaptation import import_head_libraries

    if not _WARM_UP:
        _WARM_UP.append(run_job(import_head_libraries, on_error=lambda _message: None))
    return _WARM_UP[0]


class WorkspaceAdaptation(AdaptationController):
    """Adaptation inside one workspace: the user's labels (core LabelSession), training on the
    labelled items the workspace has open, running a user model of this kind on the chosen
    items, and similar items with their labels. ``source(ids)`` (UI thread, cheap) gives the
    workspace's Items (all of them when ids is None); lazy payloads are read on the worker."""

    labels_changed = Signal()
    similar_found = Signal(str, list)  # query id, similar records

    def __init__(self, workspace: str, kind: str, source, labels=None, column_values=None,
                 parent: QObject | None = None):
        super().__init__(parent)
        from healthfm_desktop.core.foundation.labelling import LabelSession

        self.workspace, self.kind, self.source = workspace, kind, source
        # find-similar also searches these: name -> (items(skip_ids) on a worker: Items that are
        # not open, open(item_id) on the UI thread: shows one the user clicked)
        self.similar_sources: dict[str, tuple] = {}
        self.searched: dict[str, int] = {}  # what the last find-similar searched, per source
        self.search_notes: list[str] = []  # and what it could not search, with why
        self.column_values = column_values  # column -> {id: value} of the opened file, or None
        self.labels = labels or LabelSession(workspace)
        self.labels.changed.connect(self.labels_changed.emit)
        # the head libraries are warmed up once there are labels to train on, not at every start
        # (they took ~2 s of CPU from the app's first seconds and from the self-test)
        self.warmed: Job | None = _warm_up() if self.labels.labels else None
        self.labels.changed.connect(self._labelled)
        from healthfm_desktop.core.foundation.similar import METRICS

        self.similarity_metrics = METRICS[kind]  # what find_similar can compare by, the default first

    def _labelled(self) -> None:
        if self.warmed is None:
            self.warmed = _warm_up()

    def user_models(self, entries: list) -> list[str]:
        return [e["name"] for e in entries if e["source"] == "user" and e["valid"]
                and str(e["task"]).startswith(f"{self.kind}-")]

    def tag(self, ids: list[str], label: str) -> None:
        self.labels.tag(ids, label)

    def untag(self, ids: list[str]) -> None:
        self.labels.untag(ids)

    def tag_from_column(self, column: str) -> int:
        """Label every item with its value in ``column`` of the file it came from; how many."""
        values = self.column_values(column) if self.column_values else {}
        self.labels.tag_each(values)
        return len(values)

    def train_labelled(self, name: str, task: str = "classification") -> Job | None:
        items = self.labels.labelled(self.source(None))
        if len(items) == 0:
            self.failed.emit(f"Label some {self.workspace} first: none of the open ones carries a label.")
            return None
        return self._start_training(_train_items, self.kind, items, name, task, self.workspace)

    def run_model(self, name: str, ids: list[str]) -> Job | None:
        items = self.source(list(ids))
        if len(items) == 0 and not items.errors:
            self.failed.emit(f"Choose the {self.workspace} to run {name} on.")
            return None
        return self._start(_predict_items, name, items, on_result=self.predicted.emit)

    def add_similar_source(self, name: str, items, open_item, describe=None) -> None:
        """find-similar searches ``items(skip_ids)`` too (on a worker; Items not open, ids not
        in ``skip_ids``; an unreadable one or the whole source unreachable is one of its
        ``errors``); a neighbour from it is marked ``name`` and shown by ``open_item(id)``;
        ``describe()`` says what the source covers (shown under the neighbours)."""
        self.similar_sources[name] = (items, open_item, describe)

    def similar_scope(self) -> list[str]:
        """What the sources of the last find-similar cover, then what could not be searched."""
        return [d() for _i, _o, d in self.similar_sources.values() if d is not None] + self.search_notes

    def find_similar(self, query_id: str, top: int = 10, metric: str = "cosine") -> Job:
        library = self.labels.with_labels(self.source(None))
        sources = {name: items for name, (items, _open, _describe) in self.similar_sources.items()}

        def done(result):
            records, self.searched, self.search_notes = result
            self.similar_found.emit(query_id, records)

        return self._start(_similar_items, self.kind, library, query_id, top, sources, self.labels, metric,
                           on_result=done)

    def open_similar(self, record: dict) -> None:
        """Show a neighbour that came from one of the sources (open ones the workspace shows)."""
        source = self.similar_sources.get(record.get("source", ""))
        if source is not None:
            source[1](record["id"])
