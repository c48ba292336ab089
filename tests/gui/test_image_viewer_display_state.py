"""What Weasis and RadiAnt users expect of the viewer, on real DICOM: each series keeps its
slice, window/level, zoom and inversion when the user comes back and when MPR opens and
closes; orientation letters, a scale bar, invert, preset keys 1-9, MIP/MinIP slabs, AI
overlays that come back with their image, and a toolbar whose main tools show at 1280 px."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from tests.gui.test_image_viewer import CT_SMALL, DICOM, SCREENSHOTS, open_and_wait, shown_images_harness
import pytest

CT_HEAD = DICOM / "series" / "CT_head_phantom_philips_1mm_20sl"


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    yield from shown_images_harness(qtbot, tmp_path, monkeypatch)


def two_series(window, qtbot):
    controller, workspace, _ = open_and_wait(window, qtbot, [CT_HEAD, CT_SMALL])
    keys = {s.frame_count: s.key for s in controller.series}
    return controller, workspace, keys[20], keys[1]


def test_window_zoom_and_slice_are_kept_per_series(window, qtbot):
    controller, workspace, head, small = two_series(window, qtbot)
    workspace.show_series(head)
    viewport = workspace.active_viewport()
    viewport.setFocus()
    assert workspace.active_slot().index == 10  # a stack opens at its middle slice
    for _ in range(3):
        QTest.keyClick(viewport, Qt.Key.Key_Up)
    viewport.set_window(35, 80)
    viewport.set_zoom(2.5)
    # pan with a middle-button drag, as the user does
    QTest.mousePress(viewport, Qt.MouseButton.MiddleButton, Qt.KeyboardModifier.NoModifier, QPoint(200, 200))
    QTest.mouseMove(viewport, QPoint(240, 170))
    QTest.mouseRelease(viewport, Qt.MouseButton.MiddleButton, Qt.KeyboardModifier.NoModifier, QPoint(240, 170))
    pan = viewport.view_state()["pan"]
    assert pan != (0.0, 0.0)
    assert workspace.active_slot().index == 7
    workspace.series_browser.series_activated.emit(small)  # the user clicks the other series
    assert viewport.window() != (35.0, 80.0)
    workspace.series_browser.series_activated.emit(head)  # and comes back
    qtbot.waitUntil(lambda: viewport.frame() is not None)
    assert workspace.active_slot().index == 7
    assert viewport.window() == (35.0, 80.0)
    assert viewport.zoom() == pytest.approx(2.5)
    assert viewport.view_state()["pan"] == pytest.approx(pan)
    workspace.series_browser.series_activated.emit(head)  # clicking it again changes nothing
    assert (workspace.active_slot().index, viewport.window()) == (7, (35.0, 80.0))
    assert viewport.view_state()["pan"] == pytest.approx(pan)


def test_window_and_slice_carry_into_mpr_and_back(window, qtbot):
    controller, workspace, head, _small = two_series(window, qtbot)
    workspace.show_series(head, 5)
    viewport = workspace.active_viewport()
    viewport.set_window(40, 120)
    with qtbot.waitSignal(controller.mpr_ready, timeout=60_000):
        workspace.mpr_action.trigger()
    mpr = workspace.mpr_view
    for plane in mpr.viewports.values():
        assert plane.window() == (40.0, 120.0)
    assert mpr.voxel()[0] == 5  # the cross-hair on the slice the user was on
    # W/L and the slice change in MPR, and come back to the series
    mpr.viewports["coronal"].set_window(60, 300)
    mpr._step("axial", 3)
    axial_slice = round(mpr.voxel()[0])
    assert axial_slice != 5
    workspace.mpr_action.trigger()
    assert workspace.center.currentWidget() is workspace.grid_host
    assert viewport.window() == (60.0, 300.0)
    assert workspace.active_slot().index == axial_slice


def test_zoom_and_pan_carry_into_mpr_and_back(window, qtbot):
    controller, workspace, head, _small = two_series(window, qtbot)
    workspace.show_series(head, 5)
    viewport = workspace.active_viewport()
    viewport.set_zoom(viewport.zoom() * 2.5)
    # a middle-button drag's pan, as the user does it
    QTest.mousePress(viewport, Qt.MouseButton.MiddleButton, Qt.KeyboardModifier.NoModifier, QPoint(200, 200))
    QTest.mouseMove(viewport, QPoint(230, 180))
    QTest.mouseRelease(viewport, Qt.MouseButton.MiddleButton, Qt.KeyboardModifier.NoModifier, QPoint(230, 180))
    magnification, pan = viewport.relative_view()
    assert magnification == pytest.approx(2.5, rel=1e-3) and pan != (0.0, 0.0)
    with qtbot.waitSignal(controller.mpr_ready, timeout=60_000):
        workspace.mpr_action.trigger()
    mpr = workspace.mpr_view
    # every plane at 2.5x its own fit (the planes are smaller than the stack's viewport); the
    # axial plane, whose pixels are the stack's, centred on the same image point
    for plane, plane_view in mpr.viewports.items():
        assert plane_view.relative_view()[0] == pytest.approx(2.5, rel=1e-3), plane
    assert mpr.viewports["axial"].relative_view()[1] == pytest.approx(pan, abs=1e-6)
    assert mpr.viewports["coronal"].relative_view()[1] == (0.0, 0.0)
    # zoomed out in MPR's axial plane: the stack comes back at that zoom
    axial = mpr.viewports["axial"]
    axial.set_zoom(axial.zoom() / 2.5 * 1.5)
    _, axial_pan = axial.relative_view()
    workspace.mpr_action.trigger()
    assert viewport.relative_view()[0] == pytest.approx(1.5, rel=1e-3)
    assert viewport.relative_view()[1] == pytest.approx(axial_pan, abs=1e-6)


def test_orientation_letters_on_the_viewport_and_every_mpr_plane(window, qtbot):
    controller, workspace, head, _small = two_series(window, qtbot)
    workspace.show_series(head)
    viewport = workspace.active_viewport()
    orientation = controller.series_by_key(head).frames[0].orientation
    assert np.allclose(orientation, (1, 0, 0, 0, 1, 0), atol=0.05)  # an axial head CT
    assert viewport.edge_letters() == {"right": "L", "left": "R", "top": "A", "bottom": "P"}
    workspace.flip_h_action.trigger()
    assert viewport.edge_letters()["right"] == "R"
    workspace.rotate_action.trigger()  # 90 degrees clockwise: the anterior edge goes right
    assert viewport.edge_letters()["right"] == "A"
    with qtbot.waitSignal(controller.mpr_ready, timeout=60_000):
        workspace.mpr_action.trigger()
    letters = {plane: v.edge_letters() for plane, v in workspace.mpr_view.viewports.items()}
    assert {letters["axial"]["left"], letters["axial"]["right"]} == {"R", "L"}
    assert {letters["coronal"]["top"], letters["coronal"]["bottom"]} == {"H", "F"}
    assert {letters["sagittal"]["left"], letters["sagittal"]["right"]} == {"A", "P"}
    workspace.mpr_view.grab().save(str(SCREENSHOTS / "viewer_mpr_letters.png"))


def test_scale_bar_matches_the_pixel_spacing_at_any_zoom(window, qtbot):
    controller, workspace, head, _small = two_series(window, qtbot)
    workspace.show_series(head)
    viewport = workspace.active_viewport()
    spacing = controller.series_by_key(head).frames[0].pixel_spacing
    for zoom in (0.7, 1.0, 3.0):
        viewport.set_zoom(zoom)
        millimetres, pixels = viewport.scale_bar()
        assert pixels == pytest.approx(millimetres / spacing[1] * zoom)
        assert pixels <= viewport.width() / 5
    viewport.grab().save(str(SCREENSHOTS / "viewer_scale_bar.png"))


def test_invert_toggles_the_grey_scale_and_stays_with_the_series(window, qtbot):
    controller, workspace, head, small = two_series(window, qtbot)
    workspace.show_series(head)
    viewport = workspace.active_viewport()
    viewport.setFocus()
    before = viewport.rendered_image().convertToFormat(viewport.rendered_image().Format.Format_Grayscale8)
    QTest.keyClick(viewport, Qt.Key.Key_N)
    after = viewport.rendered_image().convertToFormat(before.Format.Format_Grayscale8)
    assert viewport.inverted() and workspace.invert_action.isChecked()
    for x, y in ((10, 10), (256, 256), (200, 300)):
        assert after.pixelColor(x, y).value() == 255 - before.pixelColor(x, y).value()
    workspace.series_browser.series_activated.emit(small)
    assert not viewport.inverted()
    workspace.series_browser.series_activated.emit(head)
    qtbot.waitUntil(lambda: viewport.frame() is not None)
    assert viewport.inverted()


def test_keys_one_to_nine_apply_the_listed_presets(window, qtbot):
    controller, workspace, head, _small = two_series(window, qtbot)
    workspace.show_series(head)
    viewport = workspace.active_viewport()
    viewport.setFocus()
    presets = controller.window_presets(head)
    assert len(presets) >= 3
    for number in (1, 3):
        QTest.keyClick(viewport, getattr(Qt.Key, f"Key_{number}"))
        _name, center, width = presets[number - 1]
        assert viewport.window() == (center, width)


def test_mip_and_minip_slabs_in_mpr(window, qtbot):
    controller, workspace, head, _small = two_series(window, qtbot)
    workspace.show_series(head)
    with qtbot.waitSignal(controller.mpr_ready, timeout=60_000):
        workspace.mpr_action.trigger()
    mpr = workspace.mpr_view
    coronal = mpr.viewports["coronal"]
    index = mpr.plane_index("coronal")
    single = coronal.frame().copy()
    mpr.set_slab("mip", 9)
    mip = coronal.frame().copy()
    mpr.set_slab("minip", 9)
    minip = coronal.frame().copy()
    volume = mpr.volume()
    planes = [volume.plane_image("coronal", k)[0] for k in range(index - 4, index + 5)]
    np.testing.assert_allclose(mip, np.max(planes, axis=0))
    np.testing.assert_allclose(minip, np.min(planes, axis=0))
    assert (mip >= single).all() and (minip <= single).all() and (mip > single).any()
    assert any("MIP slab" in line for line in coronal.corner_lines()["top_left"]) is False  # minip now
    assert any("MinIP slab 9" in line for line in coronal.corner_lines()["top_left"])
    mpr.set_slab(None)
    np.testing.assert_allclose(coronal.frame(), single)


def test_an_ai_overlay_comes_back_with_its_image(window, qtbot):
    controller, workspace, head, _small = two_series(window, qtbot)
    workspace.show_series(head, 4)
    viewport = workspace.active_viewport()
    width, height = viewport.image_size()
    heat = np.zeros((height, width, 4), np.uint8)
    heat[..., 0] = 255
    heat[..., 3] = 128
    viewport.set_overlay("saliency", heat)
    viewport.add_shape_overlay("contour", [(10, 10), (50, 10), (50, 50)], "lesion")
    viewport.setFocus()
    QTest.keyClick(viewport, Qt.Key.Key_Down)
    assert viewport.overlay_names() == [] and viewport.shape_overlay_names() == []  # not on another image
    QTest.keyClick(viewport, Qt.Key.Key_Up)
    assert viewport.overlay_names() == ["saliency"] and viewport.shape_overlay_names() == ["contour"]


def test_mpr_overlays_and_export_stay_on_the_toolbar_at_1280_px(window, qtbot):
    workspace = window.workspace
    workspace.resize(1280 - 140, 760)  # the window at 1280 px, less the workspace switcher
    qtbot.wait(50)
    bar = workspace.toolbar
    for action in (workspace.mpr_action, workspace.overlay_action, workspace.invert_action):
        assert bar.widgetForAction(action).isVisible(), action.text()
    export = next(b for b in bar.findChildren(type(workspace.measure_button)) if b.objectName() == "exportButton")
    assert export.isVisible()
    assert export.geometry().right() <= bar.width()
    bar.grab().save(str(SCREENSHOTS / "viewer_toolbar_1280.png"))
