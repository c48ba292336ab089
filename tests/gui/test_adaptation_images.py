"""Adaptation inside the Images viewer, as a user does it: open the bundled single-file DICOM
series (CT, MR, NM, US, ...), tag the ultrasound series and the others, train on the image
encoder, read the metrics, run the model on a chosen series, export/import it, and find the
series most similar to one with their labels."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

from healthfm_desktop.controllers.image_ai import ImageAnalysisController
from healthfm_desktop.controllers.images import ImagesController
from healthfm_desktop.core.foundation.adaptation import AdaptedModel
from healthfm_desktop.core.inference.registry import load_registry
from healthfm_desktop.views.image_viewer.analysis_panel import install_image_analysis
from healthfm_desktop.views.image_viewer.workspace import ImagesWorkspace

SINGLE = Path(__file__).resolve().parents[2] / "tests" / "data" / "dicom" / "single"


def _opened(qtbot, paths) -> tuple[ImagesController, ImagesWorkspace]:
    """An images workspace, shown at a workstation size, with ``paths`` opened and loaded."""
    controller = ImagesController()
    view = ImagesWorkspace(controller)
    qtbot.addWidget(view)
    view.resize(1400, 900)
    view.show()
    with qtbot.waitSignal(controller.import_finished, timeout=120_000):
        controller.open_paths(paths)
    qtbot.waitUntil(lambda: not controller.busy, timeout=120_000)
    return controller, view


def test_label_train_metrics_run_export_import_similar(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("HEALTHFM_HOME", str(tmp_path / "home"))
    controller, view = _opened(qtbot, [SINGLE])
    panel = view.adaptation
    series = {s.key: s.modality for s in controller.series}
    ultrasound = [k for k, m in series.items() if m == "US"]
    assert len(ultrasound) >= 5 and len(series) - len(ultrasound) >= 10
    for key, modality in series.items():
        view.series_browser.select(key)
        assert view.selected_series_keys() == [key]
        panel.label_edit.setCurrentText("ultrasound" if modality == "US" else "other")
        qtbot.mouseClick(panel.tag_button, Qt.MouseButton.LeftButton)
    assert panel.controller.labels.counts() == {"other": len(series) - len(ultrasound), "ultrasound": len(ultrasound)}

    panel.name.setText("is_ultrasound")
    with qtbot.waitSignal(panel.controller.trained, timeout=180_000):
        qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
    text = panel.metrics.text()
    assert "is_ultrasound v1" in text and "auc" in text and "95 % CI" in text
    assert f"ultrasound: {len(ultrasound)}" in text
    qtbot.waitUntil(lambda: panel.model.findText("is_ultrasound") >= 0, timeout=30_000)

    # the viewer's Analyse panel offers the new model beside the shipped ones, with its domain and set
    analysis = ImageAnalysisController(controller, parent=controller)
    ai = install_image_analysis(view, analysis)
    qtbot.waitUntil(lambda: ai.model_choice.findData("user:is_ultrasound") >= 0, timeout=30_000)
    ai.model_choice.setCurrentIndex(ai.model_choice.findData("user:is_ultrasound"))
    adapted = AdaptedModel.load(load_registry().get("is_ultrasound"))
    single_frame = [s.key for s in controller.series if len(s.frames) == 1]
    for key in (next(k for k in ultrasound if k in single_frame), next(k for k in single_frame if k not in ultrasound)):
        view.show_series(key)  # on screen: Analyse runs on the image the user sees
        with qtbot.waitSignal(analysis.result, timeout=60_000):
            qtbot.mouseClick(ai.analyse_button, Qt.MouseButton.LeftButton)
        # the same answer as the model run on that image outside the viewer
        expected = adapted.predict([controller.adaptation_items([key]).payloads[0]()])[0]
        details = ai.details.text()
        assert "is_ultrasound 1 (your model" in details
        assert f"In the model's domain: {'yes' if expected['in_domain'] else 'no'}" in details
        if expected["in_domain"]:
            assert ai.headline.text() == f"{expected['label']} (p = {expected['probabilities'][expected['label']]:.2f})"
            assert f"Conformal set: {{{', '.join(expected['prediction_set'])}}}" in details
        else:  # withheld, Run anyway offered
            assert ai.headline.text().startswith("No answer") and not ai.run_anyway_button.isHidden()
    view.side_tabs.setCurrentIndex(view.side_tabs.count() - 1)
    view.grab().save(str(tmp_path / "images_adapt.png"))

    view.series_browser.select(ultrasound[0])
    with qtbot.waitSignal(panel.controller.predicted, timeout=60_000):
        qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    assert panel.results.rowCount() == 1 and panel.results.item(0, 0).text() == ultrasound[0]
    answer = panel.results.item(0, 1).text()
    assert answer.split(" ")[0] in ("ultrasound", "other") or answer.startswith("withheld")

    exported = tmp_path / "is_ultrasound.healthfm-model"
    with qtbot.waitSignal(panel.controller.exported, timeout=30_000):
        panel.controller.export("is_ultrasound", str(exported))
    monkeypatch.setenv("HEALTHFM_HOME", str(tmp_path / "colleague"))
    with qtbot.waitSignal(panel.controller.imported, timeout=30_000):
        panel.controller.import_model(str(exported))
    assert panel.status.text() == "Imported is_ultrasound 1"

    with qtbot.waitSignal(panel.controller.similar_found, timeout=60_000):
        qtbot.mouseClick(panel.similar_button, Qt.MouseButton.LeftButton)
    rows = panel.neighbours.rowCount()
    assert rows == min(10, len(series) - 1)
    neighbours = [panel.neighbours.item(r, 0).text() for r in range(rows)]
    assert ultrasound[0] not in neighbours and set(neighbours) <= set(series)
    assert all(panel.neighbours.item(r, 2).text() in ("ultrasound", "other") for r in range(rows))
    view.grab().save(str(tmp_path / "images_similar.png"))


def test_find_similar_reaches_the_stored_series_with_their_labels(qtbot, tmp_path, monkeypatch):
    from healthfm_desktop.core.foundation.labelling import LabelSession
    from healthfm_desktop.core.storage.studies import StudyDatabase, default_database_path

    monkeypatch.setenv("HEALTHFM_HOME", str(tmp_path / "home"))
    with StudyDatabase(default_database_path()) as database:  # what the user imported or retrieved before
        assert database.index_files([SINGLE.parent / "dicomdir"]).added == 31
        stored = {row.series_uid: database.instance_paths(series_uid=row.series_uid)
                  for study in database.search() for row in database.series(study.study_uid)}
    opened = next(uid for uid, paths in stored.items() if len(paths) >= 3)
    LabelSession("images").tag([uid for uid in stored if uid != opened], "stored before")
    controller, view = _opened(qtbot, stored[opened])
    keys = [s.key for s in controller.series]  # the viewer may split one series into stacks
    assert {key.split("#")[0] for key in keys} == {opened}
    panel = view.adaptation
    view.series_browser.select(keys[0])
    with qtbot.waitSignal(panel.controller.similar_found, timeout=60_000):
        qtbot.mouseClick(panel.similar_button, Qt.MouseButton.LeftButton)
    rows = {panel.neighbours.item(r, 0).text(): panel.neighbours.item(r, 2).text()
            for r in range(panel.neighbours.rowCount())}
    # the open one's other stacks and the stored series but the open one (not twice), marked as
    # stored, with the user's labels
    shown_stored = {r for r in rows if r.endswith(" (stored)")}
    assert len(rows) == min(10, len(keys) - 1 + len(stored) - 1) and len(shown_stored) >= 10 - (len(keys) - 1)
    assert set(rows) - shown_stored <= set(keys[1:])
    assert {r[: -len(" (stored)")] for r in shown_stored} <= set(stored) - {opened}
    assert all(rows[r] == "stored before" for r in shown_stored)
    view.side_tabs.setCurrentIndex(view.side_tabs.count() - 1)
    view.grab().save(str(tmp_path / "images_similar_stored.png"))
