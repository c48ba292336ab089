"""The main window as a user meets it: four workspaces, menus, drag and drop routed by content,
settings and geometry that survive a restart, the provider in the status bar."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QThreadPool, QUrl
from PySide6.QtGui import QDropEvent

from healthfm_desktop.app import build_main_window
from healthfm_desktop.core.config import read_setting

REPO = Path(__file__).resolve().parents[2]


def _find(pattern: str) -> Path:
    hits = sorted((REPO / "tests" / "data").rglob(pattern)) + sorted((REPO / "resources" / "samples").rglob(pattern))
    assert hits, f"no {pattern} in tests/data or resources/samples"
    return hits[0]


@pytest.fixture
def window(qtbot):
    window = build_main_window()
    qtbot.addWidget(window)
    window.show()
    yield window
    window.close()
    # a job the close could not stop at once (loading the clinical pipeline for a dropped note)
    # finishes here, not on the shared thread pool under the next test module's first jobs
    QThreadPool.globalInstance().waitForDone(60_000)


def drop(window, paths: list[Path]) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(QPointF(QPoint(200, 200)), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)


def test_four_workspaces_and_menus(window, qtbot):
    assert window.workspace_names() == ["images", "notes", "molecules", "patients"]
    menus = [action.text() for action in window.menuBar().actions()]
    assert menus == ["&File", "&View", "&Tools", "&Help"]
    qtbot.waitUntil(lambda: "CPUExecutionProvider" in window.provider_label.text(), timeout=10_000)


def test_dropping_a_dicom_file_opens_the_images_workspace(window, qtbot):
    dicom = _find("CT_small.dcm")
    window.show_workspace("patients")
    drop(window, [dicom])
    qtbot.waitUntil(lambda: window.current_workspace() == "images", timeout=20_000)
    controller = window.controllers["images"]
    qtbot.waitUntil(lambda: not controller.busy, timeout=30_000)
    # the dropped file is open and drawn, not only the workspace switched
    assert len(controller.series) == 1
    qtbot.waitUntil(lambda: window.workspace_widget("images").active_viewport().frame() is not None, timeout=20_000)
    assert window.workspace_widget("images").active_viewport().frame().shape == (128, 128)


def test_dicom_without_preamble_goes_to_images_too(window, qtbot, tmp_path):
    raw = _find("CT_small.dcm").read_bytes()
    assert raw[128:132] == b"DICM"
    # strip preamble and file meta: a bare dataset, as some old systems write
    import struct

    meta_length = struct.unpack("<I", raw[140:144])[0]
    bare = tmp_path / "IMG0001"
    bare.write_bytes(raw[144 + meta_length:])
    window.show_workspace("notes")
    drop(window, [bare])
    qtbot.waitUntil(lambda: window.current_workspace() == "images", timeout=20_000)


def test_dropping_a_note_opens_the_notes_workspace(window, qtbot, tmp_path):
    note = _find("discharge_summary.txt")
    drop(window, [note])
    qtbot.waitUntil(lambda: window.current_workspace() == "notes", timeout=20_000)
    # the note is open and annotated: its text is shown and the pipeline found entities in it
    annotator = window.workspace_widget("notes")
    qtbot.waitUntil(lambda: annotator.current_id == "discharge_summary", timeout=60_000)
    text = note.read_text(encoding="utf-8")
    qtbot.waitUntil(lambda: len(window.controllers["notes"].note("discharge_summary").entities) > 0, timeout=60_000)
    for entity in window.controllers["notes"].note("discharge_summary").entities:
        assert text[entity.start:entity.end] == entity.text


def test_dropping_an_unknown_file_gives_a_clear_message(window, qtbot, tmp_path):
    junk = tmp_path / "archive.bin"
    junk.write_bytes(bytes(range(256)) * 4)
    window.show_workspace("molecules")
    drop(window, [junk])
    qtbot.waitUntil(lambda: window.last_message is not None, timeout=10_000)
    level, text = window.last_message
    assert level == "warning"
    assert "archive.bin" in text and "not a DICOM" in text
    assert window.current_workspace() == "molecules"


def test_settings_are_shared_with_the_command_line(window):
    window.app_controller.set_setting("inference/provider", "CPUExecutionProvider")
    window.app_controller.set_setting("dicom/ae_title", "READING_ROOM_3")
    assert read_setting("inference/provider") == "CPUExecutionProvider"
    assert read_setting("dicom/ae_title") == "READING_ROOM_3"
    window.app_controller.set_setting("inference/provider", "auto")


def test_geometry_and_workspace_survive_a_restart(qtbot):
    first = build_main_window()
    qtbot.addWidget(first)
    first.show()
    # the offscreen screen is 800x800: pick a height between the window's minimum and its default
    target = first.minimumSizeHint().height() + 10
    assert target < first.height()
    first.resize(first.width(), target)
    first.show_workspace("molecules")
    first.close()
    second = build_main_window()
    qtbot.addWidget(second)
    second.show()
    assert second.current_workspace() == "molecules"
    assert second.height() == target
    second.close()


def test_help_dialogs_open(window, qtbot):
    window.licenses_requested.emit()
    dialog = window.documents_dialog
    assert dialog.isVisible()
    assert dialog.names.count() >= 1
    dialog.close()
    window.model_cards_requested.emit()
    assert window.documents_dialog.isVisible()
    window.documents_dialog.close()


def test_recent_files_menu_lists_what_was_opened(window, qtbot):
    dicom = _find("CT_small.dcm")
    drop(window, [dicom])
    qtbot.waitUntil(lambda: str(dicom) in [a.text() for a in window.recent_menu.actions()], timeout=20_000)
    # choosing it again from the menu opens it again (the series is already open: said so, not doubled)
    images = window.controllers["images"]
    qtbot.waitUntil(lambda: not images.busy and len(images.series) == 1, timeout=30_000)
    window.show_workspace("notes")
    next(a for a in window.recent_menu.actions() if a.text() == str(dicom)).trigger()
    qtbot.waitUntil(lambda: window.current_workspace() == "images", timeout=20_000)
    qtbot.waitUntil(lambda: not images.busy, timeout=30_000)
    assert len(images.series) == 1


def test_progress_bar_hides_when_every_job_is_done(window, qtbot):
    note = _find("discharge_summary.txt")
    drop(window, [note])
    qtbot.waitUntil(lambda: window.progress_bar.isVisible(), timeout=10_000)
    qtbot.waitUntil(lambda: not any(c.busy for c in window.controllers.values()), timeout=60_000)
    qtbot.waitUntil(lambda: not window.progress_bar.isVisible(), timeout=5_000)


def test_dropping_a_folder_of_molecules_opens_each_file(window, qtbot, tmp_path):
    folder = tmp_path / "compounds"
    folder.mkdir()
    shutil.copy(_find("approved_drugs.sdf"), folder)
    shutil.copy(_find("rdkit_book_chiral.mol"), folder)
    drop(window, [folder])
    qtbot.waitUntil(lambda: window.current_workspace() == "molecules", timeout=20_000)
    qtbot.waitUntil(lambda: not window.controllers["molecules"].busy, timeout=60_000)
    assert window.last_message is None or "folder" not in window.last_message[1]


def test_dropping_a_folder_of_notes_opens_them(window, qtbot, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    shutil.copy(_find("discharge_summary.txt"), folder)
    drop(window, [folder])
    qtbot.waitUntil(lambda: window.current_workspace() == "notes", timeout=20_000)
    qtbot.waitUntil(lambda: not window.controllers["notes"].busy, timeout=60_000)
    assert window.last_message is None or "folder" not in window.last_message[1]
