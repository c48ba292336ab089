"""The Patients workspace's state without Qt: the open stays with their risk, the selected stay's
assessment, the notes that name a stay, and what could not be used. The controller runs the
jobs (read_and_score, assess) on workers and relays the session's events."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from healthfm_desktop.core.errors import ModelError, UserFacingError
from healthfm_desktop.core.events import Event, Progress
from healthfm_desktop.core.patients.reading import read_patient_file, sniff_patient_format
from healthfm_desktop.core.patients.record import PatientRecord
from healthfm_desktop.core.patients.risk import RiskAssessment, RiskModel
from healthfm_desktop.core.patients.timeline import LinkedNote, NoteIndex, link_note

log = logging.getLogger(__name__)

MAX_PROBLEMS_PER_FILE = 200  # bad rows listed one by one; the rest are counted


@dataclass
class PatientRow:
    """What the patient list shows for one stay."""

    patient_id: str
    source: str
    n_observations: int
    n_excluded: int
    risk: float | None


@dataclass
class LoadResult:
    records: list[PatientRecord] = field(default_factory=list)
    risks: list[float | None] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # bad rows and unreadable files, for the user
    model_problem: str | None = None


@dataclass
class PatientDetail:
    record: PatientRecord
    assessment: RiskAssessment | None
    notes: list[LinkedNote]
    model_problem: str | None = None


def expand_folders(paths: list[Path]) -> list[Path]:
    """A folder becomes its patient CSVs and FHIR Bundles, plus the folder itself when it holds
    PhysioNet record files (read together, one stay per file)."""
    out: list[Path] = []
    for path in paths:
        if not path.is_dir():
            out.append(path)
            continue
        kinds = {p: sniff_patient_format(p) for p in sorted(path.rglob("*")) if p.is_file()}
        if any(kind == "record" for kind in kinds.values()):
            out.append(path)
        out += [p for p, kind in kinds.items() if kind in ("long_csv", "fhir")]
    return out


def read_and_score(paths: list[Path], model: Callable[[], RiskModel]) -> Iterator[Progress]:
    """Job: read every file, then score every stay with ``model()``; yields progress between
    files and returns a LoadResult (a model that cannot load is said there, the stays still open)."""
    result = LoadResult()
    paths = expand_folders(paths)
    for number, path in enumerate(paths):
        yield Progress(number / max(1, len(paths)), f"Reading {path.name}")
        try:
            cohort = read_patient_file(path)
        except UserFacingError as exc:
            result.problems.append(f"{path.name}: {exc}")
            continue
        result.problems += [bad.format(path.name) for bad in cohort.bad_rows[:MAX_PROBLEMS_PER_FILE]]
        if len(cohort.bad_rows) > MAX_PROBLEMS_PER_FILE:
            result.problems.append(f"{path.name}: {len(cohort.bad_rows) - MAX_PROBLEMS_PER_FILE} more bad rows")
        result.problems += [f"{path.name}: {note}" for note in cohort.notes]
        result.records += cohort.records
        result.sources += [path.name] * len(cohort.records)
    yield Progress(0.9, "Scoring")
    try:
        scored = model().score_or_withhold(result.records) if result.records else []
        result.risks = [risk for risk, _reason in scored]  # None: not enough data to score
    except ModelError as exc:
        result.model_problem = str(exc)
        result.risks = [None] * len(result.records)
    log.info("read %d stays from %d file(s), %d problem(s)", len(result.records), len(paths), len(result.problems))
    return result


def assess(record: PatientRecord, model: Callable[[], RiskModel]) -> tuple[RiskAssessment | None, str | None]:
    """Job: the selected stay's risk trajectory and explanations, or why there are none."""
    try:
        return model().assess(record), None
    except ModelError as exc:
        return None, str(exc)


class PatientSessionEvents:
    """What a PatientSession announces (the controller relays each as a Qt signal)."""

    def __init__(self) -> None:
        self.patients_changed = Event()  # [PatientRow]
        self.patient_shown = Event()  # PatientDetail
        self.problems_found = Event()  # [str]: bad rows and files, shown to the user
        self.notes_linked = Event()  # [patient_id] whose linked notes changed
        self.message = Event()  # level, text


class PatientSession:
    """Open stays by id, their list rows, the shown stay, the linked notes and the problems."""

    def __init__(self) -> None:
        self.events = PatientSessionEvents()
        self.records: dict[str, PatientRecord] = {}
        self.rows: dict[str, PatientRow] = {}
        self.notes = NoteIndex()
        self.current: PatientDetail | None = None
        self.problems: list[str] = []
        self.wanted: str | None = None  # the stay the user chose last; older assessments are dropped
        self._model: RiskModel | None = None

    def model(self) -> RiskModel:
        """The risk model, loaded by the first job that needs it (on its worker, not the UI
        thread) and kept; raises ModelError when it cannot be loaded."""
        if self._model is None:
            self._model = RiskModel()
        return self._model

    def add_loaded(self, result: LoadResult) -> None:
        for record, risk, source in zip(result.records, result.risks, result.sources):
            self.records[record.patient_id] = record
            self.rows[record.patient_id] = PatientRow(record.patient_id, source, record.n_observations, record.n_excluded, risk)
        self.events.patients_changed.emit(list(self.rows.values()))
        self.problems = result.problems
        if result.problems:
            self.events.problems_found.emit(result.problems)
            self.events.message.emit("warning", f"{len(result.problems)} row(s) or file(s) could not be used; see the list under the patients")
        if result.model_problem:
            self.events.message.emit("error", f"Risk scores unavailable: {result.model_problem}")

    def choose(self, patient_id: str) -> PatientRecord | None:
        """The user picked a stay: its record to assess, or None if it is not open."""
        record = self.records.get(patient_id)
        if record is not None:
            self.wanted = patient_id
        return record

    def show_assessment(self, record: PatientRecord, assessment: RiskAssessment | None, problem: str | None) -> None:
        if record.patient_id != self.wanted:
            return  # the user has moved on to another stay; its own job will show it
        self.current = PatientDetail(record, assessment, self.notes.notes_for(record.patient_id), problem)
        self.events.patient_shown.emit(self.current)

    def link_notes(self, notes: list[tuple[str, str]]) -> None:
        """Keep the notes (title, text) that name a stay; refresh the shown stay if it gained notes."""
        linked: list[LinkedNote] = []
        for title, text in notes:
            linked += link_note(title, text)
        touched = self.notes.add(linked)
        if touched:
            self.events.notes_linked.emit(sorted(touched))
        if self.current is not None and self.current.record.patient_id in touched:
            self.current.notes = self.notes.notes_for(self.current.record.patient_id)
            self.events.patient_shown.emit(self.current)
