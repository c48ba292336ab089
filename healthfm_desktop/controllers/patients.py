"""Patients workspace controller: reads and scores ICU stays and assesses the selected one on
workers, and relays the events of the workspace's state (core/patients/session.py) as signals."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal

from healthfm_desktop.controllers.base import WorkspaceController
from healthfm_desktop.core.errors import UserFacingError
from healthfm_desktop.core.patients.session import PatientSession, assess, read_and_score
from healthfm_desktop.core.routing import PATIENTS


class PatientsController(WorkspaceController):
    name = PATIENTS
    title = "Patients"

    patients_changed = Signal(list)  # [PatientRow]
    patient_shown = Signal(object)  # PatientDetail
    problems_found = Signal(list)  # [str]: bad rows and files, shown to the user
    notes_linked = Signal(list)  # [patient_id] whose linked notes changed

    def __init__(self, parent=None):
        super().__init__(parent)
        self.session = PatientSession()
        events = self.session.events
        events.patients_changed.connect(self.patients_changed.emit)
        events.patient_shown.connect(self.patient_shown.emit)
        events.problems_found.connect(self.problems_found.emit)
        events.notes_linked.connect(self.notes_linked.emit)
        events.message.connect(self.message.emit)

    # --- opening -------------------------------------------------------------------------
    def open_paths(self, paths: list[Path]) -> None:
        self.start_job(read_and_score, [Path(p) for p in paths], self.session.model, on_result=self.session.add_loaded)

    # --- selection -----------------------------------------------------------------------
    def select_patient(self, patient_id: str) -> None:
        record = self.session.choose(patient_id)
        if record is None:
            return
        self.start_job(assess, record, self.session.model, on_result=lambda out, r=record: self.session.show_assessment(r, *out))

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
        """Slot for the Notes workspace's notes ([(title, text)]): keep those that name a stay."""
        self.session.link_notes(notes)
