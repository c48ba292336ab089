"""Adaptation inside the Notes annotator, as a user does it: open 30 real MTSamples notes, tag the
notes with a history section and the others (selecting several notes at once), train a note classifier on
the text encoder, read the cross-validated metrics, run it on chosen notes, export/import it, and
find the notes most similar to one with their labels and open one of them by clicking it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import QItemSelectionModel, Qt

from healthfm_desktop.controllers.notes import NotesController
from healthfm_desktop.views.record_annotator.workspace import NotesWorkspace

NOTES = Path(__file__).resolve().parents[2] / "tests" / "data" / "text" / "phi_surrogate_notes.jsonl"


@pytest.fixture
def workspace(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("HEALTHFM_HOME", str(tmp_path / "home"))
    controller = NotesController(project_path=tmp_path / "project.hfmnotes")
    view = NotesWorkspace(controller)
    qtbot.addWidget(view)
    view.resize(1300, 800)
    view.show()
    with qtbot.waitSignal(controller.annotation_finished, timeout=300_000):
        controller.open_paths([NOTES])
    qtbot.waitUntil(lambda: view.note_list.count() == 30, timeout=30_000)
    return view


def select_notes(view, ids: set[str]) -> None:
    view.note_list.clearSelection()
    for i in range(view.note_list.count()):
        item = view.note_list.item(i)
        if item.data(Qt.ItemDataRole.UserRole) in ids:
            view.note_list.setCurrentItem(item, QItemSelectionModel.SelectionFlag.Select)


def test_label_train_metrics_run_export_import_similar(workspace, qtbot, tmp_path, monkeypatch):
    view, panel = workspace, workspace.adaptation
    texts = {r["id"]: r["text"] for r in map(json.loads, NOTES.read_text(encoding="utf-8").splitlines())}
    history_notes = {i for i, t in texts.items() if "HISTORY" in t.upper()}  # 8 of the 30
    for label, ids in (("history", history_notes), ("other", set(texts) - history_notes)):
        select_notes(view, ids)
        assert set(view.selected_note_ids()) == ids
        panel.label_edit.setCurrentText(label)
        qtbot.mouseClick(panel.tag_button, Qt.MouseButton.LeftButton)
    assert panel.controller.labels.counts() == {"history": len(history_notes), "other": 30 - len(history_notes)}
    assert "history: 8" in panel.counts.text() and "other: 22" in panel.counts.text()
    assert json.loads((tmp_path / "home" / "labels" / "notes.json").read_text())["labels"]["mts-5"] == ("history" if "mts-5" in history_notes else "other")

    panel.name.setText("history_note")
    assert not panel.progress.isVisible()  # no empty progress box before anything trains
    with qtbot.waitSignal(panel.controller.trained, timeout=300_000):
        qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
        assert panel.progress.isVisibleTo(panel)
    text = panel.metrics.text()
    assert "history_note v1" in text and "on 30 items" in text and "auc" in text and "95 % CI" in text
    assert "history: 8" in text and "other: 22" in text
    qtbot.waitUntil(lambda: panel.model.findText("history_note") >= 0, timeout=30_000)
    view.grab().save(str(tmp_path / "notes_adapt.png"))

    chosen = ["mts-5", "mts-188"]
    select_notes(view, set(chosen))
    with qtbot.waitSignal(panel.controller.predicted, timeout=120_000):
        qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    rows = {panel.results.item(r, 0).text(): r for r in range(panel.results.rowCount())}
    assert set(rows) == set(chosen)
    for note_id, row in rows.items():
        answer = panel.results.item(row, 1).text()
        assert answer.split(" ")[0] in ("history", "other") or answer.startswith("withheld")
        assert panel.results.item(row, 3).text() in ("yes", "no")

    exported = tmp_path / "history_note.healthfm-model"
    with qtbot.waitSignal(panel.controller.exported, timeout=30_000):
        panel.controller.export("history_note", str(exported))
    monkeypatch.setenv("HEALTHFM_HOME", str(tmp_path / "colleague"))
    with qtbot.waitSignal(panel.controller.imported, timeout=30_000):
        panel.controller.import_model(str(exported))
    assert panel.status.text() == "Imported history_note 1"

    select_notes(view, {"mts-5"})
    with qtbot.waitSignal(panel.controller.similar_found, timeout=120_000):
        qtbot.mouseClick(panel.similar_button, Qt.MouseButton.LeftButton)
    assert panel.neighbours.rowCount() == 10
    neighbours = [panel.neighbours.item(r, 0).text() for r in range(10)]
    assert "mts-5" not in neighbours and set(neighbours) <= set(texts)
    assert all(panel.neighbours.item(r, 2).text() in ("history", "other") for r in range(10))
    assert "searched 30 open notes" in panel.similar_caption.text()
    # clicking a neighbour opens that note in the annotator
    rect = panel.neighbours.visualItemRect(panel.neighbours.item(2, 0))
    qtbot.mouseClick(panel.neighbours.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert view.current_id == neighbours[2]
    assert view.text_view.toPlainText() == view.controller.note(neighbours[2]).text
    assert texts[neighbours[2]].split()[:20] == view.text_view.toPlainText().split()[:20]
    qtbot.wait(100)  # the scroll area's relayout for the caption's lines
    view.grab().save(str(tmp_path / "notes_similar.png"))
