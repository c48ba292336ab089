"""Logs carry no patient data: running the clinical pipeline prints none of the note's text."""

from __future__ import annotations

import subprocess
import sys

NOTE = "Mrs Zebulon Quasimodo denies chest pain."

CODE = f"""
import logging, healthfm_desktop
logging.basicConfig(level=logging.DEBUG)
from healthfm_desktop.checks import _check_spacy_registry
import medspacy
nlp = medspacy.load()
nlp({NOTE!r})
"""


def test_clinical_pipeline_logs_no_note_text():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Zebulon" not in out.stderr + out.stdout
    assert "Quasimodo" not in out.stderr + out.stdout
