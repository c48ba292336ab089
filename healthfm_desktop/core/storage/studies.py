"""The local study database: patients, studies, series and instances (with their file paths),
in SQLite (WAL, one transaction per import). Filled on import, drag-drop and PACS retrieval
alike; duplicates are recognised by SOP Instance UID; missing or damaged files are reported."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from healthfm_desktop.core.errors import UnreadableFileError, UserFacingError
from healthfm_desktop.core.paths import user_data_dir

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS patients (
    id INTEGER PRIMARY KEY,
    patient_id TEXT NOT NULL,
    patient_name TEXT NOT NULL,
    birth_date TEXT NOT NULL DEFAULT '',
    sex TEXT NOT NULL DEFAULT '',
    UNIQUE (patient_id, patient_name)
);
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY,
    patient INTEGER NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    study_date TEXT NOT NULL DEFAULT '',
    study_time TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    accession_number TEXT NOT NULL DEFAULT '',
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL REFERENCES studies(study_uid) ON DELETE CASCADE,
    modality TEXT NOT NULL DEFAULT '',
    number INTEGER,
    description TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY,
    series_uid TEXT NOT NULL REFERENCES series(series_uid) ON DELETE CASCADE,
    sop_class TEXT NOT NULL DEFAULT '',
    number INTEGER,
    transfer_syntax TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS patients_by_name ON patients(patient_name COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS patients_by_id ON patients(patient_id);
CREATE INDEX IF NOT EXISTS studies_by_patient ON studies(patient);
CREATE INDEX IF NOT EXISTS studies_by_date ON studies(study_date);
CREATE INDEX IF NOT EXISTS series_by_study ON series(study_uid);
CREATE INDEX IF NOT EXISTS instances_by_series ON instances(series_uid);
CREATE INDEX IF NOT EXISTS instances_by_path ON instances(path);
"""


class StudyDatabaseError(UserFacingError):
    """The local study database cannot be opened or written."""


# --- what gets indexed ---------------------------------------------------------------------
@dataclass
class InstanceRecord:
    """One DICOM object's identity and place on disk, as the database keeps it."""

    sop_uid: str
    series_uid: str
    study_uid: str
    path: str
    size: int
    mtime: float
    sop_class: str = ""
    transfer_syntax: str = ""
    instance_number: int | None = None
    patient_id: str = ""
    patient_name: str = ""
    birth_date: str = ""
    sex: str = ""
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    accession_number: str = ""
    modality: str = ""
    series_number: int | None = None
    series_description: str = ""

    @classmethod
    def from_dataset(cls, ds, path: Path | str) -> "InstanceRecord":
        """From a pydicom Dataset (header only is enough) read from ``path``."""
        path = Path(path)
        stat = path.stat()

        # pydicom converts values when they are first read, and a damaged element raises then
        # (ValueError, NotImplementedError for an unknown VR, ...): such a value counts as absent
        def text(keyword: str, source=ds) -> str:
            try:
                value = source.get(keyword, "")
                return "" if value is None else str(value).strip()
            except Exception:
                return ""

        def number(keyword: str) -> int | None:
            try:
                value = ds.get(keyword)
                return int(value) if value not in (None, "") else None
            except Exception:
                return None

        meta = getattr(ds, "file_meta", None)
        sop_uid = text("SOPInstanceUID") or (text("MediaStorageSOPInstanceUID", meta) if meta else "")
        series_uid, study_uid = text("SeriesInstanceUID"), text("StudyInstanceUID")
        missing = [name for name, value in (("SOP Instance UID", sop_uid), ("Series Instance UID", series_uid),
                                            ("Study Instance UID", study_uid)) if not value]
        if missing:
            raise UnreadableFileError(f"not a DICOM image object: no {', '.join(missing)}")
        return cls(
            sop_uid=sop_uid,
            series_uid=series_uid,
            study_uid=study_uid,
            path=os.path.abspath(path),
            size=stat.st_size,
            mtime=stat.st_mtime,
            sop_class=text("SOPClassUID") or (text("MediaStorageSOPClassUID", meta) if meta else ""),
            transfer_syntax=text("TransferSyntaxUID", meta) if meta else "",
            instance_number=number("InstanceNumber"),
            patient_id=text("PatientID"),
            patient_name=text("PatientName"),
            birth_date=text("PatientBirthDate"),
            sex=text("PatientSex"),
            study_date=text("StudyDate"),
            study_time=text("StudyTime"),
            study_description=text("StudyDescription"),
            accession_number=text("AccessionNumber"),
            modality=text("Modality"),
            series_number=number("SeriesNumber"),
            series_description=text("SeriesDescription"),
        )


def read_instance_record(path: Path | str) -> InstanceRecord:
    """Read a file's header (not its pixels) into a record, with the DICOM core's reader (it
    also catches truncated pixel data); UnreadableFileError says why a file is refused."""
    from healthfm_desktop.core.imaging.scanning import read_header
    from healthfm_desktop.core.imaging.sources import SourceRef

    path = Path(path)
    if path.is_dir():
        raise UnreadableFileError("is a folder")
    try:
        ds = read_header(SourceRef(path))[0]  # the header Dataset; the rest describes the file
    except FileNotFoundError:
        raise UnreadableFileError("file not found") from None
    except PermissionError:
        raise UnreadableFileError("permission denied") from None
    except OSError as exc:
        raise UnreadableFileError(f"cannot be read ({exc.strerror or exc})") from None
    try:
        return InstanceRecord.from_dataset(ds, path)
    except FileNotFoundError:
        raise UnreadableFileError("file not found") from None
    except OSError as exc:
        raise UnreadableFileError(f"cannot be read ({exc.strerror or exc})") from None


# --- what comes out ----------------------------------------------------------------------
@dataclass
class StudyRow:
    study_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    study_time: str
    description: str
    accession_number: str
    modalities: list[str]
    series: int
    instances: int


@dataclass
class SeriesRow:
    series_uid: str
    study_uid: str
    modality: str
    number: int | None
    description: str
    instances: int


@dataclass
class FileProblem:
    path: str
    sop_uid: str
    reason: str


@dataclass
class ImportReport:
    """What one import did. ``duplicates``: (new path, the path already indexed for that SOP UID,
    or why the object conflicts with what is indexed)."""

    added: int = 0
    unchanged: int = 0
    relinked: int = 0
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    study_uids: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.added} added"]
        if self.unchanged:
            parts.append(f"{self.unchanged} already indexed")
        if self.relinked:
            parts.append(f"{self.relinked} moved files relinked")
        if self.duplicates:
            parts.append(f"{len(self.duplicates)} duplicates skipped")
        if self.rejected:
            parts.append(f"{len(self.rejected)} unreadable")
        return ", ".join(parts)


def default_database_path() -> Path:
    return user_data_dir() / "studies.sqlite"


def default_store_dir() -> Path:
    """Where objects received from PACS peers are filed."""
    return user_data_dir() / "dicom_store"


def _like(term: str) -> str:
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class StudyDatabase:
    """Thread-safe (one connection behind a lock): controllers use it from worker threads."""

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path is not None else default_database_path()
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=10.0, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(_SCHEMA)
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version > SCHEMA_VERSION:
                raise StudyDatabaseError(
                    f"the study database {self.path} was written by a newer HealthFM (schema {version})"
                )
        except sqlite3.DatabaseError as exc:
            raise StudyDatabaseError(f"the study database {self.path} cannot be opened: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "StudyDatabase":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as exc:
                raise StudyDatabaseError(f"the study database is not writable: {exc}") from None
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                try:
                    self._conn.execute("COMMIT")
                except sqlite3.DatabaseError as exc:
                    self._conn.execute("ROLLBACK")
                    raise StudyDatabaseError(f"the study database could not save: {exc}") from None

    def _query(self, sql: str, params: Iterable = ()) -> list[sqlite3.Row]:
        with self._lock:
            cursor = self._conn.execute(sql, tuple(params))
            return cursor.fetchall()

    # --- writing -----------------------------------------------------------------------
    def add_instances(self, records: Iterable[InstanceRecord]) -> ImportReport:
        """Index records in one transaction: all of them or, on error, none."""
        report = ImportReport()
        studies: dict[str, None] = {}
        try:
            with self._transaction() as conn:
                for record in records:
                    self._add_one(conn, record, report)
                    studies[record.study_uid] = None
        except sqlite3.DatabaseError as exc:
            raise StudyDatabaseError(f"the study database could not save the import: {exc}") from None
        report.study_uids = list(studies)
        return report

    def _add_one(self, conn: sqlite3.Connection, r: InstanceRecord, report: ImportReport) -> None:
        owner = conn.execute("SELECT study_uid FROM series WHERE series_uid = ?", (r.series_uid,)).fetchone()
        if owner is not None and owner[0] != r.study_uid:
            # the series is indexed under another study: adding this would leave a study row
            # with no series (what a hostile or broken sender's UIDs did)
            report.duplicates.append((r.path, f"series {r.series_uid} already belongs to another study"))
            return
        existing = conn.execute("SELECT path FROM instances WHERE sop_uid = ?", (r.sop_uid,)).fetchone()
        if existing is not None:
            old_path = existing[0]
            if old_path == r.path:
                conn.execute("UPDATE instances SET size = ?, mtime = ? WHERE sop_uid = ?", (r.size, r.mtime, r.sop_uid))
                report.unchanged += 1
            elif not os.path.exists(old_path):
                conn.execute("UPDATE instances SET path = ?, size = ?, mtime = ?, transfer_syntax = ? WHERE sop_uid = ?",
                             (r.path, r.size, r.mtime, r.transfer_syntax, r.sop_uid))
                report.relinked += 1
            else:
                report.duplicates.append((r.path, old_path))
            return
        conn.execute(
            "INSERT INTO patients (patient_id, patient_name, birth_date, sex) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (patient_id, patient_name) DO UPDATE SET "
            "birth_date = CASE WHEN excluded.birth_date != '' THEN excluded.birth_date ELSE birth_date END, "
            "sex = CASE WHEN excluded.sex != '' THEN excluded.sex ELSE sex END",
            (r.patient_id, r.patient_name, r.birth_date, r.sex),
        )
        patient = conn.execute(
            "SELECT id FROM patients WHERE patient_id = ? AND patient_name = ?", (r.patient_id, r.patient_name)
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO studies (study_uid, patient, study_date, study_time, description, accession_number, added_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (study_uid) DO NOTHING",
            (r.study_uid, patient, r.study_date, r.study_time, r.study_description, r.accession_number, time.time()),
        )
        conn.execute(
            "INSERT INTO series (series_uid, study_uid, modality, number, description) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (series_uid) DO NOTHING",
            (r.series_uid, r.study_uid, r.modality, r.series_number, r.series_description),
        )
        conn.execute(
            "INSERT INTO instances (sop_uid, series_uid, sop_class, number, transfer_syntax, path, size, mtime) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (r.sop_uid, r.series_uid, r.sop_class, r.instance_number, r.transfer_syntax, r.path, r.size, r.mtime),
        )
        report.added += 1

    def index_files(self, paths: Iterable[Path | str]) -> ImportReport:
        """Read the headers of files (folders are walked) and index them in one transaction;
        unreadable files are listed in ``rejected`` with the reason."""
        records: list[InstanceRecord] = []
        rejected: list[tuple[str, str]] = []
        for path in _walk(paths):
            try:
                records.append(read_instance_record(path))
            except UnreadableFileError as exc:
                rejected.append((str(path), str(exc)))
        report = self.add_instances(records)
        report.rejected.extend(rejected)
        return report

    def remove_study(self, study_uid: str) -> None:
        """Forget a study (files stay on disk). Patients left without studies go too."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM studies WHERE study_uid = ?", (study_uid,))
            conn.execute("DELETE FROM patients WHERE id NOT IN (SELECT patient FROM studies)")

    # --- reading -----------------------------------------------------------------------
    def search(self, text: str = "", modality: str = "", date_from: str = "", date_to: str = "",
               limit: int = 1000) -> list[StudyRow]:
        """Studies whose patient name/id, description or accession contain every word of
        ``text`` (case-insensitive), optionally of a modality and within a date range (YYYYMMDD)."""
        where, params = [], []
        for word in text.replace("^", " ").split():
            where.append("(p.patient_name LIKE ? ESCAPE '\\' OR p.patient_id LIKE ? ESCAPE '\\' "
                         "OR s.description LIKE ? ESCAPE '\\' OR s.accession_number LIKE ? ESCAPE '\\')")
            params.extend([_like(word)] * 4)
        if modality.strip():
            where.append("EXISTS (SELECT 1 FROM series m WHERE m.study_uid = s.study_uid AND m.modality = ?)")
            params.append(modality.strip().upper())
        if date_from:
            where.append("s.study_date >= ?")
            params.append(date_from)
        if date_to:
            where.append("s.study_date != '' AND s.study_date <= ?")
            params.append(date_to)
        sql = (
            "SELECT s.study_uid, p.patient_id, p.patient_name, s.study_date, s.study_time, s.description, "
            "s.accession_number, "
            "(SELECT group_concat(DISTINCT modality) FROM series x WHERE x.study_uid = s.study_uid), "
            "(SELECT count(*) FROM series x WHERE x.study_uid = s.study_uid), "
            "(SELECT count(*) FROM instances i JOIN series x ON i.series_uid = x.series_uid "
            " WHERE x.study_uid = s.study_uid) "
            "FROM studies s JOIN patients p ON s.patient = p.id"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY s.study_date DESC, s.study_time DESC, p.patient_name LIMIT ?"
        )
        params.append(int(limit))
        return [
            StudyRow(row[0], row[1], row[2], row[3], row[4], row[5], row[6],
                     sorted(m for m in (row[7] or "").split(",") if m), row[8], row[9])
            for row in self._query(sql, params)
        ]

    def study(self, study_uid: str) -> StudyRow | None:
        for row in self.search(limit=1_000_000):
            if row.study_uid == study_uid:
                return row
        return None

    def series(self, study_uid: str) -> list[SeriesRow]:
        rows = self._query(
            "SELECT x.series_uid, x.study_uid, x.modality, x.number, x.description, "
            "(SELECT count(*) FROM instances i WHERE i.series_uid = x.series_uid) "
            "FROM series x WHERE x.study_uid = ? ORDER BY x.number IS NULL, x.number, x.series_uid",
            (study_uid,),
        )
        return [SeriesRow(*row) for row in rows]

    def instance_paths(self, study_uid: str | None = None, series_uid: str | None = None) -> list[Path]:
        if series_uid:
            rows = self._query("SELECT path FROM instances WHERE series_uid = ? ORDER BY number, path", (series_uid,))
        elif study_uid:
            rows = self._query(
                "SELECT i.path FROM instances i JOIN series x ON i.series_uid = x.series_uid "
                "WHERE x.study_uid = ? ORDER BY x.number, i.number, i.path",
                (study_uid,),
            )
        else:
            rows = self._query("SELECT path FROM instances ORDER BY path")
        return [Path(row[0]) for row in rows]

    def instance_count(self) -> int:
        return int(self._query("SELECT count(*) FROM instances")[0][0])

    def has_instance(self, sop_uid: str) -> bool:
        return bool(self._query("SELECT 1 FROM instances WHERE sop_uid = ?", (sop_uid,)))

    def instance_identity(self, sop_uid: str) -> tuple[str, str, str, str] | None:
        """(study UID, series UID, patient id, path) of an indexed SOP instance, or None."""
        rows = self._query(
            "SELECT series.study_uid, instances.series_uid, patients.patient_id, instances.path FROM instances "
            "JOIN series ON series.series_uid = instances.series_uid JOIN studies ON studies.study_uid = series.study_uid "
            "JOIN patients ON patients.id = studies.patient WHERE instances.sop_uid = ?", (sop_uid,))
        return tuple(rows[0]) if rows else None

    def series_study(self, series_uid: str) -> str | None:
        rows = self._query("SELECT study_uid FROM series WHERE series_uid = ?", (series_uid,))
        return rows[0][0] if rows else None

    def verify(self, study_uid: str | None = None, read_headers: bool = True) -> list[FileProblem]:
        """Files that are gone, changed size, or no longer read as the indexed object."""
        if study_uid:
            rows = self._query(
                "SELECT i.sop_uid, i.path, i.size FROM instances i JOIN series x ON i.series_uid = x.series_uid "
                "WHERE x.study_uid = ?", (study_uid,))
        else:
            rows = self._query("SELECT sop_uid, path, size FROM instances")
        problems = []
        for sop_uid, path, size in rows:
            try:
                actual = os.stat(path).st_size
            except FileNotFoundError:
                problems.append(FileProblem(path, sop_uid, "file deleted or moved"))
                continue
            except OSError as exc:
                problems.append(FileProblem(path, sop_uid, f"cannot be read ({exc.strerror})"))
                continue
            if actual != size:
                problems.append(FileProblem(path, sop_uid, f"file changed size ({size} -> {actual} bytes)"))
                continue
            if read_headers:
                try:
                    record = read_instance_record(path)
                except UnreadableFileError as exc:
                    problems.append(FileProblem(path, sop_uid, f"damaged: {exc}"))
                    continue
                if record.sop_uid != sop_uid:
                    problems.append(FileProblem(path, sop_uid, "file now holds another object"))
        return problems


def _walk(paths: Iterable[Path | str]) -> Iterator[Path]:
    for path in paths:
        path = Path(path)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    if name != "DICOMDIR" and not name.startswith("."):
                        yield Path(root) / name
        else:
            yield path


def open_study_database(path: Path | str | None = None) -> tuple[StudyDatabase, str | None]:
    """Open the user's database; a damaged one is set aside (renamed) and a new one started, with
    a message saying so, instead of a crash."""
    path = Path(path) if path is not None else default_database_path()
    try:
        database = StudyDatabase(path)
        database._query("SELECT count(*) FROM instances")
        return database, None
    except (StudyDatabaseError, sqlite3.DatabaseError) as exc:
        aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            try:
                os.replace(f"{path}{suffix}", f"{aside}{suffix}")
            except OSError:
                pass
        log.warning("study database damaged; set aside")
        return StudyDatabase(path), f"The study database was damaged ({exc}); it was set aside as {aside.name} and a new one started."
