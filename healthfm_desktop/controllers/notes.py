"""Notes workspace controller: starts the work (reading notes, pre-annotating them with the
clinical pipeline, exporting) on workers and passes the Qt-free NotesSession's events on as
signals; the session (core/records/session.py) holds the state, the edits and the per-note
undo histories. Changes are autosaved to the project file shortly after they happen."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

from PySide6.QtCore import QTimer, Signal

from healthfm_desktop.controllers.base import WorkspaceController
from healthfm_desktop.controllers.workers import Progress
from healthfm_desktop.core.paths import user_data_dir
from healthfm_desktop.core.records.annotation import AnnotatedNote, Entity
from healthfm_desktop.core.records.session import GOLD_ANNOTATOR, NotesSession
from healthfm_desktop.core.routing import NOTES
from healthfm_desktop.core.storage.annotations import DEFAULT_ANNOTATOR, AnnotationProject

log = logging.getLogger(__name__)
AUTOSAVE_DELAY_MS = 400


def default_project_path() -> Path:
    return user_data_dir() / "notes_project.hfmnotes"


# --- work done on workers (plain functions / generators, no Qt) ------------------------------


def _read_into_project(project: AnnotationProject, paths: list[Path], annotator: str = DEFAULT_ANNOTATOR):
    """Notes into the project; a note that brings its own spans (a brat .ann beside the .txt, or
    a JSONL record's "spans") keeps them as the "gold" version and as the annotator's starting
    version, to review or compare instead of a pre-annotation."""
    from healthfm_desktop.core.records.notes_io import BadRecord, read_notes

    added, problems = [], []
    for item in read_notes(paths):
        if isinstance(item, BadRecord):
            problems.append(f"{Path(item.where.split(':')[0]).name}: {item.reason}" if ":" in item.where else f"{item.where}: {item.reason}")
            continue
        note_id = item.id
        suffix = 2
        while not project.add_note(note_id, item.text, item.source):
            if project.note_text(note_id) == item.text:
                break  # the same note opened again: keep the user's work on it
            note_id = f"{item.id}_{suffix}"
            suffix += 1
        if item.gold is not None:
            gold = copy.deepcopy(item.gold)
            gold.id = note_id
            project.save(gold, GOLD_ANNOTATOR)
            if project.load(note_id, annotator) is None:
                project.save(gold, annotator)
        added.append(note_id)
    return added, problems


PRE_ANNOTATE_BATCH = 8


def _pre_annotate(project: AnnotationProject, note_ids: list[str], annotator: str, user_terms: list[tuple[str, str]],
                  scheduler: str = ""):
    """Generator job: annotate notes with no saved version yet; yields Progress, returns ids.
    With a scheduler (Settings > Compute) the notes are annotated on that Dask cluster, by the
    task `notes annotate --scheduler` runs: the same entities as here."""
    from healthfm_desktop.core.records.pipeline import build_pipeline

    todo = [n for n in note_ids if project.load(n, annotator) is None]
    if not todo:
        return []
    if scheduler:
        return (yield from _pre_annotate_on_cluster(project, todo, annotator, user_terms, scheduler))
    yield Progress(0.0, "loading the clinical pipeline")
    pipeline = build_pipeline(user_terms)
    done = []
    # a few notes per pipeline call: the tagger batches their sentences together, and the
    # pipeline (one lock) is free between calls for the annotator's own span checks
    for begin in range(0, len(todo), PRE_ANNOTATE_BATCH):
        batch = todo[begin : begin + PRE_ANNOTATE_BATCH]
        for note_id, note in zip(batch, pipeline.annotate_many((n, project.note_text(n)) for n in batch)):
            project.save(note, annotator)
            done.append(note_id)
            yield Progress(len(done) / len(todo), f"pre-annotated {len(done)} of {len(todo)} notes")
    return done


def _pre_annotate_on_cluster(project: AnnotationProject, todo: list[str], annotator: str,
                             user_terms: list[tuple[str, str]], scheduler: str):
    from healthfm_desktop.core.cluster import chunked, cluster_state, compute_client, describe_state, map_ordered
    from healthfm_desktop.core.records.pipeline import annotate_chunk

    done: list[str] = []
    with compute_client(scheduler) as client:
        where = describe_state(cluster_state(client))
        yield Progress(0.0, f"pre-annotating {len(todo)} notes on {where}")
        batches = list(chunked(todo, PRE_ANNOTATE_BATCH))
        texts = ([(n, project.note_text(n)) for n in batch] for batch in batches)
        terms = tuple(map(tuple, user_terms))
        for batch, notes in zip(batches, map_ordered(annotate_chunk, texts, terms, client=client, label="pre-annotate")):
            for note_id, note in zip(batch, notes):
                project.save(note, annotator)
                done.append(note_id)
            yield Progress(len(done) / len(todo), f"pre-annotated {len(done)} of {len(todo)} notes on {where}")
    return done


def _export(notes: list[AnnotatedNote], fmt: str, destination: Path) -> str:
    from healthfm_desktop.core.records.export import export_notes

    written = sum(1 for _ in export_notes(notes, fmt, destination))
    return f"exported {written} note(s) as {fmt} to {destination}"


class NotesController(WorkspaceController):
    name = NOTES
    title = "Notes"

    notes_added = Signal(list)  # note ids, in project order
    note_changed = Signal(str)  # a note's entities changed (pre-annotation, edit, undo)
    status_changed = Signal(str, str)  # note id, status
    annotation_finished = Signal(list)  # note ids just pre-annotated
    saved = Signal(str)  # note id written to the project file

    history_changed = Signal(str)  # a note's undo history changed

    def __init__(self, parent=None, project_path: Path | None = None):
        super().__init__(parent)
        self._autosave = QTimer(self, singleShot=True, interval=AUTOSAVE_DELAY_MS)
        self._autosave.timeout.connect(self.save_now)
        self._connect(NotesSession(AnnotationProject(project_path or default_project_path())))
        from healthfm_desktop.controllers.adaptation import WorkspaceAdaptation

        self.adaptation = WorkspaceAdaptation("notes", "text", self.adaptation_items, parent=self)

    def adaptation_items(self, ids: list[str] | None):
        """Items (note id, its text, read on the worker) for labelling, training, running and similarity."""
        from healthfm_desktop.core.foundation.datasets import Items

        items = Items("text")
        project = self.project
        for note_id in self.project.note_ids() if ids is None else ids:
            items.add(note_id, lambda note_id=note_id: project.note_text(note_id), None)
        return items

    def _connect(self, session: NotesSession) -> None:
        self.session = session
        session.events.connect("note_changed", self._session_note_changed)
        session.events.connect("status_changed", self.status_changed.emit)
        session.events.connect("history_changed", self.history_changed.emit)

    def _session_note_changed(self, note_id: str) -> None:
        self._autosave.start()
        self.note_changed.emit(note_id)

    @property
    def project(self) -> AnnotationProject:
        return self.session.project

    @property
    def annotator(self) -> str:
        return self.session.annotator

    # --- project --------------------------------------------------------------------------
    def restore(self) -> list[str]:
        """Load what the project file holds (after a restart or a crash)."""
        ids = self.project.note_ids()
        for note_id in ids:
            self.session.reload(note_id)
        if ids:
            self.notes_added.emit(ids)
        return ids

    def open_project(self, path: Path) -> list[str]:
        self.save_now()
        self.project.close()
        self._connect(NotesSession(AnnotationProject(path), self.annotator))
        return self.restore()

    def note_ids(self) -> list[str]:
        return self.project.note_ids()

    def note(self, note_id: str) -> AnnotatedNote:
        return self.session.note(note_id)

    def gold(self, note_id: str) -> AnnotatedNote | None:
        return self.session.gold(note_id)

    def is_annotated(self, note_id: str) -> bool:
        return self.project.load(note_id, self.annotator) is not None

    def set_annotator(self, name: str) -> None:
        """Switch to another annotator's versions (their own copies of the notes)."""
        self.save_now()
        self.session.set_annotator(name)
        ids = self.project.note_ids()
        for note_id in ids:
            self.session.reload(note_id)
            self.note_changed.emit(note_id)
            self.history_changed.emit(note_id)
        self.annotate(ids)

    # --- opening and pre-annotation ---------------------------------------------------------------
    def open_paths(self, paths: list[Path]) -> None:
        self.start_job(_read_into_project, self.project, [Path(p) for p in paths], self.annotator, on_result=self._on_read)

    def _on_read(self, result) -> None:
        added, problems = result
        for problem in problems:
            self.message.emit("warning", problem)
        if added:
            for note_id in added:
                self.session.reload(note_id)
            self.notes_added.emit(added)
            self.annotate(added)
        elif not problems:
            self.message.emit("warning", "no notes found in what was opened")

    def annotate(self, note_ids: list[str]) -> None:
        """Pre-annotate the notes that have no version of the current annotator yet."""
        from healthfm_desktop.controllers.app import compute_scheduler

        self.start_job(_pre_annotate, self.project, list(note_ids), self.annotator, self.project.terms(),
                       compute_scheduler(), on_result=self._on_annotated)

    def _on_annotated(self, done: list[str]) -> None:
        for note_id in done:
            self.session.reload(note_id)
            self.note_changed.emit(note_id)
        self.annotation_finished.emit(done)

    # --- edits (undoable, one history per note) ---------------------------------------------
    def add_entity(self, note_id: str, start: int, end: int, label: str) -> Entity | None:
        return self.session.add_entity(note_id, start, end, label)

    def remove_entity(self, note_id: str, entity_id: str) -> None:
        self.session.remove_entity(note_id, entity_id)

    def set_label(self, note_id: str, entity_id: str, label: str) -> None:
        self.session.set_label(note_id, entity_id, label)

    def toggle_assertion(self, note_id: str, entity_id: str, attribute: str) -> None:
        self.session.toggle_assertion(note_id, entity_id, attribute)

    def accept(self, note_id: str, entity_id: str) -> None:
        self.session.accept(note_id, entity_id)

    def accept_all(self, note_id: str, below: float | None = None) -> None:
        self.session.accept_all(note_id, below)

    def reject_all(self, note_id: str, below: float | None = None) -> None:
        self.session.reject_all(note_id, below)

    def undo(self, note_id: str) -> None:
        self.session.undo(note_id)

    def redo(self, note_id: str) -> None:
        self.session.redo(note_id)

    def set_status(self, note_id: str, status: str) -> None:
        self.session.set_status(note_id, status)

    def status(self, note_id: str) -> str:
        return self.project.status(note_id)

    # --- saving, dictionary, export, agreement ---------------------------------------------
    def save_now(self) -> None:
        """Write every changed note now (the autosave timer calls this)."""
        for note_id in self.session.save_dirty():
            self.saved.emit(note_id)

    def add_term(self, term: str, label: str) -> None:
        """Add to the user's dictionary; it wins over every other source on the next annotation."""
        self.project.set_term(term, label)

    def reannotate(self, note_id: str) -> None:
        """Throw away this annotator's version of a note and pre-annotate it again (undoable)."""
        from healthfm_desktop.core.records.pipeline import build_pipeline

        def work():
            return build_pipeline(self.project.terms()).annotate(self.project.note_text(note_id), note_id)

        def done(new: AnnotatedNote) -> None:
            self.session.replace_all(note_id, new, "re-annotate")

        self.start_job(work, on_result=done)

    def export(self, note_ids: list[str], fmt: str, destination: Path) -> None:
        from healthfm_desktop.core.records.export import EXPORTERS

        if fmt not in EXPORTERS:
            raise ValueError(fmt)
        self.save_now()
        notes = [copy.deepcopy(self.note(n)) for n in note_ids]
        self.start_job(_export, notes, fmt, Path(destination), on_result=lambda text: self.message.emit("info", text))

    def agreement(self, first: str, second: str) -> dict:
        from healthfm_desktop.core.records.agreement import agreement

        self.save_now()
        ids = self.project.note_ids()
        a = [n for n in (self.project.load(i, first) for i in ids) if n]
        b = [n for n in (self.project.load(i, second) for i in ids) if n]
        return agreement(a, b)

    def compare_with_gold(self, note_id: str) -> str:
        """A sentence comparing this annotator's version of a note with its gold spans."""
        from healthfm_desktop.core.records.agreement import agreement

        gold = self.gold(note_id)
        if gold is None:
            return "this note has no gold spans (open a .txt with its .ann beside it, or JSONL with spans)"
        result = agreement([gold], [self.note(note_id)])
        return f"against the gold spans ({len(gold.entities)}): exact span F1 {result['exact_span_f1']:.3f}, relaxed {result['relaxed_span_f1']:.3f}"

    def annotators(self) -> list[str]:
        return self.project.annotators()
