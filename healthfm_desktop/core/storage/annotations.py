"""The annotation project file: a SQLite database holding the notes of a project, every
annotator's version of each note, per-note status and the user's term dictionary.

Each save is one SQLite transaction (WAL journal, synchronous=FULL), so the file on disk always
holds either the previous or the new version of a note, never half of one: this is the
autosave that survives a crash."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from healthfm_desktop.core.errors import UnreadableFileError
from healthfm_desktop.core.records.annotation import NOTE_STATUSES, AnnotatedNote
from healthfm_desktop.core.records.labels import LABELS

SCHEMA_VERSION = 1
DEFAULT_ANNOTATOR = "annotator"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS notes (
    id TEXT PRIMARY KEY, position INTEGER NOT NULL, text TEXT NOT NULL, source TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'todo'
);
CREATE TABLE IF NOT EXISTS versions (
    note_id TEXT NOT NULL REFERENCES notes(id) ON DELETE CASCADE, annotator TEXT NOT NULL,
    data TEXT NOT NULL, saved_at REAL NOT NULL, PRIMARY KEY (note_id, annotator)
);
CREATE TABLE IF NOT EXISTS dictionary (term TEXT PRIMARY KEY, label TEXT NOT NULL);
"""


class AnnotationProject:
    """One project file. Safe to use from one thread at a time per instance (a lock guards it)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise UnreadableFileError(f"{self.path.name} is not a HealthFM annotation project ({exc})") from None
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise UnreadableFileError(f"{self.path.name} was written by a newer HealthFM (project version {row[0]})")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- notes -------------------------------------------------------------------------
    def add_note(self, note_id: str, text: str, source: str = "") -> bool:
        """Add a note (False when a note with this id is already in the project)."""
        with self._lock:
            position = self._db.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM notes").fetchone()[0]
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO notes (id, position, text, source) VALUES (?, ?, ?, ?)", (note_id, position, text, source)
            )
            return cursor.rowcount == 1

    def note_ids(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT id FROM notes ORDER BY position")]

    def note_text(self, note_id: str) -> str:
        with self._lock:
            row = self._db.execute("SELECT text FROM notes WHERE id=?", (note_id,)).fetchone()
        if row is None:
            raise KeyError(note_id)
        return row[0]

    def set_status(self, note_id: str, status: str) -> None:
        if status not in NOTE_STATUSES:
            raise ValueError(f"status must be one of {NOTE_STATUSES}")
        with self._lock:
            self._db.execute("UPDATE notes SET status=? WHERE id=?", (status, note_id))

    def status(self, note_id: str) -> str:
        with self._lock:
            row = self._db.execute("SELECT status FROM notes WHERE id=?", (note_id,)).fetchone()
        return row[0] if row else "todo"

    def statuses(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT id, status FROM notes ORDER BY position").fetchall())

    # --- annotator versions --------------------------------------------------------------
    def save(self, note: AnnotatedNote, annotator: str = DEFAULT_ANNOTATOR) -> None:
        """Write this annotator's version of the note in one transaction."""
        data = json.dumps(note.to_json(), ensure_ascii=False)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT OR IGNORE INTO notes (id, position, text, source) VALUES (?, (SELECT COALESCE(MAX(position), -1) + 1 FROM notes), ?, ?)",
                    (note.id, note.text, note.source),
                )
                self._db.execute(
                    "INSERT OR REPLACE INTO versions (note_id, annotator, data, saved_at) VALUES (?, ?, ?, ?)",
                    (note.id, annotator, data, time.time()),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def load(self, note_id: str, annotator: str = DEFAULT_ANNOTATOR) -> AnnotatedNote | None:
        with self._lock:
            row = self._db.execute("SELECT data FROM versions WHERE note_id=? AND annotator=?", (note_id, annotator)).fetchone()
        return AnnotatedNote.from_json(json.loads(row[0])) if row else None

    def annotators(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT DISTINCT annotator FROM versions ORDER BY annotator")]

    # --- user dictionary --------------------------------------------------------------------
    def set_term(self, term: str, label: str) -> None:
        if label not in LABELS:
            raise ValueError(f"unknown label {label!r}")
        term = " ".join(term.split())
        if not term:
            raise ValueError("empty term")
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO dictionary VALUES (?, ?)", (term, label))

    def remove_term(self, term: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM dictionary WHERE term=?", (term,))

    def terms(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(t, label) for t, label in self._db.execute("SELECT term, label FROM dictionary ORDER BY term")]
