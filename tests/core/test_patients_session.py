"""The Patients workspace's session model without Qt: a job reads and scores stays, the session
announces them, keeps only the last chosen stay's assessment, and links notes that name a stay."""

from __future__ import annotations

from pathlib import Path

import pytest

from healthfm_desktop.core.errors import ModelError
from healthfm_desktop.core.events import Progress
from healthfm_desktop.core.patients.session import PatientSession, assess, read_and_score
from tests.core.jobs import drain

DATA = Path(__file__).resolve().parents[1] / "data" / "patients"


def recorded(event):
    seen = []
    event.connect(lambda *values: seen.append(values))
    return seen


@pytest.fixture(scope="module")
def loaded():
    session = PatientSession()
    steps, result = drain(read_and_score([DATA / "timeseries.csv.gz", DATA / "missing.csv"], session.model))
    return session, steps, result


def test_a_job_reads_scores_and_reports_what_it_could_not_use(loaded):
    session, steps, result = loaded
    assert all(isinstance(step, Progress) for step in steps) and steps[-1].message == "Scoring"
    assert len(result.records) == 61 and len(result.risks) == 61
    assert all(risk is None or 0 < risk < 1 for risk in result.risks)
    assert any(problem.startswith("missing.csv:") for problem in result.problems)
    changed, problems = recorded(session.events.patients_changed), recorded(session.events.problems_found)
    session.add_loaded(result)
    assert [row.patient_id for row in changed[0][0]] == [r.patient_id for r in result.records]
    assert problems and problems[0][0] == result.problems
    assert session.rows[result.records[0].patient_id].risk == result.risks[0]


def test_only_the_last_chosen_stay_is_shown(loaded):
    session, _, result = loaded
    session.add_loaded(result)
    shown = recorded(session.events.patient_shown)
    first, second = result.records[0], result.records[1]
    assert session.choose(first.patient_id) is first
    assert session.choose(second.patient_id) is second
    assert session.choose("no such stay") is None
    session.show_assessment(first, *assess(first, session.model))  # the user has moved on: dropped
    assert shown == []
    session.show_assessment(second, *assess(second, session.model))
    assert [detail.record.patient_id for (detail,) in shown] == [second.patient_id]
    assert session.current.assessment is not None and session.current.model_problem is None


def test_a_model_that_cannot_load_is_said_and_the_stays_still_open():
    def broken():
        raise ModelError("icu_mortality: sha256 does not match its manifest")

    _, result = drain(read_and_score([DATA / "timeseries.csv.gz"], broken))
    assert len(result.records) == 61 and result.risks == [None] * 61
    assert "sha256" in result.model_problem
    assessment, problem = assess(result.records[0], broken)
    assert assessment is None and "sha256" in problem
    session = PatientSession()
    messages = recorded(session.events.message)
    session.add_loaded(result)
    assert ("error", "Risk scores unavailable: icu_mortality: sha256 does not match its manifest") in messages


def test_a_note_naming_an_open_stay_is_linked_and_refreshes_the_shown_stay(loaded):
    session, _, result = loaded
    session.add_loaded(result)
    record = result.records[0]
    session.choose(record.patient_id)
    session.show_assessment(record, None, None)
    linked, shown = recorded(session.events.notes_linked), recorded(session.events.patient_shown)
    session.link_notes([("progress note", f"Patient ID: {record.patient_id}\nICU time: 06:15\nExtubated.\n"),
                        ("unrelated", "No patient named here.")])
    assert linked == [([record.patient_id],)]
    assert shown and len(session.current.notes) == 1
