"""Launching the GUI prints no library warnings on the console: they go to the log file, and
a DICOM library's warning text (which can quote header values) is withheld."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CODE = """
import sys, warnings
from pathlib import Path
from healthfm_desktop.app import configure_gui_logging
log = configure_gui_logging(Path(sys.argv[1]))
warnings.warn_explicit("Invalid value for VR PN: 'ZEBULON^QUASIMODO'", UserWarning,
                       "/venv/lib/site-packages/pydicom/valuerep.py", 1)
warnings.warn_explicit("[W095] Model 'medspacy' was trained with another spaCy", UserWarning,
                       "/venv/lib/site-packages/medspacy/util.py", 7)
from PySide6.QtCore import qWarning
qWarning("This plugin does not support propagateSizeHints()")
print(log)
"""


def test_warnings_at_launch_go_to_the_log_file_not_the_console(tmp_path):
    out = subprocess.run([sys.executable, "-c", CODE, str(tmp_path)], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stderr == ""
    log = Path(out.stdout.strip()).read_text(encoding="utf-8")
    assert "UserWarning from pydicom (text withheld" in log and "ZEBULON" not in log
    assert "[W095] Model 'medspacy'" in log
    assert "propagateSizeHints" in log
