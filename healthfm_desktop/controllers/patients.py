"""Patients workspace controller: reads ICU stays and scores them on a worker, holds the open
stays, assesses the selected stay (risk trajectory and explanations) on a worker, and keeps the
clinical notes that name a stay so the timeline can show them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import Signal

from healthfm_desktop.controllers.base import WorkspaceController
from healthfm_desktop.controllers.workers import Progress
from healthfm_desktop.core.errors import ModelError, UserFacingError
from healthfm_desktop.core.patients.reading import read_patient_file, sniff_patient_format
from healthfm_desktop.core.patients.record import PatientRecord
from healthfm_desktop.core.patients.risk import RiskAssessment, RiskModel
from healthfm_desktop.core.patients.timeline import LinkedNote, NoteIndex, link_note
from healthfm_desktop.core.routing import PATIENTS

log = logging.getLogger(__name__)


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


_MODEL: RiskModel | None = None


def _model() -> RiskModel:
    global _MODEL
    if _MODEL is None:
        _MODEL = RiskModel()
    return _MODEL


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


def load_and_score(paths: list[Path]):
    """Worker job: read every file, score every stay; yields progress between files."""
    result = LoadResult()
    paths = expand_folders(paths)
    for number, path in enumerate(paths):
        yield Progress(number / max(1, len(paths)), f"Reading {path.name}")
        try:
            cohort = read_patient_file(path)
        except UserFacingError as exc:
            result.problems.append(f"{path.name}: {exc}")
            continue
        result.problems += [bad.format(path.name) for bad in cohort.bad_rows[:200]]
        if len(cohort.bad_rows) > 200:
            result.problems.append(f"{path.name}: {len(cohort.bad_rows) - 200} more bad rows")
        result.problems += [f"{path.name}: {note}" for note in cohort.notes]
        result.records += cohort.records
        result.sources += [path.name] * len(cohort.records)
    yield Progress(0.9, "Scoring")
    try:
        risks = _model().score(result.records).tolist() if result.records else []
        result.risks = [float(r) for r in risks]
    except ModelError as exc:
        result.model_problem = str(exc)
        result.risks = [None] * len(result.records)
    log.info("read %d stays from %d file(s), %d problem(s)", len(result.records), len(paths), len(result.problems))
    return result


def assess_patient(record: PatientRecord) -> tuple[RiskAssessment | None, str | None]:
    try:
        return _model().assess(record), None
    except ModelError as exc:
        return None, str(exc)


class PatientsController(WorkspaceController):
    name = PATIENTS
    title = "Patients"

    patients_changed = Signal(list)  # [PatientRow]
    patient_shown = Signal(object)  # PatientDetail
    problems_found = Signal(list)  # [str]: bad rows and files, shown to the user
    notes_linked = Signal(list)  # [patient_id] whose linked notes changed

    def __init__(self, parent=None):
        super().__init__(parent)
        self.records: dict[str, PatientRecord] = {}
        self.rows: dict[str, PatientRow] = {}
        self.notes = NoteIndex()
        self.current: PatientDetail | None = None
        self.problems: list[str] = []
        self._wanted: str | None = None

    # --- opening -------------------------------------------------------------------------
    def open_paths(self, paths: list[Path]) -> None:
        self.start_job(load_and_score, [Path(p) for p in paths], on_result=self._on_loaded)

    def _on_loaded(self, result: LoadResult) -> None:
        for record, risk, source in zip(result.records, result.risks, result.sources):
            self.records[record.patient_id] = record
            self.rows[record.patient_id] = PatientRow(record.patient_id, source, record.n_observations, record.n_excluded, risk)
        self.patients_changed.emit(list(self.rows.values()))
        self.problems = result.problems
        if result.problems:
            self.problems_found.emit(result.problems)
            self.message.emit("warning", f"{len(result.problems)} row(s) or file(s) could not be used; see the list under the patients")
        if result.model_problem:
            self.message.emit("error", f"Risk scores unavailable: {result.model_problem}")

    # --- selection -----------------------------------------------------------------------
    def select_patient(self, patient_id: str) -> None:
        record = self.records.get(patient_id)
        if record is None:
            return
        self._wanted = patient_id
        self.start_job(assess_patient, record, on_result=lambda out, r=record: self._on_assessed(r, *out))

    def _on_assessed(self, record: PatientRecord, assessment: RiskAssessment | None, problem: str | None) -> None:
        if record.patient_id != self._wanted:
            return  # the user has moved on to another stay; its own job will show it
        self.current = PatientDetail(record, assessment, self.notes.notes_for(record.patient_id), problem)
        self.patient_shown.emit(self.current)

    # --- notes from the Notes workspace --------------------------------------------------
    def follow_notes(self, notes_controller) -> None:
        """Link the notes the Notes workspace opens (its ``notes_added`` ids, read back with
        ``note(id).text``) to the stays they name."""

        def on_added(note_ids: list[str]) -> None:
            pairs = []
            for note_id in note_ids:
                try:
                    pairs.append((note_id, notes_controller.note(note_id).text))
                except (KeyError, UserFacingError):
                    continue  # a note that cannot be read is the Notes workspace's to report
            self.link_notes(pairs)

        notes_controller.notes_added.connect(on_added)

    def link_notes(self, notes: list[tuple[str, str]]) -> None:
        """Slot for the Notes workspace's ``notes_opened`` ([(title, text)]): keep the notes
        that name a stay; refresh the shown stay if it gained notes."""
        linked: list[LinkedNote] = []
        for title, text in notes:
            linked += link_note(title, text)
        touched = self.notes.add(linked)
        if touched:
            self.notes_linked.emit(sorted(touched))
        if self.current is not None and self.current.record.patient_id in touched:
            self.current.notes = self.notes.notes_for(self.current.record.patient_id)
            self.patient_shown.emit(self.current)
