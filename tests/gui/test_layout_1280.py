"""The window at 1280x800 with the demo open, as a laptop user sees it: it fits, nothing is hidden
behind scroll arrows or clipped, and a workspace's status line stays in that workspace."""

from __future__ import annotations

import os
import time

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QScrollArea, QToolButton

from healthfm_desktop.app import build_main_window
from healthfm_desktop.core.paths import demo_paths

SIDE_PANELS = {"Measurements", "Tags", "Unreadable files", "Adapt", "AI analysis", "Studies"}


def _wait(app, condition, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture(scope="module")
def demo(qapp, tmp_path_factory):
    """One window for the module: opening the demo (all four workspaces) takes several seconds.
    Its own home, so what the demo saves (notes' annotations, labels) meets no other test."""
    home = os.environ.get("HEALTHFM_HOME")
    os.environ["HEALTHFM_HOME"] = str(tmp_path_factory.mktemp("layout_home"))
    window = build_main_window()
    window.resize(1280, 800)
    window.show()
    window.app_controller.open_paths(demo_paths())
    controllers = window.controllers
    assert _wait(qapp, lambda: bool(controllers["images"].series and controllers["molecules"].rows
                                    and window.workspace_widget("patients").model.rowCount()), 180)
    assert _wait(qapp, lambda: not any(c.busy for c in controllers.values()), 180)
    yield window
    for controller in controllers.values():
        controller.cancel_jobs()
    _wait(qapp, lambda: not any(c.busy for c in controllers.values()), 60)
    window.close()
    if home is None:
        os.environ.pop("HEALTHFM_HOME", None)
    else:
        os.environ["HEALTHFM_HOME"] = home


def test_a_finding_opens_the_data_quality_dock_low_and_the_workspace_keeps_its_room(demo, qtbot):
    # the demo's icu_stays.csv has a stay without Mg: the dock opens by itself
    dock = demo.data_quality_dock
    assert dock.isVisible()
    demo.show_workspace("images")
    qtbot.wait(20)
    assert dock.height() <= demo.height() // 4
    assert demo.workspace_widget("images").active_viewport().height() >= 400
    # and what opened it is the first thing in it, above the imports with nothing to report
    tree = dock.widget().tree
    assert tree.topLevelItem(0).text(0) == "icu_stays.csv (patients)"
    assert tree.topLevelItemCount() > 1 and all("nothing unreadable" in tree.topLevelItem(i).text(1)
                                                for i in range(1, tree.topLevelItemCount()))
    assert tree.visualItemRect(tree.topLevelItem(0).child(0).child(0)).bottom() < tree.viewport().height()


def test_the_window_fits_a_1280x800_screen_with_the_data_quality_dock_open(demo, qtbot):
    demo.data_quality_dock.show()
    for name in demo.workspace_names():
        demo.show_workspace(name)
        qtbot.wait(20)
        # its minimum leaves room for a title bar and a panel on an 800 px high screen
        assert demo.minimumSizeHint().height() <= 740, name
        assert demo.height() == 800, name


def test_every_images_side_panel_is_one_click_away_at_1280(demo, qtbot):
    demo.show_workspace("images")
    images = demo.workspace_widget("images")
    tabs = images.side_tabs
    bar = tabs.tabBar()
    qtbot.wait(20)
    assert set(images.side_panel_titles()) == SIDE_PANELS
    arrows = [button for button in bar.findChildren(QToolButton) if button.isVisible()]
    assert not arrows, "side tabs hidden behind scroll arrows"
    for index in range(bar.count()):
        title = images.side_panel_titles()[index]
        assert bar.rect().contains(bar.tabRect(index)), title
        assert bar.tabRect(index).right() < tabs.width(), title
        assert bar.tabRect(index).width() >= bar.tabSizeHint(index).width(), f"{title}: label cut"
        assert tabs.tabToolTip(index).startswith(title)
    images.show_side_panel("Studies")
    assert tabs.currentWidget() is demo.study_browser
    # the panel dragged to its narrowest: still every tab on screen (labels shortened, none hidden)
    sizes = images.splitter.sizes()
    images.splitter.setSizes([sizes[0], sizes[1] + sizes[2], 0])
    qtbot.wait(20)
    assert tabs.width() == tabs.minimumWidth()
    assert not [button for button in bar.findChildren(QToolButton) if button.isVisible()]
    for index in range(bar.count()):
        assert bar.rect().contains(bar.tabRect(index)) and bar.tabRect(index).width() >= 30
    images.splitter.setSizes(sizes)


def test_series_tiles_fit_the_series_list(demo, qtbot):
    demo.show_workspace("images")
    browser = demo.workspace_widget("images").series_browser
    qtbot.wait(20)
    assert not browser.horizontalScrollBar().isVisible()
    viewport = browser.viewport()
    headings = []
    for row in range(browser.count()):
        item = browser.item(row)
        assert browser.visualItemRect(item).right() < viewport.width(), item.text()
        if not item.data(Qt.ItemDataRole.UserRole):
            headings.append(item)
    assert headings and all(item.toolTip() == item.text() for item in headings)
    # the CT study's heading is longer than the list is wide: the whole of it is in the tooltip
    assert any("TRAUMA/PLAIN HEAD DM" in item.toolTip() for item in headings)


def test_the_patient_list_columns_are_whole_at_1280(demo, qtbot):
    demo.show_workspace("patients")
    patients = demo.workspace_widget("patients")
    qtbot.wait(20)
    table = patients.table
    header = table.horizontalHeader()
    assert not table.horizontalScrollBar().isVisible()
    for column in range(header.count() - 1):  # the last, the file, takes what is left, elided
        title = table.model().headerData(column, Qt.Orientation.Horizontal)
        assert header.sectionSize(column) >= header.sectionSizeHint(column), title
        assert header.sectionViewportPosition(column) + header.sectionSize(column) <= table.viewport().width(), title
    excluded = next(c for c in range(header.count())
                    if table.model().headerData(c, Qt.Orientation.Horizontal).startswith("Excl"))
    assert "excluded" in table.model().headerData(excluded, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
    last = header.count() - 1
    source = table.model().index(0, last)
    assert source.data(Qt.ItemDataRole.ToolTipRole) == source.data()


def test_a_status_line_stays_in_the_workspace_that_posted_it(demo, qtbot):
    images = demo.workspace_widget("images")
    controller = demo.controllers["images"]
    demo.show_workspace("images")
    head = next(s.key for s in controller.series if s.frame_count > 1)
    images.show_series(head, 2)
    posted = []
    controller.progress.connect(lambda p: p.message and posted.append(p.message))
    images.mpr_action.setChecked(True)
    qtbot.waitUntil(lambda: images.mpr_view.volume() is not None and not controller.busy, timeout=60_000)
    images.mpr_action.setChecked(False)
    # the job's steps were shown, and the last ("building the volume") went with the job
    assert "MPR: building the volume" in posted
    assert demo.statusBar().currentMessage() != "MPR: building the volume"
    demo.show_workspace("notes")
    assert not demo.statusBar().currentMessage().startswith("MPR")
    # a Notes line posted while Images is shown waits for the Notes
    demo.show_workspace("images")
    demo.controllers["notes"].message.emit("info", "pre-annotated 3 of 3 notes")
    assert demo.statusBar().currentMessage() != "pre-annotated 3 of 3 notes"
    demo.show_workspace("notes")
    assert demo.statusBar().currentMessage() == "pre-annotated 3 of 3 notes"
    demo.show_workspace("molecules")
    assert demo.statusBar().currentMessage() != "pre-annotated 3 of 3 notes"


def test_each_adaptation_panel_fits_its_workspace_at_1280(demo, qtbot):
    for name in demo.workspace_names():
        if name == "patients":
            continue  # the Patients workspace has no adaptation panel
        demo.show_workspace(name)
        panel = demo.workspace_widget(name).adaptation
        area = panel.parentWidget()
        while not isinstance(area, QScrollArea):
            area = area.parentWidget()
        if name == "images":
            demo.workspace_widget(name).show_side_panel("Adapt")
        elif name == "molecules":
            demo.workspace_widget(name).plots.setCurrentWidget(area)
        qtbot.wait(20)
        assert area.isVisible(), name
        assert not area.horizontalScrollBar().isVisible(), f"{name}: {panel.minimumSizeHint().width()} px panel " \
                                                           f"in a {area.viewport().width()} px pane"


def test_the_reliability_plot_takes_its_workspace_colours(demo, qtbot):
    """pyqtgraph's black plot was a black box in the light Notes and Molecules workspaces."""
    lightness = {name: demo.workspace_widget(name).adaptation.reliability.backgroundBrush().color().lightness()
                 for name in ("images", "notes", "molecules")}
    assert lightness["notes"] > 200 and lightness["molecules"] > 200, lightness
    assert lightness["images"] < 60, lightness  # the dark reading-room viewer
