"""PNG / JPEG images in the Images workspace: dropped on the main window they open as one-frame
images marked "not DICOM" (no patient, no spacing: measurements in pixels), window/level works
on their 8- or 16-bit values, and the AI analysis panel runs on them, giving what the command
line's `images classify` gives for the same file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from healthfm_desktop.controllers.image_ai import ImageAnalysisController
from healthfm_desktop.views.image_viewer.analysis_panel import AnalysisPanel
from tests.gui.test_image_viewer import draw, open_and_wait
from tests.gui.screenshots import SCREENSHOTS

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "tests" / "data" / "images"
CHEST = IMAGES / "pneumoniamnist_test_001_pneumonia.png"
ULTRASOUND = IMAGES / "hc18_test_172_HC.png"


@pytest.fixture
def main_window(qtbot, tmp_path, monkeypatch):
    from healthfm_desktop.app import build_main_window

    monkeypatch.setenv("HEALTHFM_HOME", str(tmp_path / "home"))
    window = build_main_window()
    qtbot.addWidget(window)
    window.resize(1400, 900)
    window.show()
    yield window
    window.controllers["images"].cancel_jobs()
    qtbot.waitUntil(lambda: not window.controllers["images"].busy, timeout=30_000)
    window.close()


def _panel(workspace) -> AnalysisPanel:
    tabs = workspace.side_tabs
    return next(tabs.widget(i) for i in range(tabs.count()) if isinstance(tabs.widget(i), AnalysisPanel))


def test_a_dropped_png_opens_in_images_and_the_analysis_runs(main_window, qtbot, capsys):
    main_window.show_workspace("notes")
    controller, workspace, summary = open_and_wait(main_window, qtbot, [CHEST])
    assert main_window.current_workspace() == "images"
    assert summary["series"] == 1 and summary["rejected"] == 0
    assert not workspace.unreadable_panel.files()  # no "not a DICOM file"
    key = controller.series[0].key
    assert controller.is_plain_image(key)
    viewport = workspace.active_viewport()
    pixels = np.asarray(Image.open(CHEST))
    assert viewport.frame().shape == pixels.shape == (28, 28)
    # marked as not DICOM, lengths in pixels, the value under a point is the file's value
    assert viewport.badges()["notice"].startswith("Not DICOM: no patient or spacing information")
    corners = viewport.corner_lines()
    assert "No pixel spacing: measurements in pixels" in corners["bottom_left"]
    assert corners["top_left"] == ["PNG, not DICOM"] and "pneumoniamnist_test_001_pneumonia.png" in corners["top_right"]
    assert viewport.value_at(10, 14) == str(int(pixels[14, 10]))
    center, width = viewport.window()
    assert (center, width) == (pytest.approx((int(pixels.min()) + int(pixels.max())) / 2),
                               pytest.approx(int(pixels.max()) - int(pixels.min())))
    workspace.set_tool("distance")
    draw(viewport, [(2, 3), (14, 8)])
    rows = controller.measurement_rows()
    assert len(rows) == 1 and "px" in rows[0]["value"] and "13" in rows[0]["value"]  # hypot(12, 5) = 13 px
    # the analysis panel runs on it, with the command line's reader: the same probabilities
    analysis = controller.findChild(ImageAnalysisController)
    panel = _panel(workspace)
    with qtbot.waitSignal(analysis.result, timeout=60_000) as outcome:
        panel.analyse_button.click()
    qtbot.waitUntil(lambda: not analysis.busy, timeout=10_000)
    result = outcome.args[0]
    assert result.task == "classify" and result.classification is not None
    assert "p = " in panel.headline.text()
    from healthfm_desktop.cli import main

    capsys.readouterr()
    assert main(["images", "classify", str(CHEST), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out.splitlines()[0])
    assert cli["label"] == result.classification.label
    for label, probability in cli["probabilities"].items():
        assert result.classification.probabilities[label] == pytest.approx(probability, abs=1e-6)
    workspace.grab().save(str(SCREENSHOTS / "image_viewer_png.png"))


def test_jpeg_and_16_bit_png_keep_their_values_and_export_refuses_deidentification(main_window, qtbot, tmp_path):
    grey = np.asarray(Image.open(ULTRASOUND).convert("L"))
    sixteen = tmp_path / "ultrasound_16bit.png"
    Image.fromarray((grey.astype(np.uint16) * 257)).save(sixteen)  # 0..65535, a real 16-bit PNG
    jpeg = tmp_path / "ultrasound.jpg"
    Image.open(ULTRASOUND).convert("L").save(jpeg, quality=95)
    controller, workspace, summary = open_and_wait(main_window, qtbot, [sixteen, jpeg])
    assert summary["series"] == 2
    by_kind = {controller.series_by_key(s.key).modality: s.key for s in controller.series}
    assert set(by_kind) == {"PNG", "JPEG"}
    workspace.show_series(by_kind["PNG"])
    qtbot.waitUntil(lambda: workspace.active_viewport().frame() is not None
                    and workspace.active_slot().shown == (by_kind["PNG"], 0), timeout=10_000)
    viewport = workspace.active_viewport()
    row, col = np.unravel_index(np.argmax(grey), grey.shape)
    assert viewport.value_at(col, row) == str(int(grey[row, col]) * 257)  # 16 bits, not 8
    assert viewport.window()[1] > 255  # the window spans the 16-bit range
    assert any("16-bit grey" in line for line in viewport.corner_lines()["top_right"])
    assert controller.window_presets(by_kind["PNG"]) == []  # no modality presets for a plain image
    # a plain image has no DICOM header to de-identify: said, nothing written
    messages = []
    controller.message.connect(lambda level, text: messages.append((level, text)))
    workspace.request_deidentified_export(tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert any("is not DICOM" in text for _, text in messages)
    workspace.show_series(by_kind["JPEG"])
    qtbot.waitUntil(lambda: workspace.active_slot().shown == (by_kind["JPEG"], 0), timeout=10_000)
    assert workspace.active_viewport().frame().shape == grey.shape


def test_a_broken_png_is_listed_with_the_image_readers_reason(main_window, qtbot, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(CHEST.read_bytes()[:40])
    controller, workspace, summary = open_and_wait(main_window, qtbot, [broken, CHEST])
    assert summary["series"] == 1
    reasons = {Path(path).name: reason for path, reason in workspace.unreadable_panel.files()}
    assert "not a readable PNG image" in reasons["broken.png"]
