"""AI analysis in the Images workspace, as a user does it: open a real chest X-ray or fetal
ultrasound (DICOM), press Analyse, see the label / circumference, the model and its latency,
and the saliency or segmentation overlay on the image; cancel; export SEG/SR."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from healthfm_desktop.controllers.image_ai import ImageAnalysisController
from healthfm_desktop.controllers.images import ImagesController
from healthfm_desktop.views.image_viewer.analysis_panel import PANEL_TITLE, SHAPE_NAME, install_image_analysis
from healthfm_desktop.views.image_viewer.workspace import ImagesWorkspace
from tests.core.test_image_ai_helpers import IMAGE_SAMPLES, IMAGE_TEST_DATA, make_dicom
from tests.gui.screenshots import SCREENSHOTS


@pytest.fixture
def workspace(qtbot):
    yield from analysis_harness(qtbot)


def analysis_harness(qtbot):
    """A shown Images workspace with its Analyse panel: (view, images, analysis, panel)."""
    images = ImagesController()
    view = ImagesWorkspace(images)
    analysis = ImageAnalysisController(images, parent=images)
    panel = install_image_analysis(view, analysis)
    view.resize(1400, 900)
    qtbot.addWidget(view)
    view.show()
    view.show_side_panel(PANEL_TITLE)
    yield view, images, analysis, panel
    analysis.cancel()
    images.cancel_jobs()
    qtbot.waitUntil(lambda: not images.busy and not analysis.busy, timeout=30_000)


def _open(qtbot, view, images, path: Path):
    with qtbot.waitSignal(images.import_finished, timeout=60_000):
        images.open_paths([path])
    qtbot.waitUntil(lambda: view.active_viewport().frame() is not None, timeout=30_000)
    qtbot.waitUntil(lambda: images.current_series() is not None and images.current_index() >= 0, timeout=30_000)


def _analyse(qtbot, panel, analysis):
    with qtbot.waitSignal(analysis.result, timeout=60_000) as result:
        panel.analyse_button.click()
    qtbot.waitUntil(lambda: not analysis.busy, timeout=10_000)
    return result.args[0]


def test_analyse_a_fetal_ultrasound_draws_the_head_and_its_circumference(workspace, qtbot):
    view, images, analysis, panel = workspace
    _open(qtbot, view, images, IMAGE_SAMPLES / "fetal_head_ultrasound.dcm")
    outcome = _analyse(qtbot, panel, analysis)
    viewport = view.active_viewport()
    assert outcome.task == "segment"
    assert "ai-segmentation" in viewport.overlay_names()
    assert SHAPE_NAME in viewport.shape_overlay_names()
    hc = outcome.segmentation.head_circumference_mm
    assert hc == pytest.approx(175.0, rel=0.06)  # the sonographer measured 175.0 mm
    assert f"{hc:.1f} mm" in panel.headline.text()
    assert "hc18_unet" in panel.details.text() and "Latency" in panel.details.text()
    assert not panel.warning.isVisible()
    mask = outcome.overlay_rgba[..., 3] > 0
    assert mask.shape == viewport.frame().shape[:2] and 0.05 < mask.mean() < 0.8
    qtbot.wait(50)
    view.grab().save(str(SCREENSHOTS / "image_ai_segmentation.png"))


def test_analyse_a_chest_xray_shows_label_probability_and_saliency(workspace, qtbot, tmp_path):
    view, images, analysis, panel = workspace
    pixels = np.asarray(Image.open(IMAGE_TEST_DATA / "pneumoniamnist_test_010_pneumonia.png"))
    big = np.asarray(Image.fromarray(pixels).resize((224, 224), Image.BICUBIC))
    _open(qtbot, view, images, make_dicom(tmp_path / "cr.dcm", big, "CR", 0.7))
    outcome = _analyse(qtbot, panel, analysis)
    viewport = view.active_viewport()
    assert outcome.task == "classify"
    assert "ai-saliency" in viewport.overlay_names()
    assert outcome.overlay_rgba.shape[:2] == (224, 224)
    label = outcome.classification.label
    assert label in panel.headline.text() and "pneumonia_resnet" in panel.details.text()
    assert "Calibrated probabilities" in panel.details.text() and "90% conformal set" in panel.details.text()
    assert panel.colour_bar.isVisible() and "not where the disease is" in panel.caption.text()
    # the nearest training X-rays, with their labels
    assert panel.similar_title.isVisible() and sum(t.isVisible() for t in panel.similar_images) == 3
    labels = panel.similar_title.text().split("left to right: ")[1].split(", ")
    assert len(labels) == 3 and set(labels) <= {"normal", "pneumonia"}
    # the opacity slider reaches the viewport's overlay
    panel.opacity.setValue(80)
    assert viewport._overlays["ai-saliency"][1] == pytest.approx(0.8)
    panel.opacity.setValue(50)
    qtbot.wait(50)
    view.grab().save(str(SCREENSHOTS / "image_ai_saliency.png"))

    # choosing the segmenter for an X-ray: its answer is withheld, the reasons shown first
    panel.model_choice.setCurrentIndex(2)
    outcome = _analyse(qtbot, panel, analysis)
    assert outcome.task == "segment" and outcome.withheld and "ai-saliency" not in viewport.overlay_names()
    assert "ai-segmentation" not in viewport.overlay_names()
    assert panel.warning.isVisible() and "modality is CR" in panel.warning.text()
    assert panel.run_anyway_button.isVisible() and not panel.export_button.isEnabled()

    # export: a DICOM SR that references the image on screen
    with qtbot.waitSignal(analysis.exported, timeout=30_000) as exported:
        panel.model_choice.setCurrentIndex(1)
        _analyse(qtbot, panel, analysis)
        analysis.export(tmp_path / "out")
    sr = pydicom.dcmread(exported.args[0][-1])
    assert sr.Modality == "SR"
    assert sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == outcome.image.dicom.SOPInstanceUID


def test_an_ultrasound_png_given_to_automatic_gets_no_pneumonia_answer_and_says_why(workspace, qtbot):
    view, images, analysis, panel = workspace
    _open(qtbot, view, images, IMAGE_TEST_DATA / "hc18_test_172_HC.png")
    assert panel.model_choice.currentData() == "auto"
    outcome = _analyse(qtbot, panel, analysis)
    assert outcome.task == "segment" and outcome.classification is None
    assert "pneumonia" not in panel.headline.text() and "normal" not in panel.headline.text()
    assert "head" in panel.headline.text()
    assert "outside the scope of pneumonia_resnet" in panel.details.text() and panel.details.isVisible()
    assert not panel.run_anyway_button.isVisible()


def test_a_photo_gets_no_answer_the_reasons_first_and_run_anyway_is_marked(workspace, qtbot):
    view, images, analysis, panel = workspace
    _open(qtbot, view, images, IMAGE_TEST_DATA / "photos" / "camera.jpg")
    outcome = _analyse(qtbot, panel, analysis)
    viewport = view.active_viewport()
    assert outcome.withheld and outcome.classification is None or outcome.classification.answer is None
    assert panel.headline.text().startswith("No answer")
    assert panel.warning.isVisible() and "Answer withheld" in panel.warning.text()
    assert "pneumonia_resnet:" in panel.warning.text() and "hc18_unet:" in panel.warning.text()
    assert panel.warning.y() < panel.headline.y()  # the reasons come first
    assert not viewport.overlay_names() and not panel.colour_bar.isVisible() and not panel.similar_title.isVisible()
    qtbot.wait(50)
    panel.grab().save(str(SCREENSHOTS / "image_ai_withheld.png"))
    with qtbot.waitSignal(analysis.result, timeout=60_000) as result:
        panel.run_anyway_button.click()
    qtbot.waitUntil(lambda: not analysis.busy, timeout=10_000)
    forced = result.args[0]
    assert forced.forced and forced.classification is not None and forced.classification.answer is not None
    assert forced.classification.label in panel.headline.text() and "run anyway" in panel.headline.text()
    assert "Run anyway" in panel.warning.text() and panel.warning.isVisible()
    assert "ai-saliency" in viewport.overlay_names() and panel.colour_bar.isVisible()
    qtbot.wait(50)
    panel.grab().save(str(SCREENSHOTS / "image_ai_run_anyway.png"))


def test_analyse_without_an_image_says_so_and_cancel_is_clean(workspace, qtbot):
    view, images, analysis, panel = workspace
    with qtbot.waitSignal(analysis.failed, timeout=5_000) as failed:
        panel.analyse_button.click()
    assert "Open an image first" in failed.args[0]
    assert panel.headline.text() == "Analysis failed"
    _open(qtbot, view, images, IMAGE_SAMPLES / "fetal_head_ultrasound.dcm")
    with qtbot.waitSignal(analysis.finished, timeout=30_000):
        panel.analyse_button.click()
        assert panel.cancel_button.isEnabled()
        panel.cancel_button.click()
    assert panel.analyse_button.isEnabled()


def test_analyse_a_series_measures_every_image_and_can_be_cancelled(workspace, qtbot, tmp_path):
    import json

    from pydicom.uid import generate_uid

    view, images, analysis, panel = workspace
    cases = json.loads((IMAGE_TEST_DATA / "cases.json").read_text())["hc18"]
    folder = tmp_path / "series"
    folder.mkdir()
    uids = (generate_uid(), generate_uid())
    for number, case in enumerate(cases, start=1):
        # one spacing for the series (a DICOM series shares it); the truth is rescaled to match
        pixels = np.asarray(Image.open(IMAGE_TEST_DATA / case["file"]))
        make_dicom(folder / f"{number}.dcm", pixels, "US", 0.5, series=uids, instance_number=number)
    _open(qtbot, view, images, folder)
    assert images.frame_count(images.current_series().key) == len(cases)
    with qtbot.waitSignal(analysis.series_result, timeout=60_000) as done:
        panel.series_button.click()
    qtbot.waitUntil(lambda: not analysis.busy, timeout=10_000)
    result = done.args[0]
    assert len(result.per_image) == len(cases) and result.task == "segment"
    by_instance = {int(images.current_series().frames[r["index"]].instance.instance_number): r for r in result.per_image}
    for number, case in enumerate(cases, start=1):
        expected = case["hc_mm"] * 0.5 / case["pixel_spacing_mm"]
        assert by_instance[number]["head_circumference_mm"] == pytest.approx(expected, rel=0.08)
    assert panel.series_summary.isVisible() and "head measured on 4" in panel.series_summary.text()
    assert "ai-segmentation" in view.active_viewport().overlay_names()

    with qtbot.waitSignal(analysis.finished, timeout=30_000):
        panel.series_button.click()
        panel.cancel_button.click()
    assert panel.analyse_button.isEnabled() and panel.series_button.isEnabled()


def test_the_main_window_has_the_panel_in_its_images_workspace(qtbot):
    from healthfm_desktop.app import build_main_window

    window = build_main_window()
    qtbot.addWidget(window)
    images = window.workspace_widget("images")
    assert PANEL_TITLE in images.side_panel_titles()
    window.close()


def test_no_overlay_lands_on_another_image_after_scrolling(workspace, qtbot, tmp_path):
    import json

    from pydicom.uid import generate_uid

    view, images, analysis, panel = workspace
    cases = json.loads((IMAGE_TEST_DATA / "cases.json").read_text())["hc18"][:2]
    folder = tmp_path / "two"
    folder.mkdir()
    uids = (generate_uid(), generate_uid())
    for number, case in enumerate(cases, start=1):
        make_dicom(folder / f"{number}.dcm", np.asarray(Image.open(IMAGE_TEST_DATA / case["file"])), "US", 0.5,
                   series=uids, instance_number=number)
    _open(qtbot, view, images, folder)
    qtbot.waitUntil(lambda: not images.busy, timeout=30_000)
    with qtbot.waitSignal(analysis.result, timeout=60_000):
        panel.analyse_button.click()
        view.scroll(step=1)  # the user moves on before the result arrives
        qtbot.waitUntil(lambda: images.current_index() == 1, timeout=10_000)
    assert "ai-segmentation" not in view.active_viewport().overlay_names()
    assert "image on screen changed" in panel.details.text()
