"""The Patients workspace read at a glance: an age / sex / ICU-type header, panel titles that
stay inside their panel, no legend over the points, and a sort arrow that points the way the
values go (highest risk first: down)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from healthfm_desktop.core.patients.timeline import ICU_TYPES, stay_summary
from healthfm_desktop.views.patient_view.workspace import RISK_COLUMN
from tests.gui.test_patient_view import shown_patients
from tests.gui.screenshots import SCREENSHOTS

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "resources" / "samples" / "patients" / "icu_stays.csv"


@pytest.fixture
def view(qtbot):
    return shown_patients(qtbot, SAMPLE, size=(1280, 800))


def arrow_points_down(view, column: int) -> bool:
    """Whether the sort arrow drawn at the right of ``column``'s header is widest at its top
    (a down-pointing triangle); the section borders (lines the full height or width) are left out."""
    header = view.table.horizontalHeader()
    image = header.grab().toImage()
    right = header.sectionViewportPosition(column) + header.sectionSize(column)
    xs = range(right - 14, right - 1)
    ys = range(2, image.height() - 2)
    background = image.pixelColor(right - 8, 2).lightness()
    dark = {(x, y) for x in xs for y in ys if background - image.pixelColor(x, y).lightness() > 40}
    full_columns = {x for x in xs if sum((x, y) in dark for y in ys) > len(ys) * 0.8}
    rows: dict[int, int] = {}
    for x, y in dark:
        if x not in full_columns:
            rows[y] = rows.get(y, 0) + 1
    assert len(rows) >= 2, "no sort arrow drawn"
    first, last = min(rows), max(rows)
    assert rows[first] != rows[last]
    return rows[first] > rows[last]


def test_the_header_says_age_sex_and_icu_type(view):
    record = view.timeline.record
    text = view.timeline.summary.text()
    assert text.startswith(f"Stay {record.patient_id}")
    assert f"Age {record.descriptors['Age']:.0f}" in text
    assert ("female" if record.descriptors["Gender"] == 0 else "male") in text
    assert ICU_TYPES[int(record.descriptors["ICUType"])] in text
    assert stay_summary(record) in text


def test_panel_titles_stay_in_their_panel_and_no_legend_covers_points(view, qtbot):
    import pyqtgraph as pg

    for item in view.timeline.shown:
        title = item.plot.titleLabel
        assert item.panel.title in title.text
        assert title.sceneBoundingRect().height() < item.widget.height() / 3
        left = item.plot.getAxis("left")
        if left.label.isVisible():
            assert left.label.sceneBoundingRect().height() <= item.plot.getViewBox().sceneBoundingRect().height() + 1
        legends = [child for child in item.plot.getViewBox().childItems() if isinstance(child, pg.LegendItem)]
        assert legends == []
        if len(item.panel.variables) > 1:
            assert all(name in title.text for name in item.panel.variables)
    view.grab().save(str(SCREENSHOTS / "patients_1280.png"))


def test_the_sort_arrow_points_down_for_highest_first(view, qtbot):
    view.table.sortByColumn(RISK_COLUMN, Qt.SortOrder.DescendingOrder)
    risks = [float(view.proxy.index(r, RISK_COLUMN).data()) for r in range(view.proxy.rowCount())]
    assert risks == sorted(risks, reverse=True)
    assert arrow_points_down(view, RISK_COLUMN)
    view.table.sortByColumn(RISK_COLUMN, Qt.SortOrder.AscendingOrder)
    assert not arrow_points_down(view, RISK_COLUMN)
