"""The record annotator as a user drives it: open a real note, see pre-annotations, select
text and label it with a digit key, undo/redo, toggle an assertion with one key, accept all,
export, and find the work again after a restart; a 50-page note draws only what is visible."""

from __future__ import annotations

import json
import time

import pytest
from PySide6.QtCore import Qt

from healthfm_desktop.controllers.notes import NotesController
from healthfm_desktop.core.records.annotation import AnnotatedNote, Entity
from healthfm_desktop.views.record_annotator.workspace import NotesWorkspace


@pytest.fixture
def workspace(qtbot, tmp_path):
    controller = NotesController(project_path=tmp_path / "project.hfmnotes")
    view = NotesWorkspace(controller)
    qtbot.addWidget(view)
    view.resize(1300, 800)
    view.show()
    return view, controller


def _open_and_wait(qtbot, controller, path):
    with qtbot.waitSignal(controller.annotation_finished, timeout=180_000):
        controller.open_paths([path])


def test_select_label_undo_export_restore(qtbot, workspace, repo_root, tmp_path):
    view, controller = workspace
    note_path = repo_root / "resources" / "samples" / "notes" / "discharge_summary.txt"
    _open_and_wait(qtbot, controller, note_path)
    assert view.note_list.count() == 1 and view.current_id == "discharge_summary"
    note = controller.note("discharge_summary")
    assert any(e.status == "pre" for e in note.entities), "pre-annotations are shown for review"

    # select "edematous gallbladder" and press 1 (PROBLEM)
    start = note.text.index("edematous gallbladder")
    end = start + len("edematous gallbladder")
    view.text_view.select_range(start, end)
    qtbot.keyClick(view.text_view, Qt.Key.Key_1)
    added = [e for e in controller.note("discharge_summary").entities if (e.start, e.end) == (start, end)]
    assert added and added[0].label == "PROBLEM" and added[0].source == "annotator"
    assert view.selected_entity == added[0].id
    assert controller.status("discharge_summary") == "in_progress"

    view.undo_action.trigger()
    assert not [e for e in controller.note("discharge_summary").entities if (e.start, e.end) == (start, end)]
    view.redo_action.trigger()
    assert [e for e in controller.note("discharge_summary").entities if (e.start, e.end) == (start, end)]

    # click-select the pre-annotated negated "metastasis": its trigger is shown, N toggles negation
    metastasis = next(e for e in controller.note("discharge_summary").entities if e.text == "metastasis")
    view.select_entity(metastasis.id)
    assert "no evidence of" in view.editor.trigger_label.text()
    assert view.editor.checks["negated"].isChecked()
    qtbot.keyClick(view.text_view, Qt.Key.Key_N)
    assert not next(e for e in controller.note("discharge_summary").entities if e.text == "metastasis").negated
    assert not view.editor.checks["negated"].isChecked()

    view.accept_all_button.click()
    assert all(e.status != "pre" for e in controller.note("discharge_summary").entities)

    view.grab().save(str(tmp_path / "annotator.png"))

    out = tmp_path / "export.jsonl"
    with qtbot.waitSignal(controller.message, timeout=60_000):
        controller.export(["discharge_summary"], "jsonl", out)
    record = json.loads(out.read_text().splitlines()[0])
    labelled = [s for s in record["spans"] if (s["start"], s["end"]) == (start, end)]
    assert labelled and labelled[0]["label"] == "PROBLEM"
    assert any(s["text"] == "metastasis" and s["negated"] is False for s in record["spans"])

    # restart: a new controller on the same project file finds the work
    controller.save_now()
    again = NotesController(project_path=tmp_path / "project.hfmnotes")
    restored = again.note("discharge_summary")
    assert [e for e in restored.entities if (e.start, e.end, e.label) == (start, end, "PROBLEM")]
    assert not next(e for e in restored.entities if e.text == "metastasis").negated


def test_search_and_autosave_timer(qtbot, workspace, tmp_path):
    view, controller = workspace
    text = "Patient has pneumonia.\nNo pneumonia on follow-up chest x-ray.\n"
    controller.project.add_note("n1", text)
    note = AnnotatedNote("n1", text)
    controller.project.save(note, controller.annotator)
    controller.restore()
    view.show_note("n1")
    view.search_edit.setText("pneumonia")
    assert view.search_label.text() == "2 found"
    view.text_view.select_range(12, 21)
    qtbot.keyClick(view.text_view, Qt.Key.Key_1)
    with qtbot.waitSignal(controller.saved, timeout=5_000):
        pass
    assert controller.project.load("n1", controller.annotator).entities[0].text == "pneumonia"


def test_fifty_page_note_draws_only_the_visible_part(qtbot, workspace):
    view, _controller = workspace
    line = "Patient denies chest pain, takes aspirin 81 mg daily; troponin 0.01 ng/mL.\n"
    text = line * 3000  # ~225 kB, about 50 pages
    entities = []
    for k in range(3000):
        base = k * len(line)
        for word, label in (("chest pain", "PROBLEM"), ("aspirin", "MEDICATION"), ("81 mg", "DOSE"), ("troponin", "TEST")):
            s = base + line.index(word)
            entities.append(Entity(s, s + len(word), label, word, id=f"T{len(entities) + 1}"))
    started = time.perf_counter()
    view.text_view.set_note(text, entities)
    first = time.perf_counter() - started
    assert view.text_view.drawn_count < 1000 < len(entities)
    started = time.perf_counter()
    view.text_view.verticalScrollBar().setValue(view.text_view.verticalScrollBar().maximum() // 2)
    view.text_view._draw_visible()
    scroll = time.perf_counter() - started
    top, _bottom = view.text_view.visible_range()
    assert top > len(text) // 4
    assert view.text_view.drawn_count < 1000
    assert first < 5.0 and scroll < 1.0  # generous: CI machines are shared
