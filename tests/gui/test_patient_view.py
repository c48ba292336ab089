"""The Patients workspace as a user meets it: open real ICU stays, see them listed by risk,
search, select one, and see its timeline (panels with the right points, reference bands,
excluded points marked, linked notes, one time axis) and its risk panel (score, trajectory,
top variables), all matching what core computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from healthfm_desktop.controllers.patients import PatientsController
from healthfm_desktop.core.patients.reading import read_patient_file
from healthfm_desktop.core.patients.risk import RiskModel
from healthfm_desktop.core.patients.timeline import panels_for
from healthfm_desktop.views.patient_view.workspace import RISK_COLUMN, PatientsWorkspace
from tests.gui.screenshots import SCREENSHOTS as SCREENSHOT_DIR

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "patients"


@pytest.fixture(scope="module")
def cohort():
    return read_patient_file(DATA / "timeseries.csv.gz")


def shown_patients(qtbot, path: Path, size: tuple[int, int] = (1400, 900), stays: int | None = None) -> PatientsWorkspace:
    """The workspace shown with ``path`` open and its first stay on screen."""
    controller = PatientsController()
    view = PatientsWorkspace(controller)
    qtbot.addWidget(view)
    view.resize(*size)
    view.show()
    controller.open_paths([path])
    qtbot.waitUntil(lambda: view.model.rowCount() == stays if stays else view.model.rowCount() > 0, timeout=30_000)
    qtbot.waitUntil(lambda: controller.session.current is not None and bool(view.timeline.shown), timeout=30_000)
    return view


@pytest.fixture
def workspace(qtbot):
    return shown_patients(qtbot, DATA / "timeseries.csv.gz", stays=61)


def _select(view, qtbot, patient_id: str) -> None:
    view.select_patient(patient_id)
    qtbot.waitUntil(lambda: view.controller.session.current is not None and view.controller.session.current.record.patient_id == patient_id
                    and view.timeline.record is not None and view.timeline.record.patient_id == patient_id, timeout=30_000)


def test_list_is_sorted_by_risk_and_searchable(workspace, cohort):
    view = workspace
    shown = [view.proxy.index(row, RISK_COLUMN).data() for row in range(view.proxy.rowCount())]
    risks = [float(text) for text in shown if text != "-"]
    assert risks == sorted(risks, reverse=True) and shown[len(risks):] == ["-"] * (len(shown) - len(risks))
    expected = dict(zip((r.patient_id for r in cohort.records), RiskModel().score(cohort.records)))
    top = view.proxy.index(0, 0).data()
    assert risks[0] == pytest.approx(expected[top] * 100, abs=0.051)
    # the first (highest-risk) stay is shown straight away
    assert view.controller.session.current.record.patient_id == top
    view.search.setText("1569")
    assert view.proxy.rowCount() == 1 and view.proxy.index(0, 0).data() == "156930"
    view.search.clear()
    view.table.sortByColumn(RISK_COLUMN, Qt.SortOrder.AscendingOrder)
    assert view.proxy.index(0, RISK_COLUMN).data() == "-"  # not enough data to score: below every number


def test_timeline_and_risk_panel_show_the_selected_stay(workspace, qtbot, cohort, tmp_path):
    view = workspace
    stay = cohort.by_id("156930")  # 10 impossible values (zero blood pressures) in the source
    _select(view, qtbot, "156930")
    timeline = view.timeline
    assert timeline.panel_titles() == [p.title for p in panels_for(stay)]
    heart = timeline.panel("Heart rate")
    hours, values = heart.curves[0].getData()
    minutes, expected = stay.series("HR")
    np.testing.assert_allclose(hours, minutes / 60)
    np.testing.assert_allclose(values, expected)
    assert heart.band is not None and tuple(heart.band.getRegion()) == (60, 100)
    # hovering a point shows its value and time
    assert heart.points[0].opts["tip"](x=1.5, y=80.0, data="HR") == "HR 80 bpm at 01:30 h"
    assert sum(item.n_excluded for item in timeline.shown) == stay.n_excluded == 10
    line = timeline.panel("Arterial BP (line)")
    assert line.n_excluded > 0
    low, high = line.plot.getViewBox().viewRange()[1]
    assert all(low <= y <= high for y in line.excluded.getData()[1])  # pinned inside, value in the tooltip
    assert "10 excluded as impossible (red crosses): zero blood pressure or heart rate (sensor disconnected) x10" in timeline.header.text()
    # one time axis: zooming one panel moves every panel
    heart.plot.setXRange(6, 12, padding=0)
    for item in timeline.shown:
        assert item.plot.getViewBox().viewRange()[0] == pytest.approx([6, 12], abs=1e-6)

    assessment = RiskModel().assess(stay)
    panel = view.risk_panel
    assert panel.score.text() == f"{assessment.risk * 100:.1f} %"
    hours, risks = panel.trajectory_curve.getData()
    assert hours.tolist() == [12, 24, 36, 48]
    np.testing.assert_allclose(risks, [r * 100 for _, r in assessment.trajectory], rtol=1e-6)
    assert panel.contributions.rowCount() == len(assessment.contributions) >= 3
    assert panel.contributions.item(0, 0).text() == assessment.contributions[0].source
    assert panel.contributions.item(0, 1).text().endswith(" pp")
    assert panel.contributions.item(0, 1).text() == f"{assessment.contributions[0].points:+.1f} pp"
    view.grab().save(str(tmp_path / "patient_view.png"))
    assert (tmp_path / "patient_view.png").stat().st_size > 10_000
    panel.grab().save(str(SCREENSHOT_DIR / "patient_risk_panel.png"))


def test_an_empty_stay_shows_not_enough_data_and_no_number(workspace, qtbot):
    view = workspace
    _select(view, qtbot, "140501")  # no observation at all
    panel = view.risk_panel
    qtbot.waitUntil(lambda: view.controller.session.current.assessment is not None, timeout=30_000)
    assert view.controller.session.current.assessment.risk is None
    assert panel.score.text() == "no score" and "%" not in panel.score.text()
    assert "Not enough data to score" in panel.band.text() and panel.band.isVisible()
    assert panel.contributions.rowCount() == 0 and "HR" in panel.inputs.text()
    qtbot.wait(50)
    panel.grab().save(str(SCREENSHOT_DIR / "patient_risk_not_enough_data.png"))


def test_linked_notes_appear_on_the_timeline(workspace, qtbot):
    view = workspace
    _select(view, qtbot, "133863")
    view.controller.link_notes([
        ("nursing note", "Patient ID: 133863\nICU time: 20:30\nAgitated overnight, sedation increased."),
        ("other stay", "Patient ID: 999\nICU time: 01:00\nNot this patient."),
        ("unlinked", "A note that names no stay."),
    ])
    qtbot.waitUntil(lambda: any(bool(item.note_lines) for item in view.timeline.shown), timeout=10_000)
    lines = view.timeline.shown[0].note_lines
    assert len(lines) == 1 and lines[0].value() == pytest.approx(20.5)
    assert "1 linked note" in view.timeline.header.text()


def test_a_file_with_bad_rows_lists_them_and_shows_the_rest(qtbot, tmp_path):
    path = tmp_path / "stays.csv"
    path.write_text("patient_id,time,variable,value,unit\n1,0,HR,80,bpm\n1,5,HR,fast,bpm\n1,60,HR,90,bpm\n", encoding="utf-8")
    controller = PatientsController()
    view = PatientsWorkspace(controller)
    qtbot.addWidget(view)
    messages = []
    controller.message.connect(lambda level, text: messages.append(level))
    controller.open_paths([path])
    qtbot.waitUntil(lambda: view.model.rowCount() == 1 and view.problems.count() == 1, timeout=30_000)
    assert view.problems.item(0).text() == "stays.csv:3: value 'fast' is not a number"
    assert messages == ["warning"]
    qtbot.waitUntil(lambda: view.timeline.record is not None, timeout=30_000)
    assert view.timeline.panel("Heart rate").n_points == 2


def test_an_unreadable_file_is_reported_not_crashed(qtbot, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"resourceType": "Bundle", "entry": [', encoding="utf-8")
    controller = PatientsController()
    view = PatientsWorkspace(controller)
    qtbot.addWidget(view)
    controller.open_paths([path])
    qtbot.waitUntil(lambda: view.problems.count() == 1, timeout=30_000)
    assert view.problems.item(0).text().startswith("broken.json: ")
    assert view.model.rowCount() == 0


def test_notes_opened_in_the_notes_workspace_reach_the_timeline(qtbot, tmp_path):
    from healthfm_desktop.app import build_main_window

    window = build_main_window()
    qtbot.addWidget(window)
    note = tmp_path / "icu_progress_note.txt"
    note.write_text("Patient ID: 133863\nICU time: 06:15\nIntubated for airway protection.\n", encoding="utf-8")
    patients = window.controllers["patients"]
    view = window.findChild(PatientsWorkspace)
    patients.open_paths([DATA / "records" / "133863.txt"])
    qtbot.waitUntil(lambda: view.timeline.record is not None, timeout=30_000)
    window.controllers["notes"].open_paths([note])
    qtbot.waitUntil(lambda: bool(view.timeline.shown[0].note_lines), timeout=30_000)
    assert view.timeline.shown[0].note_lines[0].value() == pytest.approx(6.25)
    window.close()


def test_a_folder_of_physionet_record_files_opens_as_stays(qtbot):
    controller = PatientsController()
    view = PatientsWorkspace(controller)
    qtbot.addWidget(view)
    controller.open_paths([DATA / "records"])
    qtbot.waitUntil(lambda: view.model.rowCount() == 4, timeout=30_000)
    ids = sorted(view.model.item(row, 0).text() for row in range(4))
    assert ids == ["133863", "136197", "143666", "159958"]
    assert view.problems.count() == 0


def test_moving_quickly_through_the_list_shows_the_last_stay_chosen(workspace, qtbot):
    view = workspace
    for row in range(8):
        view.table.selectRow(row)
    last = view.proxy.index(7, 0).data()
    qtbot.waitUntil(lambda: not view.controller.busy, timeout=30_000)
    assert view.controller.session.current.record.patient_id == last
    assert view.timeline.record.patient_id == last
