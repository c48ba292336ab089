"""PyInstaller runtime hook: pyqtgraph imports PySide6.QtOpenGL (8.5 MB of bindings, left out of the
bundle) when it loads, for its OpenGL drawing, which HealthFM never turns on (pyqtgraph's useOpenGL
stays False). The name is bound to a module that refuses any use instead of the bindings."""

import sys
import types


class _NotShipped(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"PySide6.QtOpenGL.{name}: OpenGL drawing is not part of the HealthFM bundle "
                             "(packaging/rthook_no_qtopengl.py)")


if "PySide6.QtOpenGL" not in sys.modules:
    sys.modules["PySide6.QtOpenGL"] = _NotShipped("PySide6.QtOpenGL", __doc__)
