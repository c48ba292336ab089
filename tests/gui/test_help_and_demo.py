"""First run: the demo opens every bundled sample once with nothing reported unreadable, and
Help shows every key of every workspace and a short guide, both from views/shortcuts.py."""

from __future__ import annotations

import re

import pytest
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QTextBrowser

from healthfm_desktop.app import build_main_window
from healthfm_desktop.core.paths import demo_paths, samples_dir
from healthfm_desktop.views import shortcuts
from healthfm_desktop.views.main_window import is_dicom_file_name
from tests.gui.screenshots import SCREENSHOTS


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("HEALTHFM_HOME", str(tmp_path / "home"))
    window = build_main_window()
    qtbot.addWidget(window)
    window.resize(1280, 800)
    window.show()
    yield window
    for controller in window.controllers.values():
        controller.cancel_jobs()
    qtbot.waitUntil(lambda: not any(c.busy for c in window.controllers.values()), timeout=60_000)
    window.close()


def test_the_demo_opens_each_sample_once_and_nothing_is_unreadable(window, qtbot):
    paths = demo_paths()
    assert not [p for p in paths if p.name.lower() == "readme.md"]
    assert [p.name for p in paths if p.stem == "approved_drugs"] == ["approved_drugs.csv"]
    told: list[str] = []
    window.app_controller.message.connect(lambda _level, text: told.append(text))
    for controller in window.controllers.values():
        controller.message.connect(lambda _level, text: told.append(text))
    window.app_controller.open_paths(paths)
    controllers = window.controllers
    qtbot.waitUntil(lambda: bool(controllers["molecules"].rows and controllers["images"].series), timeout=120_000)
    qtbot.waitUntil(lambda: not any(c.busy for c in controllers.values()), timeout=180_000)
    assert controllers["images"].unreadable == []
    assert not [text for text in told if "could not be read" in text or re.search(r"\b[1-9]\d* unreadable", text)]
    names = [row.smiles for row in controllers["molecules"].rows]
    assert len(names) == 19 and len(set(names)) == 19  # the 19 drugs, once
    images_status = window.workspace_widget("images").status_label.text()
    assert "could not be read" not in images_status


def test_every_shortcut_of_every_workspace_is_in_the_table_and_in_help(window, qtbot):
    listed = {(key.workspace, key.sequence().toString()) for key in shortcuts.KEYS if not key.handled_by_widget}
    workspace_of = {"images": "Images", "notes": "Notes", "molecules": "Molecules", "patients": "Patients"}
    bound = set()
    for name, title in workspace_of.items():
        for action in window.workspace_widget(name).findChildren(QAction):
            if not action.shortcut().isEmpty():
                bound.add((title, action.shortcut().toString()))
    for action in window.findChildren(QAction):
        if not action.shortcut().isEmpty() and not any(
                action in window.workspace_widget(n).findChildren(QAction) for n in workspace_of):
            bound.add(("Everywhere", action.shortcut().toString()))
    assert bound <= listed, f"bound but not in views/shortcuts.py: {sorted(bound - listed)}"
    dialog = window.show_shortcuts()
    text = dialog.findChild(QTextBrowser, "helpText").toPlainText()
    for key in shortcuts.KEYS:
        assert key.text() in text and key.does in text
    dialog.grab().save(str(SCREENSHOTS / "help_shortcuts.png"))
    guide = window.show_user_guide().findChild(QTextBrowser, "helpText").toPlainText()
    assert "Images" in guide and "window/level" in guide and "MPR" in guide


def test_the_images_keys_work_as_listed(window, qtbot):
    images = window.workspace_widget("images")
    assert images.fit_action.shortcut() == QKeySequence(shortcuts.key_for("images.fit").keys)
    assert images.invert_action.shortcut().toString() == "N"
    assert [a.shortcut().toString() for a in images.preset_actions] == [str(n) for n in range(1, 10)]


def test_the_open_dialog_offers_dicom_first_with_names_without_an_extension(window):
    dialog = window.open_dialog()
    assert dialog.nameFilters()[0].startswith("DICOM")
    assert [is_dicom_file_name(n) for n in ("I1040.dcm", "IM000001", "DICOMDIR", "study.zip", "notes.txt", "a.png")] == \
        [True, True, True, True, False, False]
    dialog.close()


def test_the_viewer_is_dark_by_default_with_a_light_option(window, qtbot):
    images = window.workspace_widget("images")
    assert images.property("theme") == "dark"
    assert images.palette().window().color().lightness() < 60
    window.dark_viewer_action.trigger()
    assert images.property("theme") == "light"
    assert images.palette().window().color().lightness() > 150
    window.dark_viewer_action.trigger()
    assert images.property("theme") == "dark"
    assert samples_dir().is_dir()
