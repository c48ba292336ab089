"""`healthfm self-test` is reachable from the menu's Help (where a user looks when something
seems wrong) as well as Tools: the same checks run on a worker and each shows its result."""

from __future__ import annotations

from healthfm_desktop.app import build_main_window
from tests.gui.screenshots import SCREENSHOTS


def test_self_test_runs_from_the_help_menu(qtbot):
    window = build_main_window()
    qtbot.addWidget(window)
    window.show()
    action = next(a for a in window.help_menu.actions() if a.text() == "Run &Self-test")
    assert action in window.tools_menu.actions()
    action.trigger()
    dialog = window.self_test_dialog
    assert dialog.isVisible()
    qtbot.waitUntil(lambda: dialog.tree.topLevelItem(0).text(0) != "…", timeout=240_000)
    results = [(dialog.tree.topLevelItem(i).text(0), dialog.tree.topLevelItem(i).text(1))
               for i in range(dialog.tree.topLevelItemCount())]
    assert len(results) > 5 and any("molecule" in label.lower() for _, label in results)
    assert [r for r in results if r[0] != "ok"] == []
    dialog.grab().save(str(SCREENSHOTS / "help_self_test.png"))
    window.close()
