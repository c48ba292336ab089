"""The one table of keyboard shortcuts: the workspaces bind their keys from it, and Help ›
Keyboard shortcuts and Help › User guide are generated from it.

To add a key to a workspace: add a ``Key`` row to ``KEYS`` (or to the notes' tables the rows
below are built from) and bind it with ``shortcut("workspace.name")``; keys a widget handles
itself (wheel, arrows) get a row with ``handled_by_widget=True``. tests/gui/test_help.py fails
for a QAction shortcut that is not in this table."""

from __future__ import annotations

import html
from dataclasses import dataclass

from PySide6.QtGui import QKeySequence

from healthfm_desktop.views.record_annotator.colours import ASSERTION_KEYS, LABEL_KEYS, NAVIGATION_KEYS

#: workspaces in the order Help lists them ("Everywhere" first)
WORKSPACES = ("Everywhere", "Images", "Notes", "Molecules", "Patients")


@dataclass(frozen=True)
class Key:
    """One binding: which workspace, the keys (QKeySequence text, or words for mouse and
    widget keys), what it does, and the name the code binds it by."""

    workspace: str
    #: QKeySequence text ("Ctrl+R"), words for mouse and widget keys, or a StandardKey
    keys: str | QKeySequence.StandardKey
    does: str
    name: str = ""
    #: a key the widget reads itself (keyPressEvent / wheel), not a QAction shortcut
    handled_by_widget: bool = False

    def sequence(self) -> QKeySequence:
        """The binding (the platform's own keys for a StandardKey: needs a QGuiApplication)."""
        return QKeySequence(self.keys)

    def text(self) -> str:
        """The keys as Help shows them."""
        if isinstance(self.keys, QKeySequence.StandardKey):
            bindings = QKeySequence.keyBindings(self.keys)  # the platform's first is its usual one
            return bindings[0].toString() if bindings else str(self.keys.name)
        return self.keys


KEYS: tuple[Key, ...] = (
    Key("Everywhere", QKeySequence.StandardKey.Open, "Open files", "app.open"),
    Key("Everywhere", QKeySequence.StandardKey.Quit, "Quit", "app.quit"),
    Key("Everywhere", "F1", "Keyboard shortcuts (this list)", "app.shortcuts"),
    # Images: tools (left-drag)
    Key("Images", "P", "Pan tool", "images.pan"),
    Key("Images", "Z", "Zoom tool", "images.zoom"),
    Key("Images", "W", "Window/level tool", "images.window"),
    Key("Images", "D", "Distance measurement", "images.distance"),
    Key("Images", "A", "Angle measurement", "images.angle"),
    Key("Images", "R", "Rectangle ROI", "images.rectangle"),
    Key("Images", "E", "Ellipse ROI", "images.ellipse"),
    # Images: view
    *(Key("Images", str(n), f"Window/level preset {n} (as listed in the presets box)", f"images.preset{n}")
      for n in range(1, 10)),
    Key("Images", "F", "Fit the image to the viewport", "images.fit"),
    Key("Images", "Ctrl+1", "Actual size (one image pixel per screen pixel)", "images.actual_size"),
    Key("Images", "H", "Flip horizontally", "images.flip_h"),
    Key("Images", "V", "Flip vertically", "images.flip_v"),
    Key("Images", "Ctrl+R", "Rotate 90° clockwise", "images.rotate"),
    Key("Images", "N", "Invert the grey scale", "images.invert"),
    Key("Images", "0", "Reset the view and the series' window/level", "images.reset"),
    Key("Images", "I", "Show or hide overlays (text, measurements, AI results)", "images.overlays"),
    Key("Images", "M", "MPR (axial, coronal, sagittal) on or off", "images.mpr"),
    Key("Images", "Space", "Play or stop cine", "images.cine"),
    Key("Images", "Up / Down, wheel", "Previous / next slice", handled_by_widget=True),
    Key("Images", "Page Up / Page Down", "10 slices back / forward", handled_by_widget=True),
    Key("Images", "Home / End", "First / last slice", handled_by_widget=True),
    Key("Images", "Right-drag", "Window/level (whatever the tool)", handled_by_widget=True),
    Key("Images", "Middle-drag", "Pan", handled_by_widget=True),
    Key("Images", "Ctrl+wheel", "Zoom at the cursor", handled_by_widget=True),
    Key("Images", "Esc", "Drop the measurement being drawn", handled_by_widget=True),
    Key("Images", QKeySequence.StandardKey.Delete, "Delete the selected measurements",
        "images.delete_measurement"),
    # Notes: the annotator's own key tables (views/record_annotator/colours.py)
    Key("Notes", QKeySequence.StandardKey.Undo, "Undo", "notes.undo"),
    Key("Notes", QKeySequence.StandardKey.Redo, "Redo", "notes.redo"),
    *(Key("Notes", key, f"Label the selection (or the selected span) {label}", handled_by_widget=True)
      for key, label in LABEL_KEYS.items()),
    *(Key("Notes", key, {"next": "Next span", "previous": "Previous span", "next_unreviewed": "Next span not reviewed yet"}[move],
          handled_by_widget=True)
      for key, move in NAVIGATION_KEYS.items()),
    *(Key("Notes", letter, f"Toggle {attribute} on the selected span", handled_by_widget=True)
      for letter, attribute in ASSERTION_KEYS.items()),
    Key("Notes", "A", "Accept the selected suggested span", handled_by_widget=True),
    Key("Notes", "Delete / Backspace", "Remove the selected span", handled_by_widget=True),
)

#: what each workspace is for, in two or three sentences (the user guide's prose)
GUIDE = {
    "Everywhere": "Drop files, folders, zip archives or a DICOMDIR on the window, or use File › Open: "
                  "each file goes to the workspace that reads it. Nothing leaves this computer unless "
                  "you configure a PACS. Every model result is decision support for a qualified person.",
    "Images": "DICOM studies open in the series browser (left); click a series to show it. Left-drag "
              "uses the chosen tool, right-drag sets window/level, the wheel scrolls slices. Each "
              "series keeps its slice, window/level, zoom and inversion when you come back or open "
              "MPR. Measurements are saved with the study; Export writes a PNG of the view or a "
              "de-identified copy of the series. Files that could not be read are listed, with why.",
    "Notes": "Open UTF-8 text notes: the clinical pipeline marks problems, tests, medications and more, "
             "with negated, uncertain, historical and family context. Select text and press a number "
             "to label it; select a span and press a letter to toggle its context.",
    "Molecules": "Open SMILES, SDF, MOL or CSV files: each molecule gets its properties, rule filters, "
                 "structural alerts and the shipped models' predictions with their applicability "
                 "domain. Search by similarity or substructure, or generate analogues.",
    "Patients": "Open a long CSV of labs and vitals (patient_id, time, variable, value): the timeline "
                "shows each variable over time and the ICU mortality model scores the first 48 hours.",
}


def key_for(name: str) -> Key:
    """The row of ``name`` (e.g. "images.fit")."""
    for key in KEYS:
        if key.name == name:
            return key
    raise KeyError(name)


def shortcut(name: str) -> QKeySequence:
    """What a QAction named ``name`` is bound to."""
    return key_for(name).sequence()


def rows(workspace: str) -> list[Key]:
    return [key for key in KEYS if key.workspace == workspace]


def shortcuts_html() -> str:
    """Help › Keyboard shortcuts: every key of every workspace, one table per workspace."""
    parts = []
    for workspace in WORKSPACES:
        listed = rows(workspace)
        if not listed:
            continue
        parts.append(f"<h3>{html.escape(workspace)}</h3><table cellpadding='3'>")
        parts += [f"<tr><td><b>{html.escape(key.text())}</b></td><td>{html.escape(key.does)}</td></tr>" for key in listed]
        parts.append("</table>")
    return "".join(parts)


def user_guide_html() -> str:
    """Help › User guide: what each workspace is for, then its keys (the same table)."""
    parts = ["<h2>HealthFM Desktop: a short guide</h2>"]
    for workspace in WORKSPACES:
        parts.append(f"<h3>{html.escape(workspace)}</h3><p>{html.escape(GUIDE[workspace])}</p>")
        listed = rows(workspace)
        if listed:
            parts.append("<p>" + "; ".join(f"<b>{html.escape(k.text())}</b> {html.escape(k.does.lower())}"
                                           for k in listed) + ".</p>")
    return "".join(parts)
