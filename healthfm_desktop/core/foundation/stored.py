"""What the user has stored, as Items for find-similar: every series of the study database (its
middle instance) and every note of an annotation project, with the user's labels."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from healthfm_desktop.core.errors import UnreadableFileError, UserFacingError
from healthfm_desktop.core.foundation.datasets import Items

STUDY_TABLES = {"patients", "studies", "series", "instances"}
PROJECT_TABLES = {"notes", "versions"}


def sqlite_tables(path: Path) -> set[str] | None:
    """The table names of a SQLite file, read-only (None when ``path`` is not one): a store is
    recognised before it is opened, because opening it the usual way would add our tables."""
    try:
        with open(path, "rb") as handle:
            if handle.read(16) != b"SQLite format 3\x00":
                return None
        connection = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        try:
            return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            connection.close()
    except (OSError, sqlite3.DatabaseError):
        return None


def _middle_frame(path: Path):
    from healthfm_desktop.core.imaging.ai.preprocessing import read_image

    return lambda: read_image(path).pixels


def stored_series(database, lazy: bool = True, skip: set[str] = frozenset()) -> Items:
    """One item per stored series (id: its series UID; payload: the middle instance's grey frame,
    a loader when ``lazy``), except the ids in ``skip`` (those already open)."""
    items = Items("image")
    for study in database.search(limit=1_000_000):
        for row in database.series(study.study_uid):
            if row.series_uid in skip:
                continue
            paths = database.instance_paths(series_uid=row.series_uid)
            if not paths:
                continue
            load = _middle_frame(paths[len(paths) // 2])
            try:
                items.add(row.series_uid, load if lazy else load(), None)
            except UserFacingError as exc:  # a stored file that moved or broke
                items.errors.append((row.series_uid, str(exc)))
    return items


def stored_notes(project) -> Items:
    items = Items("text")
    for note_id in project.note_ids():
        text = project.note_text(note_id)
        if text.strip():
            items.add(note_id, text, None)
    return items


def read_store(kind: str, path: Path) -> Items | None:
    """The items of a study database (images) or an annotation project (text) at ``path``, with
    the user's labels of that workspace; None when ``path`` is not a store of that kind."""
    from healthfm_desktop.core.foundation.labelling import LabelSession

    tables = sqlite_tables(path)
    if tables is None:
        return None
    if kind == "image" and STUDY_TABLES <= tables:
        from healthfm_desktop.core.storage.studies import StudyDatabase, StudyDatabaseError

        try:
            database = StudyDatabase(path)
        except StudyDatabaseError as exc:
            raise UnreadableFileError(str(exc)) from None
        try:
            items = stored_series(database, lazy=False)
        finally:
            database.close()
        workspace = "images"
    elif kind == "text" and PROJECT_TABLES <= tables:
        from healthfm_desktop.core.storage.annotations import AnnotationProject

        project = AnnotationProject(path)
        try:
            items = stored_notes(project)
        finally:
            project.close()
        workspace = "notes"
    else:
        raise UnreadableFileError(f"a SQLite file that is not a {'study database' if kind == 'image' else 'annotation project'}")
    return LabelSession(workspace).with_labels(items)
