"""Notes workspace controller: opens notes into an annotation project, pre-annotates them with
the clinical pipeline on a worker, holds the current annotator's versions, applies the user's
edits as undoable commands (QUndoStack), autosaves them to the project file, exports, and
computes inter-annotator agreement."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from healthfm_desktop.controllers.base import WorkspaceController
from healthfm_desktop.controllers.workers import Progress
from healthfm_desktop.core.paths import user_data_dir
from healthfm_desktop.core.records.annotation import NOTE_STATUSES, AnnotatedNote, Entity
from healthfm_desktop.core.records.labels import ASSERTIONS, LABELS
from healthfm_desktop.core.routing import NOTES
from healthfm_desktop.core.storage.annotations import DEFAULT_ANNOTATOR, AnnotationProject

log = logging.getLogger(__name__)
AUTOSAVE_DELAY_MS = 400
EXPORT_FORMATS = ("jsonl", "brat", "fhir", "docbin")


def default_project_path() -> Path:
    return user_data_dir() / "notes_project.hfmnotes"


# --- work done on workers (plain functions / generators, no Qt) ------------------------------


def _read_into_project(project: AnnotationProject, paths: list[Path]):
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
        added.append(note_id)
    return added, problems


PRE_ANNOTATE_BATCH = 8


def _pre_annotate(project: AnnotationProject, note_ids: list[str], annotator: str, user_terms: list[tuple[str, str]]):
    """Generator job: annotate notes with no saved version yet; yields Progress, returns ids."""
    from healthfm_desktop.core.records.pipeline import build_pipeline

    todo = [n for n in note_ids if project.load(n, annotator) is None]
    if not todo:
        return []
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


def _export(notes: list[AnnotatedNote], fmt: str, destination: Path) -> str:
    from healthfm_desktop.core.records import export

    if fmt == "jsonl":
        from healthfm_desktop.core.storage.atomic import atomic_write_text

        atomic_write_text(destination, "".join(export.note_to_jsonl_line(n) for n in notes))
    elif fmt == "docbin":
        export.write_docbin(notes, destination)
    else:
        destination.mkdir(parents=True, exist_ok=True)
        for note in notes:
            if fmt == "brat":
                export.write_brat_files(note, destination)
            else:
                export.write_fhir_file(note, destination)
    return f"exported {len(notes)} note(s) as {fmt} to {destination}"


# --- undoable edits ------------------------------------------------------------------------------


class _EntitiesCommand(QUndoCommand):
    """Replaces a note's entity list; undo puts the previous list back."""

    def __init__(self, controller: "NotesController", note_id: str, before: list[Entity], after: list[Entity], text: str):
        super().__init__(text)
        self.controller, self.note_id = controller, note_id
        self.before, self.after = before, after

    def redo(self) -> None:
        self.controller._replace_entities(self.note_id, copy.deepcopy(self.after))

    def undo(self) -> None:
        self.controller._replace_entities(self.note_id, copy.deepcopy(self.before))


class NotesController(WorkspaceController):
    name = NOTES
    title = "Notes"

    notes_added = Signal(list)  # note ids, in project order
    note_changed = Signal(str)  # a note's entities changed (pre-annotation, edit, undo)
    status_changed = Signal(str, str)  # note id, status
    annotation_finished = Signal(list)  # note ids just pre-annotated
    saved = Signal(str)  # note id written to the project file

    def __init__(self, parent=None, project_path: Path | None = None):
        super().__init__(parent)
        self.annotator = DEFAULT_ANNOTATOR
        self.undo_stack = QUndoStack(self)
        self._notes: dict[str, AnnotatedNote] = {}
        self._dirty: set[str] = set()
        self._autosave = QTimer(self, singleShot=True, interval=AUTOSAVE_DELAY_MS)
        self._autosave.timeout.connect(self.save_now)
        self.project = AnnotationProject(project_path or default_project_path())

    # --- project --------------------------------------------------------------------------
    def restore(self) -> list[str]:
        """Load what the project file holds (after a restart or a crash)."""
        ids = self.project.note_ids()
        for note_id in ids:
            self._load(note_id)
        if ids:
            self.notes_added.emit(ids)
        return ids

    def open_project(self, path: Path) -> list[str]:
        self.save_now()
        self.project.close()
        self.project = AnnotationProject(path)
        self._notes.clear()
        self.undo_stack.clear()
        return self.restore()

    def note_ids(self) -> list[str]:
        return self.project.note_ids()

    def note(self, note_id: str) -> AnnotatedNote:
        return self._notes.get(note_id) or self._load(note_id)

    def _load(self, note_id: str) -> AnnotatedNote:
        note = self.project.load(note_id, self.annotator)
        if note is None:
            note = AnnotatedNote(id=note_id, text=self.project.note_text(note_id))
        self._notes[note_id] = note
        return note

    def is_annotated(self, note_id: str) -> bool:
        return self.project.load(note_id, self.annotator) is not None

    def set_annotator(self, name: str) -> None:
        """Switch to another annotator's versions (their own copies of the notes)."""
        name = name.strip() or DEFAULT_ANNOTATOR
        self.save_now()
        self.annotator = name
        self._notes.clear()
        self.undo_stack.clear()
        ids = self.project.note_ids()
        for note_id in ids:
            self._load(note_id)
            self.note_changed.emit(note_id)
        self.annotate(ids)

    # --- opening and pre-annotation ---------------------------------------------------------------
    def open_paths(self, paths: list[Path]) -> None:
        self.start_job(_read_into_project, self.project, [Path(p) for p in paths], on_result=self._on_read)

    def _on_read(self, result) -> None:
        added, problems = result
        for problem in problems:
            self.message.emit("warning", problem)
        if added:
            for note_id in added:
                self._load(note_id)
            self.notes_added.emit(added)
            self.annotate(added)
        elif not problems:
            self.message.emit("warning", "no notes found in what was opened")

    def annotate(self, note_ids: list[str]) -> None:
        """Pre-annotate the notes that have no version of the current annotator yet."""
        self.start_job(_pre_annotate, self.project, list(note_ids), self.annotator, self.project.terms(), on_result=self._on_annotated)

    def _on_annotated(self, done: list[str]) -> None:
        for note_id in done:
            self._load(note_id)
            self.note_changed.emit(note_id)
        self.annotation_finished.emit(done)

    # --- edits (undoable) --------------------------------------------------------------------------
    def _push(self, note_id: str, change: Callable[[list[Entity]], list[Entity]], text: str) -> None:
        before = copy.deepcopy(self.note(note_id).entities)
        after = change(copy.deepcopy(before))
        if [e.to_json() for e in after] == [e.to_json() for e in before]:
            return
        self.undo_stack.push(_EntitiesCommand(self, note_id, before, after, text))

    def _replace_entities(self, note_id: str, entities: list[Entity]) -> None:
        note = self.note(note_id)
        note.entities = entities
        note.assign_ids()
        if self.project.status(note_id) == "todo":
            self.set_status(note_id, "in_progress")
        self._dirty.add(note_id)
        self._autosave.start()
        self.note_changed.emit(note_id)

    def add_entity(self, note_id: str, start: int, end: int, label: str) -> None:
        note = self.note(note_id)
        if label not in LABELS:
            raise ValueError(f"unknown label {label}")
        while start < end and note.text[start].isspace():
            start += 1
        while end > start and note.text[end - 1].isspace():
            end -= 1
        if start >= end:
            return

        def change(entities):
            kept = [e for e in entities if e.end <= start or e.start >= end]  # a new span replaces what it overlaps
            section = note.section_at(start)
            kept.append(Entity(start, end, label, note.text[start:end], section=section, source="annotator", status="manual"))
            return kept

        self._push(note_id, change, f"label {label}")

    def remove_entity(self, note_id: str, entity_id: str) -> None:
        self._push(note_id, lambda es: [e for e in es if e.id != entity_id], "delete span")

    def _edit(self, note_id: str, entity_id: str, edit: Callable[[Entity], None], text: str) -> None:
        def change(entities):
            for e in entities:
                if e.id == entity_id:
                    edit(e)
            return entities

        self._push(note_id, change, text)

    def set_label(self, note_id: str, entity_id: str, label: str) -> None:
        if label not in LABELS:
            raise ValueError(f"unknown label {label}")

        def edit(e: Entity) -> None:
            e.label = label
            e.status = "accepted" if e.status == "pre" else e.status

        self._edit(note_id, entity_id, edit, f"relabel as {label}")

    def toggle_assertion(self, note_id: str, entity_id: str, attribute: str) -> None:
        if attribute not in ASSERTIONS:
            raise ValueError(f"unknown attribute {attribute}")

        def edit(e: Entity) -> None:
            setattr(e, attribute, not getattr(e, attribute))
            e.status = "accepted" if e.status == "pre" else e.status

        self._edit(note_id, entity_id, edit, f"toggle {attribute}")

    def accept(self, note_id: str, entity_id: str) -> None:
        self._edit(note_id, entity_id, lambda e: setattr(e, "status", "accepted" if e.status == "pre" else e.status), "accept span")

    def accept_all(self, note_id: str) -> None:
        def change(entities):
            for e in entities:
                if e.status == "pre":
                    e.status = "accepted"
            return entities

        self._push(note_id, change, "accept all")

    def reject_all(self, note_id: str) -> None:
        self._push(note_id, lambda es: [e for e in es if e.status != "pre"], "reject all pre-annotations")

    def set_status(self, note_id: str, status: str) -> None:
        if status not in NOTE_STATUSES:
            raise ValueError(status)
        self.project.set_status(note_id, status)
        self.status_changed.emit(note_id, status)

    def status(self, note_id: str) -> str:
        return self.project.status(note_id)

    # --- saving, dictionary, export, agreement ---------------------------------------------
    def save_now(self) -> None:
        """Write every changed note now (the autosave timer calls this)."""
        for note_id in sorted(self._dirty):
            if note_id in self._notes:
                self.project.save(self._notes[note_id], self.annotator)
                self.saved.emit(note_id)
        self._dirty.clear()

    def add_term(self, term: str, label: str) -> None:
        """Add to the user's dictionary; it wins over every other source on the next annotation."""
        self.project.set_term(term, label)

    def reannotate(self, note_id: str) -> None:
        """Throw away this annotator's version of a note and pre-annotate it again (undoable)."""
        from healthfm_desktop.core.records.pipeline import build_pipeline

        def work():
            return build_pipeline(self.project.terms()).annotate(self.project.note_text(note_id), note_id)

        def done(new: AnnotatedNote) -> None:
            self._push(note_id, lambda _es: new.entities, "re-annotate")
            self.note(note_id).sections = new.sections

        self.start_job(work, on_result=done)

    def export(self, note_ids: list[str], fmt: str, destination: Path) -> None:
        if fmt not in EXPORT_FORMATS:
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

    def annotators(self) -> list[str]:
        return self.project.annotators()
