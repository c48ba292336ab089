"""The notes workspace's state without Qt: the project, the current annotator's notes, every
edit as an undoable change with one undo history per note, and events that the controller (or
a test, or a script) subscribes to."""

from __future__ import annotations

import copy
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from healthfm_desktop.core.records.annotation import NOTE_STATUSES, AnnotatedNote, Entity, Trigger
from healthfm_desktop.core.records.labels import ASSERTIONS, LABELS
from healthfm_desktop.core.storage.annotations import DEFAULT_ANNOTATOR, AnnotationProject

GOLD_ANNOTATOR = "gold"  # the version a .ann file or a JSONL record's spans bring with the note
_WORD_CHAR = re.compile(r"\w")


def snap_to_words(text: str, start: int, end: int) -> tuple[int, int]:
    """A selection widened to whole words ("o demonstrate a" -> "to demonstrate a") and stripped
    of surrounding whitespace; punctuation at its edges is kept as the user selected it."""
    start, end = min(len(text), max(0, min(start, end))), min(len(text), max(start, end))
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start >= end:
        return start, start
    while start > 0 and _WORD_CHAR.match(text[start]) and _WORD_CHAR.match(text[start - 1]):
        start -= 1
    while end < len(text) and _WORD_CHAR.match(text[end - 1]) and _WORD_CHAR.match(text[end]):
        end += 1
    return start, end


class Events:
    """Named events with plain callbacks (napari-style, without Qt)."""

    def __init__(self, *names: str):
        self._callbacks: dict[str, list[Callable]] = {name: [] for name in names}

    def connect(self, name: str, callback: Callable) -> None:
        self._callbacks[name].append(callback)

    def emit(self, name: str, *args) -> None:
        for callback in list(self._callbacks[name]):
            callback(*args)


@dataclass
class _Change:
    text: str
    before: list[Entity]
    after: list[Entity]


class NotesSession:
    """Events: ``note_changed(note_id)``, ``status_changed(note_id, status)``,
    ``history_changed(note_id)``, ``annotator_changed(name)``."""

    def __init__(self, project: AnnotationProject, annotator: str = DEFAULT_ANNOTATOR):
        self.project = project
        self.annotator = annotator
        self.events = Events("note_changed", "status_changed", "history_changed", "annotator_changed")
        self._notes: dict[str, AnnotatedNote] = {}
        self._undo: dict[str, list[_Change]] = defaultdict(list)
        self._redo: dict[str, list[_Change]] = defaultdict(list)
        self.dirty: set[str] = set()

    # --- notes -----------------------------------------------------------------------------
    def note(self, note_id: str) -> AnnotatedNote:
        return self._notes.get(note_id) or self.reload(note_id)

    def reload(self, note_id: str) -> AnnotatedNote:
        note = self.project.load(note_id, self.annotator)
        if note is None:
            note = AnnotatedNote(id=note_id, text=self.project.note_text(note_id))
        self._notes[note_id] = note
        return note

    def forget_all(self) -> None:
        """After switching projects or annotators: no note, no history is kept."""
        self._notes.clear()
        self._undo.clear()
        self._redo.clear()
        self.dirty.clear()

    def set_annotator(self, name: str) -> None:
        self.annotator = name.strip() or DEFAULT_ANNOTATOR
        self.forget_all()
        self.events.emit("annotator_changed", self.annotator)

    def gold(self, note_id: str) -> AnnotatedNote | None:
        return self.project.load(note_id, GOLD_ANNOTATOR)

    # --- undo history, one per note --------------------------------------------------------
    def can_undo(self, note_id: str | None) -> bool:
        return bool(note_id and self._undo.get(note_id))

    def can_redo(self, note_id: str | None) -> bool:
        return bool(note_id and self._redo.get(note_id))

    def undo_text(self, note_id: str | None) -> str:
        return self._undo[note_id][-1].text if self.can_undo(note_id) else ""

    def redo_text(self, note_id: str | None) -> str:
        return self._redo[note_id][-1].text if self.can_redo(note_id) else ""

    def undo(self, note_id: str) -> None:
        if self.can_undo(note_id):
            change = self._undo[note_id].pop()
            self._redo[note_id].append(change)
            self._replace(note_id, copy.deepcopy(change.before))

    def redo(self, note_id: str) -> None:
        if self.can_redo(note_id):
            change = self._redo[note_id].pop()
            self._undo[note_id].append(change)
            self._replace(note_id, copy.deepcopy(change.after))

    def apply(self, note_id: str, change: Callable[[list[Entity]], list[Entity]], text: str) -> None:
        """Run ``change`` on a copy of the note's entities and keep it as one undoable step."""
        before = copy.deepcopy(self.note(note_id).entities)
        after = change(copy.deepcopy(before))
        if [e.to_json() for e in after] == [e.to_json() for e in before]:
            return
        self._undo[note_id].append(_Change(text, before, copy.deepcopy(after)))
        self._redo[note_id].clear()
        self._replace(note_id, after)

    def _replace(self, note_id: str, entities: list[Entity]) -> None:
        note = self.note(note_id)
        note.entities = entities
        note.assign_ids()
        if self.project.status(note_id) == "todo":
            self.set_status(note_id, "in_progress")
        self.dirty.add(note_id)
        self.events.emit("note_changed", note_id)
        self.events.emit("history_changed", note_id)

    def replace_all(self, note_id: str, new: AnnotatedNote, text: str) -> None:
        """A re-annotation: its entities and sections, as one undoable step."""
        self.note(note_id).sections = new.sections
        self.apply(note_id, lambda _entities: copy.deepcopy(new.entities), text)

    # --- edits ---------------------------------------------------------------------------------
    def add_entity(self, note_id: str, start: int, end: int, label: str) -> Entity | None:
        """Label a selection, snapped to whole words; it replaces the spans it overlaps."""
        if label not in LABELS:
            raise ValueError(f"unknown label {label}")
        note = self.note(note_id)
        start, end = snap_to_words(note.text, start, end)
        if start >= end:
            return None

        def change(entities):
            kept = [e for e in entities if e.end <= start or e.start >= end]
            kept.append(Entity(start, end, label, note.text[start:end], section=note.section_at(start), source="annotator", status="manual"))
            return kept

        self.apply(note_id, change, f"label {label}")
        return next((e for e in self.note(note_id).entities if (e.start, e.end, e.label) == (start, end, label)), None)

    def remove_entity(self, note_id: str, entity_id: str) -> None:
        self.apply(note_id, lambda es: [e for e in es if e.id != entity_id], "delete span")

    def _edit(self, note_id: str, entity_id: str, edit: Callable[[Entity], None], text: str) -> None:
        def change(entities):
            for e in entities:
                if e.id == entity_id:
                    edit(e)
            return entities

        self.apply(note_id, change, text)

    def set_label(self, note_id: str, entity_id: str, label: str) -> None:
        if label not in LABELS:
            raise ValueError(f"unknown label {label}")

        def edit(e: Entity) -> None:
            e.label = label
            e.status = "accepted" if e.status == "pre" else e.status

        self._edit(note_id, entity_id, edit, f"relabel as {label}")

    def toggle_assertion(self, note_id: str, entity_id: str, attribute: str) -> None:
        """Flip an assertion; the machine's reason for it goes, and the span says it was the
        annotator's decision (so "why" shows what the user did)."""
        if attribute not in ASSERTIONS:
            raise ValueError(f"unknown attribute {attribute}")

        def edit(e: Entity) -> None:
            value = not getattr(e, attribute)
            setattr(e, attribute, value)
            e.triggers = [t for t in e.triggers if t.attribute != attribute]
            e.triggers.append(Trigger(attribute, e.start, e.start, "", e.start, e.end, "MANUAL_SET" if value else "MANUAL_CLEARED"))
            e.status = "accepted" if e.status == "pre" else e.status

        self._edit(note_id, entity_id, edit, f"toggle {attribute}")

    def accept(self, note_id: str, entity_id: str) -> None:
        self._edit(note_id, entity_id, lambda e: setattr(e, "status", "accepted" if e.status == "pre" else e.status), "accept span")

    def accept_all(self, note_id: str, below: float | None = None) -> None:
        """Accept every pre-annotation (``below``: only those whose confidence is at least it)."""

        def change(entities):
            for e in entities:
                if e.status == "pre" and (below is None or e.confidence >= below):
                    e.status = "accepted"
            return entities

        self.apply(note_id, change, "accept all")

    def reject_all(self, note_id: str, below: float | None = None) -> None:
        """Remove every pre-annotation (``below``: only those less confident than it)."""
        self.apply(note_id, lambda es: [e for e in es if e.status != "pre" or (below is not None and e.confidence >= below)], "reject pre-annotations")

    def set_status(self, note_id: str, status: str) -> None:
        if status not in NOTE_STATUSES:
            raise ValueError(status)
        self.project.set_status(note_id, status)
        self.events.emit("status_changed", note_id, status)

    # --- review order ------------------------------------------------------------------------
    def review_order(self, note_id: str, threshold: float = 0.0, low_confidence_first: bool = False) -> list[str]:
        """Ids of the spans to visit: in text order, or the least confident first; pre-annotations
        below ``threshold`` are left out (they are hidden as too uncertain)."""
        entities = [e for e in self.note(note_id).entities if e.status != "pre" or e.confidence >= threshold]
        if low_confidence_first:
            entities.sort(key=lambda e: (e.status != "pre", e.confidence, e.start))
        return [e.id for e in entities]

    def neighbour(self, note_id: str, current: str | None, step: int, unreviewed_only: bool = False, threshold: float = 0.0, low_confidence_first: bool = False) -> str | None:
        """The next (step 1) or previous (step -1) span after ``current`` in review order."""
        order = self.review_order(note_id, threshold, low_confidence_first)
        if unreviewed_only:
            pre = {e.id for e in self.note(note_id).entities if e.status == "pre"}
            candidates = [i for i in order if i in pre or i == current]
        else:
            candidates = order
        if not candidates:
            return None
        if current not in candidates:
            return candidates[0] if step > 0 else candidates[-1]
        index = candidates.index(current) + step
        if unreviewed_only and len(candidates) == 1:
            return None
        return candidates[index % len(candidates)]

    # --- saving ----------------------------------------------------------------------------------
    def save_dirty(self) -> list[str]:
        saved = []
        for note_id in sorted(self.dirty):
            if note_id in self._notes:
                self.project.save(self._notes[note_id], self.annotator)
                saved.append(note_id)
        self.dirty.clear()
        return saved
