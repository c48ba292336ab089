"""The bundle's runtime hooks: with PySide6.QtOpenGL left out (rthook_no_qtopengl.py), pyqtgraph
still loads and draws, and the app never turns its OpenGL drawing on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_SCRIPT = r"""
import runpy, sys
runpy.run_path(sys.argv[1])
import PySide6
from PySide6.QtWidgets import QApplication
import pyqtgraph as pg
app = QApplication([])
plot = pg.PlotWidget()
plot.plot([1, 2, 3, 4], [3, 1, 4, 1])
plot.resize(240, 160)
plot.show()
app.processEvents()
image = plot.grab().toImage()
colours = {image.pixel(x, y) for x in range(0, 240, 4) for y in range(0, 160, 4)}
print("real QtOpenGL loaded:", any("QtOpenGL.abi3" in line for line in open("/proc/self/maps")))
print("colours", len(colours), "useOpenGL", pg.getConfigOption("useOpenGL"))
try:
    sys.modules["PySide6.QtOpenGL"].QOpenGLBuffer
except AttributeError as error:
    print("refused:", error)
"""


def test_pyqtgraph_draws_without_the_qtopengl_bindings():
    run = subprocess.run([sys.executable, "-c", _SCRIPT, str(REPO / "packaging" / "rthook_no_qtopengl.py")],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "real QtOpenGL loaded: False" in out
    colours = int(out.split("colours ")[1].split()[0])
    assert colours > 2, out  # a curve and axes were drawn, not a blank widget
    assert "useOpenGL False" in out
    assert "refused: PySide6.QtOpenGL.QOpenGLBuffer: OpenGL drawing is not part of the HealthFM bundle" in out


def test_the_app_never_turns_on_pyqtgraphs_opengl():
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "healthfm_desktop").rglob("*.py"))
    assert "useOpenGL" not in sources and "QtOpenGL" not in sources.replace("QtOpenGLWidgets", "")
