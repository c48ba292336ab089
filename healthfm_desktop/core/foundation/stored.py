"""What the user has stored or can reach, as Items for find-similar: the study database's series
and an annotation project's notes (with the user's labels), and the series a PACS query listed."""

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


#: at most this many PACS series per find-similar (one C-FIND and one C-GET of an instance each)
PACS_SERIES_LIMIT = 50
#: series without an image to compare (reports, presentation states, key objects, documents)
NOT_IMAGES = {"SR", "PR", "KO", "DOC", "REG", "RTSTRUCT", "RTPLAN"}


def pacs_series(peer, calling_aet: str, study_uids: list[str], cache_dir: Path, skip: set[str] = frozenset(),
                limit: int = PACS_SERIES_LIMIT, timeouts=None, study_of: dict | None = None) -> Items:
    """One item per image series of the PACS studies ``study_uids`` (id: series UID; payload:
    the grey frame of its middle instance, read lazily), in order, at most ``limit`` series, but
    those in ``skip``. The middle instance is retrieved by C-GET into ``cache_dir`` once; a PACS
    that cannot be reached, or a series that cannot be read, is one of ``errors``.
    ``study_of`` (when given) receives series UID -> study UID."""
    from healthfm_desktop.core.imaging import pacs

    items = Items("image")
    try:
        for study_uid in study_uids:
            for series in pacs.find_series(peer, calling_aet, study_uid, timeouts):
                if series.series_uid in skip or series.modality.upper() in NOT_IMAGES:
                    continue
                if len(items) + len(items.errors) >= limit:
                    items.errors.append(("PACS", f"only the first {limit} series were searched"))
                    return items
                try:
                    path = _cached_middle(peer, calling_aet, study_uid, series.series_uid, Path(cache_dir), timeouts)
                except pacs.PacsError as exc:
                    items.errors.append((series.series_uid, str(exc)))
                    continue
                if path is None:
                    items.errors.append((series.series_uid, "the PACS lists no instance of it"))
                    continue
                items.add(series.series_uid, _middle_frame(path), None)
                if study_of is not None:
                    study_of[series.series_uid] = study_uid
    except pacs.PacsError as exc:
        items.errors.append((peer.label(), str(exc)))
    return items


def _cached_middle(peer, calling_aet: str, study_uid: str, series_uid: str, cache_dir: Path, timeouts) -> Path | None:
    from healthfm_desktop.core.imaging import pacs
    from healthfm_desktop.core.imaging.pacs.filing import safe_uid_name

    folder = cache_dir / safe_uid_name(series_uid)
    cached = sorted(folder.rglob("*.dcm")) if folder.is_dir() else []
    if cached:
        return cached[0]
    instances = pacs.find_instances(peer, calling_aet, study_uid, series_uid, timeouts)
    if not instances:
        return None
    middle = instances[len(instances) // 2]
    result = pacs.run_to_end(pacs.retrieve(peer, calling_aet, study_uid, folder, series_uid=series_uid,
                                           instance_uid=middle.sop_instance_uid,
                                           sop_classes=[middle.sop_class_uid] if middle.sop_class_uid else None,
                                           timeouts=timeouts))
    return result.paths[0] if result.paths else None


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
