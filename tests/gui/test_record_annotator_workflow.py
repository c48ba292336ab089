"""The annotator as brat / Prodigy users expect: a MACCROBAT .txt opens with its .ann as gold
spans to review and compare, every label has a key and its name is drawn beside its spans,
selections snap to whole words, J/K/L move between spans (least confident first on request),
"why" says what the annotator changed, a confidence threshold hides unsure pre-annotations, and
undo keeps one history per note."""

import shutil

import pytest
from PySide6.QtCore import Qt

from healthfm_desktop.controllers.notes import NotesController
from healthfm_desktop.core.records.annotation import AnnotatedNote, Entity, Trigger
from healthfm_desktop.core.records.labels import LABELS
from healthfm_desktop.views.record_annotator.colours import KEY_OF_LABEL, LABEL_COLOURS, LABEL_KEYS
from healthfm_desktop.views.record_annotator.workspace import NotesWorkspace

KEYS = {"1": Qt.Key.Key_1, "2": Qt.Key.Key_2, "3": Qt.Key.Key_3, "4": Qt.Key.Key_4, "5": Qt.Key.Key_5, "6": Qt.Key.Key_6, "7": Qt.Key.Key_7,
        "8": Qt.Key.Key_8, "9": Qt.Key.Key_9, "0": Qt.Key.Key_0, "Q": Qt.Key.Key_Q, "W": Qt.Key.Key_W, "E": Qt.Key.Key_E, "R": Qt.Key.Key_R,
        "T": Qt.Key.Key_T, "Y": Qt.Key.Key_Y}


@pytest.fixture
def workspace(qtbot, tmp_path):
    controller = NotesController(project_path=tmp_path / "project.hfmnotes")
    view = NotesWorkspace(controller)
    qtbot.addWidget(view)
    view.resize(1300, 800)
    view.show()
    return view, controller


def _note(controller, note_id, text, entities):
    controller.project.add_note(note_id, text)
    note = AnnotatedNote(note_id, text, entities=entities)
    note.assign_ids()
    controller.project.save(note, controller.annotator)
    controller.restore()


def test_open_txt_with_its_ann_as_gold_to_review_and_compare(qtbot, workspace, test_data, tmp_path):
    view, controller = workspace
    for suffix in (".txt", ".ann"):
        shutil.copy(test_data / "text" / "brat" / f"15939911{suffix}", tmp_path / f"15939911{suffix}")
    with qtbot.waitSignal(controller.notes_added, timeout=60_000):
        controller.open_paths([tmp_path / "15939911.txt"])
    qtbot.waitUntil(lambda: view.current_id == "15939911", timeout=10_000)
    note = controller.note("15939911")
    gold = controller.gold("15939911")
    assert gold is not None and len(note.entities) == len(gold.entities) > 20
    assert all(e.source == "import" for e in note.entities)  # the gold spans, not a pre-annotation
    assert "exact span F1 1.000" in controller.compare_with_gold("15939911")
    first = note.entities[0]
    view.select_entity(first.id)
    qtbot.keyClick(view.text_view, Qt.Key.Key_Delete)
    assert "exact span F1 1.000" not in controller.compare_with_gold("15939911")
    # the gold version is kept apart, for agreement too
    assert "gold" in controller.annotators()
    view.grab().save(str(tmp_path / "annotator_gold.png"))


def test_every_label_has_a_key_a_distinct_colour_and_its_name_beside_the_span(qtbot, workspace):
    view, controller = workspace
    assert set(LABEL_KEYS.values()) == set(LABELS) and len(LABEL_KEYS) == len(LABELS)
    clinical = [LABEL_COLOURS[label] for label in LABELS if not label.startswith("PHI_")]
    assert len(set(clinical)) == len(clinical)
    words = [f"w{k}" for k in range(len(LABELS))]
    text = " ".join(words) + "."
    _note(controller, "keys", text, [])
    view.show_note("keys")
    for k, label in enumerate(LABELS):
        start = text.index(words[k])
        view.text_view.select_range(start, start + len(words[k]))
        qtbot.keyClick(view.text_view, KEYS[KEY_OF_LABEL[label]])
    got = {e.text: e.label for e in controller.note("keys").entities}
    assert got == {words[k]: label for k, label in enumerate(LABELS)}
    view.text_view._draw_visible()
    names = dict(view.text_view.tag_names())
    assert {controller.note("keys").entities[0].id: "PROB"}.items() <= names.items() and len(names) == len(LABELS)


def test_selection_snaps_to_whole_words(qtbot, workspace):
    view, controller = workspace
    text = "Echo was done to demonstrate a small effusion."
    _note(controller, "snap", text, [])
    view.show_note("snap")
    start = text.index("o demonstrate a") 
    view.text_view.select_range(start, start + len("o demonstrate a"))
    qtbot.keyClick(view.text_view, Qt.Key.Key_2)
    (entity,) = controller.note("snap").entities
    assert entity.text == "to demonstrate a" and entity.label == "TEST"
    view.text_view.select_range(text.index("mall eff"), text.index("mall eff") + len("mall eff"))
    qtbot.keyClick(view.text_view, Qt.Key.Key_1)
    assert "small effusion" in [e.text for e in controller.note("snap").entities]


def test_next_previous_unreviewed_threshold_and_low_confidence_first(qtbot, workspace):
    view, controller = workspace
    text = "Fever and cough with rash, then edema."
    spans = [("Fever", 0.9, "pre"), ("cough", 0.4, "pre"), ("rash", 1.0, "accepted"), ("edema", 0.7, "pre")]
    _note(controller, "nav", text, [Entity(text.index(w), text.index(w) + len(w), "PROBLEM", w, source="model", status=s, confidence=c) for w, c, s in spans])
    view.show_note("nav")
    by_text = {e.text: e.id for e in controller.note("nav").entities}
    qtbot.keyClick(view.text_view, Qt.Key.Key_J)
    assert view.selected_entity == by_text["Fever"]
    qtbot.keyClick(view.text_view, Qt.Key.Key_J)
    assert view.selected_entity == by_text["cough"]
    qtbot.keyClick(view.text_view, Qt.Key.Key_K)
    assert view.selected_entity == by_text["Fever"]
    qtbot.keyClick(view.text_view, Qt.Key.Key_L)  # next not reviewed: skips the accepted "rash"
    qtbot.keyClick(view.text_view, Qt.Key.Key_L)
    assert view.selected_entity == by_text["edema"]
    view.low_first_box.setChecked(True)
    view.select_entity(None)
    qtbot.keyClick(view.text_view, Qt.Key.Key_L)
    assert view.selected_entity == by_text["cough"]  # the least confident first
    view.threshold_box.setValue(0.5)  # "cough" (0.40) is hidden and skipped
    assert by_text["cough"] not in [e.id for e in view.text_view._entities]
    view.select_entity(None)
    qtbot.keyClick(view.text_view, Qt.Key.Key_L)
    assert view.selected_entity == by_text["edema"]
    view.accept_all_button.click()  # accepts what is shown, leaves the hidden one for later
    statuses = {e.text: e.status for e in controller.note("nav").entities}
    assert statuses == {"Fever": "accepted", "cough": "pre", "rash": "accepted", "edema": "accepted"}


def test_why_reflects_a_manual_change(qtbot, workspace):
    view, controller = workspace
    text = "No evidence of pneumonia."
    pneumonia = Entity(15, 24, "PROBLEM", "pneumonia", negated=True, source="vocabulary", triggers=[Trigger("negated", 0, 14, "No evidence of", 14, 25, "NEGATED_EXISTENCE")])
    _note(controller, "why", text, [pneumonia])
    view.show_note("why")
    entity_id = controller.note("why").entities[0].id
    view.select_entity(entity_id)
    assert "No evidence of" in view.editor.trigger_label.text()
    qtbot.keyClick(view.text_view, Qt.Key.Key_N)
    assert "cleared by the annotator" in view.editor.trigger_label.text() and "No evidence of" not in view.editor.trigger_label.text()
    qtbot.keyClick(view.text_view, Qt.Key.Key_H)
    assert "historical: set by the annotator" in view.editor.trigger_label.text()


def test_undo_history_is_kept_per_note(qtbot, workspace):
    view, controller = workspace
    _note(controller, "a", "Cough today.", [])
    _note(controller, "b", "Rash today.", [])
    view.show_note("a")
    view.text_view.select_range(0, 5)
    qtbot.keyClick(view.text_view, Qt.Key.Key_1)
    assert view.undo_action.isEnabled() and "label PROBLEM" in view.undo_action.text()
    view.show_note("b")
    assert not view.undo_action.isEnabled()  # note a's edit is not undone from note b
    view.undo_action.trigger()
    assert [e.text for e in controller.note("a").entities] == ["Cough"]
    view.text_view.select_range(0, 4)
    qtbot.keyClick(view.text_view, Qt.Key.Key_2)
    view.show_note("a")
    view.undo_action.trigger()
    assert controller.note("a").entities == [] and [e.text for e in controller.note("b").entities] == ["Rash"]
    view.redo_action.trigger()
    assert [e.text for e in controller.note("a").entities] == ["Cough"]
