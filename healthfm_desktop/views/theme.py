"""The image viewer's colours: dark by default (radiology reading rooms), light on request;
a palette on the workspace (Fusion style), so its text scales with the font at 1x and 2x."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QWidget

_DARK = {
    QPalette.ColorRole.Window: "#202124", QPalette.ColorRole.WindowText: "#e8eaed",
    QPalette.ColorRole.Base: "#17181a", QPalette.ColorRole.AlternateBase: "#26282b",
    QPalette.ColorRole.Text: "#e8eaed", QPalette.ColorRole.Button: "#2d2f33",
    QPalette.ColorRole.ButtonText: "#e8eaed", QPalette.ColorRole.Highlight: "#3d6fd9",
    QPalette.ColorRole.HighlightedText: "#ffffff", QPalette.ColorRole.ToolTipBase: "#2d2f33",
    QPalette.ColorRole.ToolTipText: "#e8eaed", QPalette.ColorRole.PlaceholderText: "#9aa0a6",
    QPalette.ColorRole.Link: "#8ab4f8", QPalette.ColorRole.BrightText: "#ffffff",
    QPalette.ColorRole.Mid: "#3c4043", QPalette.ColorRole.Dark: "#111213", QPalette.ColorRole.Light: "#4a4d52",
}
_DISABLED_TEXT = "#80868b"


def dark_palette() -> QPalette:
    palette = QPalette()
    for role, colour in _DARK.items():
        palette.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.WindowText, QPalette.ColorRole.ButtonText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor(_DISABLED_TEXT))
    return palette


def apply_viewer_theme(widget: QWidget, dark: bool) -> None:
    """Dark or light colours for ``widget`` and its children (the Images workspace)."""
    app = QApplication.instance()
    if app is not None and app.style().name().lower() != "fusion":
        app.setStyle("Fusion")  # the platform styles ignore per-widget palettes
    widget.setPalette(dark_palette() if dark else QApplication.palette())
    widget.setAutoFillBackground(True)
    widget.setProperty("theme", "dark" if dark else "light")
