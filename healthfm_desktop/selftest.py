"""`healthfm self-test`: the offline checks of `checks`, plus the main window built offscreen.
One line per check; exit 0 only if all pass."""

from __future__ import annotations

import os
import sys

from healthfm_desktop.checks import Check, collect_checks, run_checks


def _check_main_window() -> str:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from healthfm_desktop.app import build_application, build_main_window

    app = build_application([])
    window = build_main_window()
    window.show()
    app.processEvents()
    names = window.workspace_names()
    window.close()
    return "main window with workspaces " + ", ".join(names)


def run_self_test(args=None) -> int:
    checks: list[Check] = collect_checks() + [("main window", _check_main_window)]
    failures = 0
    for label, passed, detail, seconds in run_checks(checks):
        failures += not passed
        print(f"{'ok  ' if passed else 'FAIL'}  {label}: {detail} ({seconds:.2f} s)")
        sys.stdout.flush()
    print(f"self-test: {'all checks passed' if not failures else f'{failures} check(s) failed'}")
    return 0 if failures == 0 else 1
