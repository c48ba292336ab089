"""The Images workspace as a radiologist uses it, on real DICOM files: drop a series, see the
first image and the slice count, read a pixel value under the mouse, window/level, scroll,
measure in mm, see unreadable files listed, switch layouts, export, and the hooks other
features build on."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QImage
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QLabel, QToolButton

from healthfm_desktop.app import build_main_window
from healthfm_desktop.controllers.images import ImagesController
from healthfm_desktop.views.image_viewer.workspace import ImagesWorkspace
from tests.gui.screenshots import SCREENSHOTS

REPO = Path(__file__).resolve().parents[2]
DICOM = REPO / "tests" / "data" / "dicom"
MR_SERIES = DICOM / "series" / "MR_T1_3D_MPRAGE_sag_philips_1mm_170sl"
CT_SMALL = DICOM / "single" / "CT_small.dcm"
BAD = DICOM / "bad"


class ImagesHarness:
    """The Images workspace and its controller as the app wires them, without the other
    workspaces (their state is not this file's business); ``messages`` collects what the
    user is told."""

    def __init__(self):
        self.controllers = {"images": ImagesController()}
        self.workspace = ImagesWorkspace(self.controllers["images"])
        self.workspace.resize(1400, 900)
        self.messages: list[tuple[str, str]] = []
        self.controllers["images"].message.connect(lambda level, text: self.messages.append((level, text)))

    def workspace_widget(self, name: str):
        return self.workspace


def shown_images_harness(qtbot, tmp_path, monkeypatch):
    """Fixture body shared by the Images test files: the workspace shown with a private home
    (measurements and exports of this test only); its jobs cancelled and finished afterwards."""
    monkeypatch.setenv("HEALTHFM_HOME", str(tmp_path / "home"))
    harness = ImagesHarness()
    qtbot.addWidget(harness.workspace)
    harness.workspace.show()
    yield harness
    harness.controllers["images"].cancel_jobs()
    qtbot.waitUntil(lambda: not harness.controllers["images"].busy, timeout=30_000)


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    yield from shown_images_harness(qtbot, tmp_path, monkeypatch)


@pytest.fixture
def main_window(qtbot):
    window = build_main_window()
    qtbot.addWidget(window)
    window.resize(1400, 900)
    window.show()
    yield window
    window.close()


def drop(window, paths: list[Path]) -> None:
    """What a drop on the main window ends in: the Images controller's ``open_paths``."""
    if isinstance(window, ImagesHarness):
        window.controllers["images"].open_paths(paths)
        return
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(QPointF(QPoint(300, 300)), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)


def open_and_wait(window, qtbot, paths: list[Path], full_load: bool = True):
    """Drop ``paths`` and wait until the import is done and (optionally) nothing is running."""
    controller = window.controllers["images"]
    workspace = window.workspace_widget("images")
    with qtbot.waitSignal(controller.import_finished, timeout=60_000) as finished:
        drop(window, paths)
    if full_load:
        qtbot.waitUntil(lambda: not controller.busy, timeout=60_000)
    qtbot.waitUntil(lambda: workspace.active_viewport().frame() is not None or not controller.series
                    or controller.frame_failure(controller.series[0].key, 0) is not None, timeout=30_000)
    return controller, workspace, finished.args[0]


def widget_point(viewport, col: float, row: float) -> QPoint:
    point = viewport.image_to_widget().map(QPointF(col, row))
    return QPoint(round(point.x()), round(point.y()))


def pixel_under(viewport, position: QPoint) -> tuple[int, int]:
    image_point = viewport.widget_to_image(QPointF(position))
    return int(math.floor(image_point.x())), int(math.floor(image_point.y()))


def test_dropping_a_series_on_the_main_window_opens_it_in_images(main_window, qtbot):
    main_window.show_workspace("notes")
    controller, workspace, summary = open_and_wait(main_window, qtbot, [MR_SERIES], full_load=False)
    assert main_window.current_workspace() == "images"
    assert summary["series"] == 1 and summary["frames"] == 170
    # the first image is on screen while the rest of the series still decodes
    assert workspace.active_viewport().frame() is not None
    qtbot.waitUntil(lambda: not controller.busy, timeout=60_000)


def test_dropping_a_series_shows_its_first_image_and_slice_count(window, qtbot):
    controller, workspace, summary = open_and_wait(window, qtbot, [MR_SERIES])
    assert summary["series"] == 1 and summary["frames"] == 170
    assert workspace.series_browser.keys() == [controller.series[0].key]
    assert "170 image(s)" in workspace.series_browser.item_for(controller.series[0].key).text()
    viewport = workspace.active_viewport()
    assert viewport.frame().shape == (256, 256)
    corners = viewport.corner_lines()
    assert corners["bottom_left"][0] == "Image 86 / 170"  # a stack opens at its middle slice
    assert any("PixelSpacing" in line for line in corners["bottom_left"])
    assert controller.is_series_loaded(controller.series[0].key)
    qtbot.waitUntil(lambda: workspace.series_browser.has_thumbnail(controller.series[0].key), timeout=10_000)
    workspace.grab().save(str(SCREENSHOTS / "image_viewer_workspace.png"))
    # opening it again adds nothing and says so
    _, _, again = open_and_wait(window, qtbot, [MR_SERIES])
    assert again["series"] == 0 and workspace.series_browser.series_count() == 1
    assert workspace.status_label.text() == "Already open: 1 series"


def test_pixel_value_under_the_cursor_matches_the_file(window, qtbot):
    controller, workspace, _ = open_and_wait(window, qtbot, [MR_SERIES])
    viewport = workspace.active_viewport()
    # Home to slice 1, then the wheel-equivalent keys to slice 86 (the middle of the head)
    viewport.setFocus()
    QTest.keyClick(viewport, Qt.Key.Key_Home)
    for _ in range(85):
        QTest.keyClick(viewport, Qt.Key.Key_Down)
    slot = workspace.active_slot()
    assert slot.index == 85
    qtbot.waitUntil(lambda: viewport.corner_lines()["bottom_left"][0] == "Image 86 / 170", timeout=5000)
    position = widget_point(viewport, 128.5, 100.5)
    QTest.mouseMove(viewport, position)
    col, row = pixel_under(viewport, position)
    source = controller.series_by_key(slot.series_key).frames[85].instance.source.path
    ds = pydicom.dcmread(source)
    expected = float(ds.pixel_array[row, col]) * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    text = viewport.cursor_text()
    assert text.startswith(f"({col}, {row})")
    assert float(text.split(")")[1].split()[0]) == pytest.approx(expected, abs=0.01)
    assert controller.current_index() == 85


def test_ct_pixel_value_is_in_hounsfield_units(window, qtbot):
    controller, workspace, _ = open_and_wait(window, qtbot, [CT_SMALL])
    viewport = workspace.active_viewport()
    ds = pydicom.dcmread(CT_SMALL)
    hu = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    position = widget_point(viewport, 64.5, 64.5)
    QTest.mouseMove(viewport, position)
    col, row = pixel_under(viewport, position)
    assert viewport.cursor_text() == f"({col}, {row})  {int(hu[row, col])} HU"


def test_right_drag_and_presets_change_the_window(window, qtbot):
    controller, workspace, _ = open_and_wait(window, qtbot, [CT_SMALL])
    viewport = workspace.active_viewport()
    before_window = viewport.window()
    before = viewport.rendered_image().copy()
    start = QPoint(200, 200)
    QTest.mousePress(viewport, Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier, start)
    QTest.mouseMove(viewport, QPoint(260, 240))
    QTest.mouseRelease(viewport, Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier, QPoint(260, 240))
    center, width = viewport.window()
    assert width > before_window[1] and center > before_window[0]
    assert viewport.rendered_image() != before
    assert any(line == f"W {width:.0f}  L {center:.0f}" for line in viewport.corner_lines()["bottom_left"])
    workspace.apply_preset("Lung")
    assert viewport.window() == (-600.0, 1500.0)
    # the window is the PS3.3 linear function: -600 HU is mid grey, below -1350 HU black
    frame = viewport.frame()
    rendered = controller.render_window(frame, -600.0, 1500.0, False)
    assert rendered[frame <= -1350].max(initial=0) == 0
    assert rendered[frame >= 150].min(initial=255) == 255


def test_distance_measurement_in_mm_matches_hand_computation(window, qtbot):
    controller, workspace, _ = open_and_wait(window, qtbot, [MR_SERIES])
    viewport = workspace.active_viewport()
    workspace.set_tool("distance")
    start, end = widget_point(viewport, 40.0, 60.0), widget_point(viewport, 200.0, 180.0)
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start)
    QTest.mouseMove(viewport, end)
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, end)
    assert workspace.measurement_list.row_count() == 1
    p0, p1 = viewport.widget_to_image(QPointF(start)), viewport.widget_to_image(QPointF(end))
    ds = pydicom.dcmread(controller.series[0].frames[0].instance.source.path, stop_before_pixels=True)
    row_mm, col_mm = (float(v) for v in ds.PixelSpacing)
    expected = math.hypot((p1.x() - p0.x()) * col_mm, (p1.y() - p0.y()) * row_mm)
    row = workspace.measurement_list.row_text(0)
    assert row["kind"] == "distance"
    assert row["value"].startswith(f"{expected:.1f} mm")
    assert "PixelSpacing" in row["value"]
    # saved with the study, atomically, as JSON next to the user data (on a worker thread)
    assert controller.session.flush_saves()
    saved = list((Path(os.environ["HEALTHFM_HOME"]) / "measurements").glob("*.json"))
    records = [m for path in saved for m in json.loads(path.read_text())["measurements"]]
    assert any(abs(m["values"]["length"] - expected) < 1e-6 for m in records)
    # rename in the list, then delete
    workspace.measurement_list.table.item(0, 0).setText("Skull width")
    assert controller.measurement_records()[0]["label"] == "Skull width"
    workspace.measurement_list.table.selectRow(0)
    workspace.measurement_list.delete_button.click()
    assert workspace.measurement_list.row_count() == 0


def test_roi_statistics_in_hounsfield_units(window, qtbot):
    controller, workspace, _ = open_and_wait(window, qtbot, [CT_SMALL])
    viewport = workspace.active_viewport()
    workspace.set_tool("rectangle")
    start, end = widget_point(viewport, 40.0, 40.0), widget_point(viewport, 80.0, 70.0)
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start)
    QTest.mouseMove(viewport, end)
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, end)
    record = controller.measurement_records()[-1]
    p0, p1 = viewport.widget_to_image(QPointF(start)), viewport.widget_to_image(QPointF(end))
    ds = pydicom.dcmread(CT_SMALL)
    hu = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    rows = np.arange(hu.shape[0])[:, None] + 0.5
    cols = np.arange(hu.shape[1])[None, :] + 0.5
    inside = hu[(rows >= p0.y()) & (rows <= p1.y()) & (cols >= p0.x()) & (cols <= p1.x())]
    assert record["values"]["mean"] == pytest.approx(inside.mean(), abs=1e-3)
    assert record["values"]["unit"] == "HU"
    spacing = [float(v) for v in ds.PixelSpacing]
    assert record["values"]["area"] == pytest.approx((p1.x() - p0.x()) * spacing[1] * (p1.y() - p0.y()) * spacing[0], rel=1e-6)
    assert "HU" in workspace.measurement_list.row_text(0)["value"]


def test_unreadable_files_are_listed_with_the_reason_and_do_not_stop_the_folder(window, qtbot, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.dcm").write_bytes(CT_SMALL.read_bytes())
    (folder / "truncated.dcm").write_bytes((BAD / "MR_truncated_pixeldata.dcm").read_bytes())
    (folder / "report.dcm").write_bytes((BAD / "SR_no_pixel_data.dcm").read_bytes())
    controller, workspace, summary = open_and_wait(window, qtbot, [folder])
    assert summary["series"] == 1
    rows = dict((Path(path).name, reason) for path, reason in workspace.unreadable_panel.files())
    assert set(rows) == {"truncated.dcm", "report.dcm"}
    assert "truncated" in rows["truncated.dcm"]
    assert "no pixel data" in rows["report.dcm"]
    index = workspace.side_tabs.indexOf(workspace.unreadable_panel)
    assert workspace.side_tabs.tabText(index) == "Unreadable (2)"
    assert workspace.side_tabs.tabToolTip(index) == "Unreadable files: 2"
    # whole reasons, wrapped in the panel's width (not elided)
    workspace.side_tabs.setCurrentWidget(workspace.unreadable_panel)
    tree = workspace.unreadable_panel.tree
    qtbot.wait(50)
    for row in range(tree.topLevelItemCount()):
        item = tree.topLevelItem(row)
        reason = item.text(1)
        needed = tree.fontMetrics().horizontalAdvance(reason)
        if needed > tree.columnWidth(1):
            lines = tree.visualItemRect(item).height() / tree.fontMetrics().lineSpacing()
            assert lines >= min(needed / tree.columnWidth(1), 3) - 0.2, (reason, lines)
    workspace.unreadable_panel.grab().save(str(SCREENSHOTS / "viewer_unreadable_wrapped.png"))


def test_bad_folder_and_hostile_zips_never_crash(window, qtbot):
    controller, workspace, summary = open_and_wait(window, qtbot, [BAD])
    reasons = {Path(path).name: reason for path, reason in workspace.unreadable_panel.files()}
    assert "zip bomb" in reasons["zip_bomb.zip"]
    assert "path traversal" in reasons["zip_slip.zip"]
    assert summary["rejected"] >= 8


def test_layouts_scroll_in_sync_for_the_same_frame_of_reference(window, qtbot):
    controller, workspace, _ = open_and_wait(window, qtbot, [MR_SERIES])
    workspace.set_layout("1x2")
    left, right = workspace.slots[0], workspace.slots[1]
    workspace.show_series(controller.series[0].key, 0)  # active (left) viewport, at slice 1
    workspace._activate(1)
    workspace.show_series(controller.series[0].key, 0)
    workspace._activate(0)
    workspace.scroll(left, 30)
    assert left.index == 30 and right.index == 30
    # the geometry behind it: the nearest slice along the normal of the same frame of reference
    key = controller.series[0].key
    assert controller.matching_index(key, 30, key) == 30
    workspace.sync_check.setChecked(False)
    workspace.scroll(left, 5)
    assert left.index == 35 and right.index == 30
    workspace.set_layout("2x2")
    assert sum(v.isVisible() for v in workspace.viewports()) == 4


def test_view_operations_and_overlay_toggle(window, qtbot):
    controller, workspace, _ = open_and_wait(window, qtbot, [CT_SMALL])
    viewport = workspace.active_viewport()
    fitted = viewport.zoom()
    workspace.actual_size_action.trigger()
    assert viewport.zoom() == 1.0
    workspace.fit_action.trigger()
    assert viewport.zoom() == pytest.approx(fitted)
    workspace.flip_h_action.trigger()
    workspace.rotate_action.trigger()
    assert viewport.view_state()["flip_h"] and viewport.view_state()["rotation"] == 90
    # the top-left image pixel is now drawn elsewhere: flipped then rotated
    corner = viewport.image_to_widget().map(QPointF(0, 0))
    assert corner.x() > viewport.width() / 2
    with_text = viewport.grab_view(True)
    workspace.overlay_action.trigger()
    assert not viewport.overlays_visible()
    without_text = viewport.grab_view(False)
    assert with_text != without_text


def test_export_view_png_with_and_without_overlays(window, qtbot, tmp_path):
    controller, workspace, _ = open_and_wait(window, qtbot, [CT_SMALL])
    workspace.export_view_png(tmp_path / "with.png", with_overlays=True)
    workspace.export_view_png(tmp_path / "without.png", with_overlays=False)
    with_image, without_image = QImage(str(tmp_path / "with.png")), QImage(str(tmp_path / "without.png"))
    assert with_image.size() == workspace.active_viewport().size()
    assert with_image != without_image


def test_cine_takes_the_frame_rate_of_an_ultrasound_loop(window, qtbot):
    controller, workspace, _ = open_and_wait(window, qtbot, [DICOM / "single" / "US_YBR_FULL_422_jpeg_cine_30f.dcm"])
    assert controller.frame_count(controller.series[0].key) == 30
    assert workspace.fps_spin.value() == 30  # Frame Time 33.333 ms
    assert workspace.active_viewport().frame().shape == (240, 320, 3)
    workspace.set_cine(True)
    qtbot.waitUntil(lambda: workspace.active_slot().index >= 3, timeout=5000)
    workspace.set_cine(False)


def test_cine_plays_through_the_frames(window, qtbot):
    controller, workspace, _ = open_and_wait(window, qtbot, [MR_SERIES])
    workspace.fps_spin.setValue(60)
    workspace.set_cine(True)
    qtbot.waitUntil(lambda: workspace.active_slot().index >= 5, timeout=5000)
    workspace.set_cine(False)
    assert not workspace.cine_timer.isActive()


def test_hooks_for_the_ai_and_pacs_panels(window, qtbot):
    controller, workspace, _ = open_and_wait(window, qtbot, [MR_SERIES])
    panel = QLabel("AI panel")
    workspace.add_side_panel("Analyse", panel)
    assert workspace.side_tabs.tabText(workspace.side_tabs.indexOf(panel)) == "Analyse"
    viewport = workspace.active_viewport()
    with qtbot.waitSignal(controller.current_image_changed, timeout=5000) as changed:
        workspace.scroll(None, 3)
    assert changed.args == [controller.series[0].key, 85 + 3]  # from the middle slice it opened at
    assert controller.current_index() == 85 + 3
    assert controller.current_series() is controller.series[0]
    assert controller.current_frame().shape == (256, 256)
    heat = np.zeros((256, 256, 4), np.uint8)
    heat[100:150, 100:150] = (255, 0, 0, 255)
    before = viewport.grab_view(True)
    viewport.set_overlay("saliency", heat, opacity=0.5)
    viewport.add_shape_overlay("head", [(60, 60), (190, 60), (190, 200), (60, 200)], "HC 512.0 mm")
    after = viewport.grab_view(True)
    assert after != before
    # the overlay is drawn in image coordinates: the red square's centre is reddish on screen
    centre = viewport.image_to_widget().map(QPointF(125, 125))
    colour = after.pixelColor(int(centre.x()), int(centre.y()))
    assert colour.red() > colour.green() + 40
    with pytest.raises(ValueError):
        viewport.set_overlay("wrong", np.zeros((10, 10, 4), np.uint8))
    viewport.set_overlay("saliency", None)
    assert viewport.overlay_names() == []


def test_mpr_view_has_three_planes_with_physical_aspect(window, qtbot):
    controller, workspace, _ = open_and_wait(window, qtbot, [MR_SERIES])
    with qtbot.waitSignal(controller.mpr_ready, timeout=60_000):
        workspace.mpr_action.trigger()
    mpr = workspace.mpr_view
    volume = mpr.volume()
    assert volume.shape == (170, 256, 256)
    shapes = {plane: viewport.frame().shape for plane, viewport in mpr.viewports.items()}
    # a sagittal 3D acquisition: 170 slices left-right, 256 rows head-foot, 256 columns front-back
    assert sorted(shapes["axial"]) == [170, 256] and sorted(shapes["coronal"]) == [170, 256]
    assert shapes["sagittal"] == (256, 256)
    for plane, viewport in mpr.viewports.items():
        row_mm, col_mm = viewport.frame_info().pixel_spacing
        assert viewport.pixel_aspect() == pytest.approx(row_mm / col_mm)
    # the cross-hair links the planes: a click in the axial plane moves the sagittal one
    axial = mpr.viewports["axial"]
    before = mpr.plane_index("sagittal")
    target = widget_point(axial, axial.image_size()[0] * 0.25, axial.image_size()[1] * 0.5)
    QTest.mouseClick(axial, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, target)
    assert mpr.plane_index("sagittal") != before
    assert mpr.viewports["coronal"].crosshair() is not None
    # the sagittal plane of the volume is the original slice at that index
    sagittal_index = mpr.plane_index("sagittal")
    original_slice = round(mpr.voxel()[0])
    assert np.array_equal(mpr.viewports["sagittal"].frame(), controller.cached_frame(controller.series[0].key, original_slice)) \
        or np.array_equal(mpr.viewports["sagittal"].frame(), controller.cached_frame(controller.series[0].key, original_slice)[:, ::-1])
    assert 0 <= sagittal_index < 170
    mpr.grab().save(str(SCREENSHOTS / "image_viewer_mpr.png"))


def test_mpr_of_a_single_image_says_why_not(window, qtbot):
    controller, workspace, _ = open_and_wait(window, qtbot, [CT_SMALL])
    with qtbot.waitSignal(controller.mpr_failed, timeout=30_000) as failed:
        workspace.mpr_action.trigger()
    assert "at least 3 slices" in failed.args[0]
    assert "at least 3 slices" in workspace.mpr_view.info.text()


def test_tag_browser_shows_sequences_and_filters(window, qtbot):
    controller, workspace, _ = open_and_wait(window, qtbot, [DICOM / "single" / "MR_enhanced_siemens_xa10.dcm"])
    with qtbot.waitSignal(controller.tags_ready, timeout=30_000):
        workspace.side_tabs.setCurrentWidget(workspace.tag_browser)
    browser = workspace.tag_browser
    all_rows = browser.visible_top_level_rows()
    assert len(all_rows) > 30
    shared = [row for row in all_rows if row[0] == "(5200,9229)"]
    assert shared and shared[0][2] == "SQ"
    shared_index = browser.proxy.index([row[0] for row in all_rows].index("(5200,9229)"), 0)
    assert browser.proxy.rowCount(shared_index) == 1  # one item, expandable
    assert browser.proxy.rowCount(browser.proxy.index(0, 0, shared_index)) > 3
    browser.filter_box.setText("PatientName")
    rows = browser.visible_top_level_rows()
    assert [row[0] for row in rows] == ["(0010,0010)", "(0010,1001)"]  # PatientName, OtherPatientNames
    # a match inside a sequence keeps its parent sequence visible
    browser.filter_box.setText("PixelSpacing")  # only inside the functional group sequences here
    visible = [row[0] for row in browser.visible_top_level_rows()]
    assert visible and set(visible) <= {"(5200,9229)", "(5200,9230)"}
    browser.filter_box.setText("")
    workspace.grab().save(str(SCREENSHOTS / "image_viewer_tags.png"))


def test_export_deidentified_dicom_warns_about_burned_in_text(window, qtbot, tmp_path):
    controller, workspace, _ = open_and_wait(window, qtbot, [DICOM / "single" / "US_RGB_explicit_LE_cropped.dcm"])
    with qtbot.waitSignal(controller.status, timeout=30_000, check_params_cb=lambda text: "De-identified" in text):
        controller.export_deidentified(controller.series[0].key, tmp_path / "out")
    written = list((tmp_path / "out").glob("*.dcm"))
    assert len(written) == 1
    ds = pydicom.dcmread(written[0])
    original = pydicom.dcmread(DICOM / "single" / "US_RGB_explicit_LE_cropped.dcm")
    assert ds.SOPInstanceUID != original.SOPInstanceUID
    assert str(ds.get("PatientName", "")) != str(original.get("PatientName", "")) or not str(original.get("PatientName", ""))
    assert any("burned" in text.lower() for level, text in window.messages if level == "warning")


def draw(viewport, tool_points: list[tuple[float, float]]) -> list[QPoint]:
    """Press at the first point, drag to the second, release (distance / ROI tools)."""
    start, end = (widget_point(viewport, *p) for p in tool_points)
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start)
    QTest.mouseMove(viewport, end)
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, end)
    return [start, end]


def test_angle_ellipse_editing_and_reload_with_the_study(window, qtbot):
    controller, workspace, _ = open_and_wait(window, qtbot, [CT_SMALL])
    viewport = workspace.active_viewport()
    # angle: drag the first arm, click the end of the second: a right angle
    workspace.set_tool("angle")
    draw(viewport, [(20.0, 60.0), (60.0, 60.0)])
    QTest.mouseClick(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, widget_point(viewport, 60.0, 20.0))
    angle = controller.measurement_records()[-1]
    assert angle["kind"] == "angle"
    first_arm = np.subtract(angle["points"][0], angle["points"][1])
    second_arm = np.subtract(angle["points"][2], angle["points"][1])
    expected = math.degrees(math.acos(np.dot(first_arm, second_arm) / np.linalg.norm(first_arm) / np.linalg.norm(second_arm)))
    assert angle["values"]["angle"] == pytest.approx(expected)
    assert 80 < expected < 100
    # ellipse ROI: mean/SD/min/max in HU over the pixel centres inside the ellipse
    workspace.set_tool("ellipse")
    draw(viewport, [(30.0, 30.0), (90.0, 80.0)])
    ellipse = controller.measurement_records()[-1]
    assert ellipse["kind"] == "ellipse" and ellipse["values"]["unit"] == "HU"
    assert ellipse["values"]["min"] <= ellipse["values"]["mean"] <= ellipse["values"]["max"]
    assert workspace.measurement_list.row_count() == 2
    # drag the ellipse's second corner: the statistics follow
    handle = widget_point(viewport, *ellipse["points"][1])
    moved_to = widget_point(viewport, 110.0, 110.0)
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, handle)
    QTest.mouseMove(viewport, moved_to)
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, moved_to)
    edited = {m["id"]: m for m in controller.measurement_records()}[ellipse["id"]]
    assert edited["values"]["pixels"] > ellipse["values"]["pixels"]
    # a new session on the same study finds them again
    again = ImagesController()
    with qtbot.waitSignal(again.import_finished, timeout=30_000):
        again.open_paths([CT_SMALL])
    reloaded = {(m["kind"], json.dumps(m["points"])) for m in again.measurement_records()}
    assert {(m["kind"], json.dumps(m["points"])) for m in (angle, edited)} <= reloaded
    assert again.measurements_for(again.series[0].key, 0)
    again.delete_measurements([m["id"] for m in again.measurement_records()])
    qtbot.waitUntil(lambda: not again.busy, timeout=30_000)


def test_overlays_leave_with_their_image(window, qtbot):
    controller, workspace, _ = open_and_wait(window, qtbot, [MR_SERIES])
    viewport = workspace.active_viewport()
    viewport.set_overlay("saliency", np.full((256, 256, 4), 128, np.uint8))
    viewport.add_shape_overlay("contour", [(10, 10), (50, 10), (50, 50)], "label")
    workspace.scroll(None, 1)
    assert viewport.overlay_names() == [] and viewport.shape_overlay_names() == []


def test_cancel_stops_an_import(window, qtbot):
    import time

    controller = window.controllers["images"]
    workspace = window.workspace
    stopped = []
    controller.import_finished.connect(lambda _summary: stopped.append(time.perf_counter()))

    def cancelled_import() -> tuple[dict, float]:
        stopped.clear()
        with qtbot.waitSignal(controller.import_finished, timeout=60_000) as finished:
            controller.open_paths([MR_SERIES, DICOM / "series", DICOM / "zip"])  # 197 objects, a zip among them
            qtbot.waitUntil(lambda: workspace.cancel_button.isVisible(), timeout=10_000)
            pressed = time.perf_counter()
            workspace.cancel_button.click()
        qtbot.waitUntil(lambda: not controller.busy, timeout=30_000)  # then the first image of what was found
        return finished.args[0], stopped[0] - pressed

    # the first import of a session also loads the DICOM libraries (pydicom and its codecs,
    # ~1 s on a busy 2-core machine), which no Cancel interrupts; every later one stops at once
    first, cold = cancelled_import()
    summary, warm = cancelled_import()
    # cancelled while indexing (fewer slices) or at least before the whole series decoded
    assert summary["cancelled"] or not controller.is_series_loaded(controller.series[0].key)
    print(f"images import: Cancel to the import stopped in {warm * 1000:.0f} ms "
          f"({cold * 1000:.0f} ms for the first import of the session)")
    assert warm < 1.0


def test_an_image_that_cannot_be_decoded_says_why_instead_of_loading_forever(window, qtbot):
    controller, workspace, summary = open_and_wait(window, qtbot, [BAD / "NM_jpeg2000_corrupt_codestream.dcm"], full_load=False)
    assert summary["series"] == 1  # the header is fine: only the pixels are broken
    qtbot.waitUntil(lambda: controller.frame_failure(controller.series[0].key, 0) is not None, timeout=30_000)
    qtbot.waitUntil(lambda: not controller.busy, timeout=30_000)
    viewport = workspace.active_viewport()
    assert viewport.frame() is None
    # one plain sentence in the viewport; the decoder's words only behind "Details…"
    assert viewport.message() == "The JPEG 2000 data in this file is damaged; the series has no other image."
    details = viewport.findChild(QToolButton, "viewportDetails")
    assert details.isVisible()
    with qtbot.waitSignal(viewport.details_requested) as asked:
        details.click()
    assert asked.args[0] == controller.frame_failure(controller.series[0].key, 0)
    assert "JPEG 2000" in asked.args[0] and asked.args[0] != viewport.message()
    viewport.grab().save(str(SCREENSHOTS / "viewer_decode_failure.png"))
    assert any(level in ("warning", "error") for level, _ in window.messages)


def test_grabbing_the_workspace_draws_each_viewport_in_its_own_place(window, qtbot):
    """Regression: the active-viewport frame once reset the painter to the parent's origin
    during a grab and dimmed the first viewport with a label's translucent brush."""
    controller, workspace, _ = open_and_wait(window, qtbot, [CT_SMALL])
    workspace.set_layout("1x2")
    viewport = workspace.active_viewport()
    slot = workspace.active_slot()
    controller.add_measurement(slot.series_key, slot.index, "distance", [(20, 20), (100, 90)])
    qtbot.wait(50)  # the new layout settles
    image = workspace.grab().toImage()
    origin = viewport.mapTo(workspace, QPoint(0, 0))
    brightest = max(image.pixelColor(origin.x() + x, origin.y() + y).value() for x in range(6, 80) for y in range(6, 20))
    assert brightest > 200  # the patient name in the corner, white as drawn


def test_keyboard_shortcuts_pick_tools_and_toggle_overlays(window, qtbot):
    controller, workspace, _ = open_and_wait(window, qtbot, [CT_SMALL])
    viewport = workspace.active_viewport()
    viewport.setFocus()
    qtbot.waitUntil(viewport.hasFocus, timeout=2000)
    QTest.keyClick(viewport, Qt.Key.Key_D)
    assert viewport.tool() == "distance"
    QTest.keyClick(viewport, Qt.Key.Key_E)
    assert viewport.tool() == "ellipse"
    QTest.keyClick(viewport, Qt.Key.Key_I)
    assert not viewport.overlays_visible()
    QTest.keyClick(viewport, Qt.Key.Key_H)
    assert viewport.view_state()["flip_h"]


def test_an_image_is_on_screen_while_the_folder_is_still_indexed(window, qtbot):
    controller, workspace = window.controllers["images"], window.workspace
    order = []
    controller.preview_ready.connect(lambda pixels, info: order.append(("preview", pixels.shape)))
    controller.import_finished.connect(lambda summary: order.append(("indexed", summary["frames"])))
    with qtbot.waitSignal(controller.import_finished, timeout=60_000):
        controller.open_paths([MR_SERIES])
    assert order == [("preview", (256, 256)), ("indexed", 170)]
    qtbot.waitUntil(lambda: workspace.active_slot().series_key is not None, timeout=10_000)
    # then the real series takes over at its middle slice (where the anatomy is), not slice 1
    qtbot.waitUntil(lambda: workspace.active_viewport().corner_lines()["bottom_left"][0] == "Image 86 / 170", timeout=20_000)
    assert workspace.active_slot().index == 85 and controller.current_index() == 85
    qtbot.waitUntil(lambda: not controller.busy, timeout=60_000)


def test_a_zip_and_a_dicomdir_open_like_folders(window, qtbot):
    controller, workspace, summary = open_and_wait(window, qtbot, [DICOM / "zip" / "series_MR700_7files.zip"])
    assert summary["series"] >= 1 and summary["rejected"] == 0
    assert sum(e["frames"] for e in controller.series_entries()) == 7
    assert workspace.active_viewport().frame() is not None
    _, _, from_dicomdir = open_and_wait(window, qtbot, [DICOM / "dicomdir" / "DICOMDIR"])
    # 31 referenced images of 2 patients; the zip's 7 are the same instances, already open
    assert sum(e["frames"] for e in controller.series_entries()) == 31
    studies = {controller.series_by_key(entry["key"]).study_uid for entry in controller.series_entries()}
    headings = {entry["study"] for entry in controller.series_entries()}
    assert len(headings) == len(studies) == 6  # each study under its own heading in the browser


def test_a_series_of_mixed_sizes_is_split_with_a_note(window, qtbot):
    controller, workspace, _ = open_and_wait(window, qtbot, [DICOM / "dicomdir" / "DICOMDIR"])
    split = [e for e in controller.series_entries() if "series split" in e["note"]]
    assert split, "the DICOMDIR holds series whose images differ in orientation"
    assert "split into consistent stacks" in workspace.status_label.text()
    assert any("split into" in note for note in workspace.unreadable_panel.notes_text())


def test_the_image_shown_while_indexing_is_the_middle_slice(window, qtbot):
    # not the first file found (slice 1, the old preview): the middle one, where the series opens
    controller = window.controllers["images"]
    previews = []
    controller.preview_ready.connect(lambda pixels, info: previews.append(np.array(pixels, copy=True)))
    with qtbot.waitSignal(controller.import_finished, timeout=60_000):
        controller.open_paths([DICOM / "series" / "CT_head_phantom_philips_1mm_20sl"])
    series = controller.series[0]
    assert len(previews) == 1 and series.frame_count == 20
    np.testing.assert_allclose(previews[0], series.load_frame(10))  # the slice the series opens at
    qtbot.waitUntil(lambda: not controller.busy, timeout=60_000)


def test_a_dropped_series_is_opened_once_per_file_before_decoding(main_window, qtbot, monkeypatch):
    # issue 19: the drop routing's sniff, the preview and the index used to open each file up
    # to three times; now the routing's read is handed on and the preview is the index's
    import builtins
    import threading

    from healthfm_desktop.core.imaging import parallel_decode, series as series_module

    folder = DICOM / "series" / "CT_head_phantom_philips_1mm_20sl"
    root, decoding = os.path.realpath(folder), threading.local()
    opened: dict[str, list[str]] = {"before decode": [], "decode": []}
    real_open, real_os_open = builtins.open, os.open

    def record(path) -> None:
        if isinstance(path, (str, os.PathLike)) and os.path.realpath(path).startswith(root):
            opened["decode" if getattr(decoding, "on", False) else "before decode"].append(os.path.realpath(path))

    def decode_stored(*args, real=series_module.decode_stored, **kwargs):
        decoding.on = True
        try:
            return real(*args, **kwargs)
        finally:
            decoding.on = False

    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: record(path) or real_open(path, *a, **k))
    monkeypatch.setattr(os, "open", lambda path, *a, **k: record(path) or real_os_open(path, *a, **k))
    monkeypatch.setattr(series_module, "decode_stored", decode_stored)
    monkeypatch.setattr(parallel_decode, "decode_stored", decode_stored)  # in-process fallback
    controller, workspace, summary = open_and_wait(main_window, qtbot, [folder])
    assert summary["frames"] == 20 and workspace.active_viewport().frame() is not None
    files = sorted(os.path.realpath(p) for p in folder.iterdir() if p.is_file())
    assert sorted(opened["before decode"]) == files  # each file once: routing (16) or index (4)
    # decoded here at most once each (the preview's pixels are the series' own; the decode
    # workers, when they run, decode every image, the preview too, in their processes)
    assert len(opened["decode"]) == len(set(opened["decode"]))


def test_a_series_loads_on_workers_the_ui_thread_only_draws(window, qtbot, monkeypatch):
    # issue 22: indexing, decoding and the saved measurements' read run on worker threads
    # (or the decode processes); the UI thread only draws what they hand it
    import threading

    from healthfm_desktop.controllers import images as images_module
    from healthfm_desktop.core.imaging import parallel_decode, scanning, series as series_module

    threads: dict[str, set] = {"index": set(), "decode": set(), "measurements": set()}

    def on_thread(kind, real):
        return lambda *args, **kwargs: threads[kind].add(threading.current_thread()) or real(*args, **kwargs)

    monkeypatch.setattr(scanning, "index_object", on_thread("index", scanning.index_object))
    monkeypatch.setattr(series_module, "decode_stored", on_thread("decode", series_module.decode_stored))
    monkeypatch.setattr(parallel_decode, "decode_stored", on_thread("decode", parallel_decode.decode_stored))
    monkeypatch.setattr(images_module, "read_saved_measurements",
                        on_thread("measurements", images_module.read_saved_measurements))
    submitted = []  # handed to the decode processes (when they run, every image is)
    for name in ("submit", "submit_many"):
        monkeypatch.setattr(parallel_decode.DecodePool, name, lambda self, requests, real=getattr(
            parallel_decode.DecodePool, name): submitted.append(requests) or real(self, requests))
    controller, workspace, summary = open_and_wait(window, qtbot, [MR_SERIES])
    assert summary["frames"] == 170 and workspace.active_viewport().frame() is not None
    assert controller.is_series_loaded(controller.series[0].key)
    assert threads["index"] and threads["measurements"] and (threads["decode"] or submitted)
    for kind, seen in threads.items():
        assert threading.main_thread() not in seen, kind


def test_the_head_libraries_import_on_a_worker_once_there_are_labels_not_with_the_workspace(qtbot, tmp_path, monkeypatch):
    # issue 22: imported as the workspace was built, scikit-learn and SciPy overlapped the first
    # image import and their GIL holds stalled the UI 430-640 ms (bench_viewer.py, first open)
    import threading

    from healthfm_desktop.controllers import adaptation
    from healthfm_desktop.core.foundation import adaptation as core_adaptation

    ran: list = []
    monkeypatch.setattr(adaptation, "_WARM_UP", [])
    monkeypatch.setattr(core_adaptation, "import_head_libraries", lambda: ran.append(threading.current_thread()))
    harness = next(shown_images_harness(qtbot, tmp_path, monkeypatch))
    qtbot.wait(100)
    assert ran == [] and adaptation._WARM_UP == []
    harness.controllers["images"].adaptation.tag(["some series"], "normal")
    qtbot.waitUntil(lambda: bool(ran), timeout=10_000)
    assert ran[0] is not threading.main_thread() and len(adaptation._WARM_UP) == 1
    qtbot.waitUntil(lambda: not adaptation._WARM_UP[0].is_running, timeout=10_000)


def test_a_dropped_series_enters_the_study_database_once_it_is_decoded(main_window, qtbot, tmp_path, monkeypatch):
    # its header reads wait for the decode to end (beside it they stalled the UI), then it is listed
    from healthfm_desktop.controllers.pacs import PacsController

    pacs = main_window.findChild(PacsController)
    indexed: list = []
    real = pacs.index_opened_series
    monkeypatch.setattr(pacs, "index_opened_series", lambda series: indexed.append(
        main_window.controllers["images"].busy) or real(series))
    controller, _, summary = open_and_wait(main_window, qtbot, [DICOM / "series" / "CT_head_phantom_philips_1mm_20sl"])
    qtbot.waitUntil(lambda: bool(indexed), timeout=30_000)
    assert indexed == [False] and controller.is_series_loaded(controller.series[0].key)
    uids = [f.instance.sop_instance_uid for f in controller.series[0].frames]
    qtbot.waitUntil(lambda: all(pacs.database().has_instance(uid) for uid in uids), timeout=30_000)
