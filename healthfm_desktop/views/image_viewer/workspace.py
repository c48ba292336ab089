"""The Images workspace: series browser, a 1x1 / 1x2 / 2x2 grid of viewports (or the MPR view),
the toolbar (tools, W/L presets, view operations, cine, export) and the side panels
(measurements, tags, files that could not be read, and panels other features add).

It draws and forwards intents to the ImagesController it is given; it never reads files.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QImage, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from healthfm_desktop.views.image_viewer.export_dialog import DeidExportDialog
from healthfm_desktop.views.image_viewer.measurement_list import MeasurementList
from healthfm_desktop.views.image_viewer.mpr_view import MprView
from healthfm_desktop.views.image_viewer.series_browser import SeriesBrowser
from healthfm_desktop.views.image_viewer.tag_browser import TagBrowser
from healthfm_desktop.views.image_viewer.unreadable_panel import UnreadableFilesPanel
from healthfm_desktop.views.image_viewer.viewport import DrawnMeasurement, FrameInfo, ImageViewport
from healthfm_desktop.views.shortcuts import shortcut

#: layout name -> (rows, columns)
LAYOUTS = {"1x1": (1, 1), "1x2": (1, 2), "2x2": (2, 2)}
_TOOL_LABELS = [("pan", "Pan"), ("zoom", "Zoom"), ("window", "W/L"), ("distance", "Distance"),
                ("angle", "Angle"), ("rectangle", "Rectangle ROI"), ("ellipse", "Ellipse ROI")]
_MEASURE_TOOLS = ("distance", "angle", "rectangle", "ellipse")
#: AI overlays kept for images the user scrolled away from (restored when they come back)
_KEPT_OVERLAY_IMAGES = 32


@dataclass
class ViewportSlot:
    """A viewport of the grid and what it shows."""

    viewport: ImageViewport
    series_key: str | None = None
    index: int = 0
    #: (series key, index) whose pixels the viewport shows now
    shown: tuple[str, int] | None = None


def frame_info_from(description: dict) -> FrameInfo:
    """The controller describes a frame with plain values; the viewport wants a FrameInfo."""
    spacing = description.get("pixel_spacing")
    window = description.get("window")
    return FrameInfo(
        pixel_spacing=tuple(spacing) if spacing else None,
        invert=bool(description.get("invert")),
        units=description.get("units") or "",
        default_window=tuple(window) if window else None,
        voi_lut=description.get("voi_lut"),
        value_scale=float(description.get("value_scale", 1.0)),
        value_offset=float(description.get("value_offset", 0.0)),
        corners={key: list(description.get(key) or []) for key in ("top_left", "top_right", "bottom_left")},
        edges=description.get("edges"),
    )


class ImagesWorkspace(QWidget):
    side_panel_added = Signal(str)

    def __init__(self, controller, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("imagesWorkspace")
        self.controller = controller
        self.slots: list[ViewportSlot] = []
        self._active = 0
        self._layout_name = "1x1"
        self._kept_overlays: OrderedDict[tuple[str, int], tuple[dict, dict]] = OrderedDict()
        self._mpr_key: str | None = None
        #: the open burned-in annotation question of a de-identified export, if any
        self.burned_in_question: QMessageBox | None = None

        self.series_browser = SeriesBrowser()
        self.measurement_list = MeasurementList()
        self.tag_browser = TagBrowser()
        self.unreadable_panel = UnreadableFilesPanel()
        self.mpr_view = MprView(controller.render_window)
        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(2)
        self.center = QStackedWidget()
        self.center.addWidget(self.grid_host)
        self.center.addWidget(self.mpr_view)
        self.side_tabs = QTabWidget()
        self.side_tabs.setObjectName("imagesSidePanels")
        # Every panel stays one click away at 1280 px: short tab labels (the full title is the
        # tooltip) and no scroll arrows, which hid the later tabs; should the tabs still not fit
        # (a narrow panel, more panels), Qt shortens the labels instead of hiding tabs.
        self.side_tabs.setUsesScrollButtons(False)
        self.side_tabs.setElideMode(Qt.TextElideMode.ElideRight)
        self.add_side_panel("Measurements", self.measurement_list, label="Measure")
        self.add_side_panel("Tags", self.tag_browser)
        self.add_side_panel("Unreadable files", self.unreadable_panel, label="Unreadable")
        from healthfm_desktop.views.adaptation_panel import AdaptationPanel, scrolling

        self.adaptation = AdaptationPanel(controller.adaptation, self.selected_series_keys, open_item=self.open_similar)
        self.add_side_panel("Adapt", scrolling(self.adaptation))
        self.side_tabs.setMinimumWidth(320)

        self.toolbar = QToolBar("Image tools")
        self.toolbar.setObjectName("imageToolbar")
        self._build_toolbar()

        self.status_label = QLabel("Drop DICOM files, folders, zip archives, a DICOMDIR or PNG / JPEG images on the window, or use File > Open.")
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumWidth(260)
        self.progress_bar.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.cancel_button.clicked.connect(self.controller.cancel_jobs)
        status_row = QHBoxLayout()
        status_row.addWidget(self.status_label, 1)
        status_row.addWidget(self.progress_bar)
        status_row.addWidget(self.cancel_button)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.series_browser)
        splitter.addWidget(self.center)
        splitter.addWidget(self.side_tabs)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setStretchFactor(2, 0)
        splitter.setSizes([240, 740, 420])  # 420: the side tabs' labels whole at 1280 px
        self.splitter = splitter

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.toolbar)
        layout.addWidget(splitter, 1)
        layout.addLayout(status_row)

        self.cine_timer = QTimer(self)
        self.cine_timer.timeout.connect(self._cine_tick)
        self._tags_timer = QTimer(self, singleShot=True, interval=120)
        self._tags_timer.timeout.connect(self._request_tags)

        self.set_layout("1x1")
        self._connect_controller()
        self.series_browser.series_activated.connect(self.show_series)
        self.mpr_view.window_changed.connect(self._on_mpr_window)
        self.measurement_list.label_edited.connect(self.controller.rename_measurement)
        self.measurement_list.delete_requested.connect(self.controller.delete_measurements)
        self.measurement_list.measurement_chosen.connect(self._go_to_measurement)
        self.side_tabs.currentChanged.connect(lambda _i: self._schedule_tags())
        self.unreadable_panel.clear_requested.connect(self.controller.clear_unreadable)

    # ------------------------------------------------------------ construction
    def open_similar(self, record: dict) -> None:
        """Show a find-similar neighbour the user clicked: an open series, or a stored or PACS
        one opened (retrieved) first."""
        if record.get("source"):
            self.controller.adaptation.open_similar(record)
            return
        self.series_browser.select(record["id"])
        self.show_series(record["id"])

    def selected_series_keys(self) -> list[str]:
        keys = [item.data(Qt.ItemDataRole.UserRole) for item in self.series_browser.selectedItems()]
        keys = [k for k in keys if k]
        current = self.series_browser.current_key()
        return keys or ([current] if current else [])

    def _build_toolbar(self) -> None:
        """Grouped so that the main tools stay visible at 1280 px: left-drag tools (the four
        measurements behind one button), presets, a View menu, layout, MPR / Overlays /
        Export, then cine, which is the first to go into the toolbar's overflow."""
        bar = self.toolbar
        self.tool_actions: dict[str, QAction] = {}
        self._shortcut_actions: list[QAction] = []
        group = QActionGroup(self)
        for tool, label in _TOOL_LABELS:
            action = QAction(label, self, checkable=True)
            action.setShortcut(shortcut(f"images.{tool}"))
            action.setToolTip(f"Left-drag: {label} ({action.shortcut().toString()}). Right-drag is always "
                              "window/level, middle-drag pans, wheel or arrow keys scroll slices, Ctrl+wheel zooms.")
            action.triggered.connect(lambda checked=False, t=tool: self.set_tool(t))
            group.addAction(action)
            self.tool_actions[tool] = action
            self._shortcut_actions.append(action)
            if tool not in _MEASURE_TOOLS:
                bar.addAction(action)
        self.measure_button = QToolButton()
        self.measure_button.setObjectName("measureTools")
        self.measure_button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        measure_menu = QMenu(self.measure_button)
        for tool in _MEASURE_TOOLS:
            measure_menu.addAction(self.tool_actions[tool])
            self.tool_actions[tool].triggered.connect(
                lambda checked=False, t=tool: self.measure_button.setDefaultAction(self.tool_actions[t]))
        self.measure_button.setMenu(measure_menu)
        self.measure_button.setDefaultAction(self.tool_actions["distance"])
        bar.addWidget(self.measure_button)
        self.tool_actions["pan"].setChecked(True)
        bar.addSeparator()

        self.preset_combo = QComboBox()
        self.preset_combo.setObjectName("windowPresets")
        self.preset_combo.setToolTip("Window/level presets for the modality (keys 1-9)")
        self.preset_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.preset_combo.setMinimumContentsLength(12)
        self.preset_combo.activated.connect(self._apply_preset)
        bar.addWidget(self.preset_combo)
        self.preset_actions = []
        for number in range(1, 10):
            action = QAction(f"Preset {number}", self)
            action.setShortcut(shortcut(f"images.preset{number}"))
            action.triggered.connect(lambda checked=False, n=number: self.apply_preset_number(n))
            self.preset_actions.append(action)
            self._shortcut_actions.append(action)

        view_menu = QMenu(self)
        self.view_menu = view_menu

        def view_action(text: str, name: str, slot, checkable: bool = False) -> QAction:
            action = QAction(text, self, checkable=checkable)
            action.setShortcut(shortcut(name))
            (action.toggled if checkable else action.triggered).connect(slot)
            view_menu.addAction(action)
            self._shortcut_actions.append(action)
            return action

        self.fit_action = view_action("Fit", "images.fit", lambda: self.active_viewport().fit())
        self.actual_size_action = view_action("Actual size (1:1)", "images.actual_size", lambda: self.active_viewport().actual_size())
        self.flip_h_action = view_action("Flip horizontally", "images.flip_h", lambda: self.active_viewport().flip_horizontal())
        self.flip_v_action = view_action("Flip vertically", "images.flip_v", lambda: self.active_viewport().flip_vertical())
        self.rotate_action = view_action("Rotate 90°", "images.rotate", lambda: self.active_viewport().rotate(90))
        self.reset_action = view_action("Reset view and W/L", "images.reset", self._reset_view)
        view_button = QToolButton()
        view_button.setText("View")
        view_button.setObjectName("viewMenuButton")
        view_button.setToolTip("Fit, 1:1, flip, rotate, reset")
        view_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        view_button.setMenu(view_menu)
        bar.addWidget(view_button)
        self.invert_action = QAction("Invert", self, checkable=True)
        self.invert_action.setShortcut(shortcut("images.invert"))
        self.invert_action.setToolTip(f"Invert the grey scale ({self.invert_action.shortcut().toString()})")
        self.invert_action.toggled.connect(self.set_inverted)
        bar.addAction(self.invert_action)
        self._shortcut_actions.append(self.invert_action)
        bar.addSeparator()

        self.layout_combo = QComboBox()
        self.layout_combo.setObjectName("layoutCombo")
        self.layout_combo.addItems(list(LAYOUTS))
        self.layout_combo.setToolTip("Hanging layout")
        self.layout_combo.currentTextChanged.connect(self.set_layout)
        bar.addWidget(self.layout_combo)
        self.sync_check = QCheckBox("Sync")
        self.sync_check.setToolTip("Scroll series of the same frame of reference together")
        self.sync_check.setChecked(True)
        self.sync_check.toggled.connect(lambda _on: self.update_sync_badges())
        bar.addWidget(self.sync_check)
        bar.addSeparator()

        self.mpr_action = QAction("MPR", self, checkable=True)
        self.mpr_action.setShortcut(shortcut("images.mpr"))
        self.mpr_action.setToolTip("Axial, coronal and sagittal reformats of the active series, with MIP/MinIP slabs")
        self.mpr_action.toggled.connect(self.set_mpr_mode)
        bar.addAction(self.mpr_action)
        self.overlay_action = QAction("Overlays", self, checkable=True, checked=True)
        self.overlay_action.setShortcut(shortcut("images.overlays"))
        self.overlay_action.setToolTip("Show or hide annotations, measurements and overlays")
        self.overlay_action.toggled.connect(self.set_overlays_visible)
        bar.addAction(self.overlay_action)
        self._shortcut_actions += [self.mpr_action, self.overlay_action]

        export_button = QToolButton()
        export_button.setText("Export")
        export_button.setObjectName("exportButton")
        export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(export_button)
        menu.addAction("View as PNG (with overlays)…", lambda: self._ask_export_png(True))
        menu.addAction("View as PNG (image only)…", lambda: self._ask_export_png(False))
        menu.addAction("Series as de-identified DICOM…", self._ask_export_dicom)
        export_button.setMenu(menu)
        self.export_menu = menu
        bar.addWidget(export_button)
        bar.addSeparator()

        self.cine_action = QAction("Play", self, checkable=True)
        self.cine_action.setToolTip("Cine playback of the active viewport (Space)")
        self.cine_action.toggled.connect(self.set_cine)
        bar.addAction(self.cine_action)
        self.fps_spin = QSpinBox()
        self.fps_spin.setRange(1, 60)
        self.fps_spin.setValue(10)
        self.fps_spin.setSuffix(" fps")
        self.fps_spin.valueChanged.connect(lambda fps: self.cine_timer.setInterval(int(1000 / fps)))
        bar.addWidget(self.fps_spin)
        self.cine_action.setShortcut(shortcut("images.cine"))
        self._shortcut_actions.append(self.cine_action)
        # shortcuts act only while this workspace (or a child) has the focus, so the other
        # workspaces keep their own letters
        for action in self._shortcut_actions:
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            self.addAction(action)

    def _connect_controller(self) -> None:
        c = self.controller
        c.series_changed.connect(self._on_series_changed)
        c.frame_ready.connect(self._on_frame_ready)
        c.frame_failed.connect(lambda key, index, _reason: self._on_frame_ready(key, index))
        c.thumbnail_ready.connect(self.series_browser.set_thumbnail)
        c.unreadable_changed.connect(self._on_unreadable)
        c.notes_changed.connect(self.unreadable_panel.set_notes)
        c.measurements_changed.connect(self._refresh_measurements)
        c.mpr_ready.connect(self._on_mpr_ready)
        c.mpr_failed.connect(self.mpr_view.show_problem)
        c.tags_ready.connect(self.tag_browser.set_elements)
        c.progress.connect(self._on_progress)
        c.busy_changed.connect(self._on_busy)
        c.status.connect(self.status_label.setText)
        c.show_requested.connect(self.show_series)
        c.preview_ready.connect(self._on_preview)

    # ------------------------------------------------------------ hooks for others
    def add_side_panel(self, title: str, widget: QWidget, label: str | None = None) -> None:
        """Add a tab to the side panels (e.g. the AI analysis panel, the PACS browser); ``label``
        is a short tab text where ``title`` is long (the title is then the tab's tooltip).

        Such a panel follows ``controller.current_image_changed`` (and ``current_series()`` /
        ``current_index()`` / ``current_frame()``) and draws on ``active_viewport()`` with
        ``set_overlay`` / ``add_shape_overlay``; a viewport drops those overlays when it moves
        to another image, so a result is never shown on an image it was not computed for."""
        index = self.side_tabs.addTab(widget, label or title)
        self.side_tabs.tabBar().setTabData(index, title)
        self.side_tabs.setTabToolTip(index, title)
        self.side_panel_added.emit(title)

    def side_panel_titles(self) -> list[str]:
        return [self.side_tabs.tabBar().tabData(i) for i in range(self.side_tabs.count())]

    def show_side_panel(self, title: str) -> None:
        titles = self.side_panel_titles()
        if title in titles:
            self.side_tabs.setCurrentIndex(titles.index(title))

    def active_viewport(self) -> ImageViewport:
        return self.slots[self._active].viewport

    def active_slot(self) -> ViewportSlot:
        return self.slots[self._active]

    def viewports(self) -> list[ImageViewport]:
        return [slot.viewport for slot in self.slots]

    # ------------------------------------------------------------------ layout
    def set_layout(self, name: str) -> None:
        rows, columns = LAYOUTS[name]
        self._layout_name = name
        if self.layout_combo.currentText() != name:
            self.layout_combo.setCurrentText(name)
        wanted = rows * columns
        while len(self.slots) < wanted:
            self._add_slot()
        for i, slot in enumerate(self.slots):
            self.grid.removeWidget(slot.viewport)
            slot.viewport.setVisible(i < wanted)
            if i < wanted:
                self.grid.addWidget(slot.viewport, i // columns, i % columns)
        if self._active >= wanted:
            self._activate(0)
        # fill empty viewports with the next series not shown yet
        keys = [entry["key"] for entry in self.controller.series_entries()]
        shown = {slot.series_key for slot in self.slots[:wanted] if slot.series_key}
        for slot in self.slots[:wanted]:
            if slot.series_key is None:
                free = [k for k in keys if k not in shown]
                if free:
                    shown.add(free[0])
                    self._assign(slot, free[0], 0)
        self._mark_active()

    def layout_name(self) -> str:
        return self._layout_name

    def _add_slot(self) -> None:
        viewport = ImageViewport(self.controller.render_window)
        slot = ViewportSlot(viewport)
        self.slots.append(slot)
        index = len(self.slots) - 1
        viewport.set_tool(self._current_tool())
        viewport.set_overlays_visible(self.overlay_action.isChecked())
        viewport.activated.connect(lambda i=index: self._activate(i))
        viewport.slice_step_requested.connect(lambda step, s=slot: self.scroll(s, step))
        viewport.slice_jump_requested.connect(lambda where, s=slot: self._jump(s, where))
        viewport.measurement_drawn.connect(lambda kind, points, s=slot: self._on_measurement_drawn(s, kind, points))
        viewport.measurement_edited.connect(self.controller.move_measurement)
        viewport.measurement_selected.connect(self.measurement_list.select_id)
        viewport.window_changed.connect(lambda c, w, s=slot: self._on_window_changed(s, c, w))
        viewport.details_requested.connect(self._show_details)

    def _activate(self, index: int) -> None:
        if index == self._active:
            return
        self._active = index
        self._mark_active()
        slot = self.active_slot()
        self._fill_presets()
        if slot.series_key is not None:
            self.controller.set_current(slot.series_key, slot.index)
            self.series_browser.select(slot.series_key)
            self._schedule_tags()

    def _mark_active(self) -> None:
        multiple = LAYOUTS[self._layout_name] != (1, 1)
        for i, slot in enumerate(self.slots):
            slot.viewport.set_active(multiple and i == self._active)
        self.update_sync_badges()

    # ----------------------------------------------------------------- series
    def show_series(self, key: str, index: int | None = None) -> None:
        """Show series ``key`` in the active viewport (or the MPR view when it is open), at
        ``index`` or, without one, where the user left it."""
        slot = self.active_slot()
        if index is None:
            index = self.controller.display_state(key).index if slot.series_key != key else slot.index
        self._assign(slot, key, index)
        rate = self.controller.frame_rate(key)
        if rate:  # cine plays at the rate the file was acquired at (US loops)
            self.fps_spin.setValue(max(1, min(60, round(rate))))
        self.controller.set_current(key, slot.index)
        self.series_browser.select(key)
        self._fill_presets()
        self._schedule_tags()
        if self.mpr_action.isChecked():
            self.controller.request_mpr(key)

    def _assign(self, slot: ViewportSlot, key: str, index: int) -> None:
        new_series = slot.series_key != key
        if new_series:
            self._remember(slot)
        count = self.controller.frame_count(key)
        self._retarget(slot, key, min(max(index, 0), max(count - 1, 0)))
        self._show(slot, reset=new_series)
        if new_series:
            self.update_sync_badges()

    def _remember(self, slot: ViewportSlot) -> None:
        """Keep how the user left the slot's series (slice, zoom/pan, inversion) in the session;
        the window is kept as it changes."""
        if slot.series_key is not None and slot.shown == (slot.series_key, slot.index):
            self.controller.remember_display(slot.series_key, index=slot.index, inverted=slot.viewport.inverted(),
                                             view=slot.viewport.view_state())

    def _retarget(self, slot: ViewportSlot, key: str | None, index: int) -> None:
        """Point a viewport at another image. Overlays (AI heatmaps, contours) belong to the
        image they were computed for: they go as soon as the viewport moves, before the new
        pixels arrive, so one set for the new image while it decodes is kept; they come back
        when the viewport returns to that image."""
        if (slot.series_key, slot.index) != (key, index):
            state = slot.viewport.overlay_state()
            if slot.series_key is not None and (state[0] or state[1]):
                self._kept_overlays[(slot.series_key, slot.index)] = state
                while len(self._kept_overlays) > _KEPT_OVERLAY_IMAGES:
                    self._kept_overlays.popitem(last=False)
            slot.viewport.clear_overlays()
            kept = self._kept_overlays.pop((key, index), None) if key is not None else None
            if kept is not None:
                slot.viewport.restore_overlay_state(kept)
        slot.series_key, slot.index = key, index

    def _show(self, slot: ViewportSlot, reset: bool = False) -> None:
        if slot.series_key is None:
            return
        shown = self.controller.display_frame(slot.series_key, slot.index)
        if shown is None:
            failure = self.controller.frame_failure(slot.series_key, slot.index)
            if failure:
                slot.viewport.set_problem(self.controller.failure_sentence(slot.series_key, slot.index), failure)
                slot.shown = None
                return
            slot.viewport.set_message("Loading…")
            self.controller.request_frame(slot.series_key, slot.index)
            return
        frame = shown[0]
        info = frame_info_from(self.controller.frame_info(slot.series_key, slot.index))
        slot.shown = (slot.series_key, slot.index)
        keep_window = slot.viewport.frame() is not None and not reset
        window = slot.viewport.window()
        slot.viewport.set_frame(frame, info, keep_view=not reset)
        slot.viewport.set_badge("notice", self.controller.image_notice(slot.series_key), good=False)
        if keep_window:
            slot.viewport.set_window(*window)
        elif reset:
            self._restore_display(slot)
        slot.viewport.set_measurements(self._drawn_measurements(slot))

    def _restore_display(self, slot: ViewportSlot) -> None:
        """The series' window, inversion and zoom/pan as the user left them."""
        state = self.controller.display_state(slot.series_key)
        if state.window is not None:
            slot.viewport.set_window(*state.window)
        if state.view is not None:
            slot.viewport.set_view_state(state.view)
        slot.viewport.set_inverted(state.inverted)
        if slot is self.active_slot() and self.invert_action.isChecked() != state.inverted:
            self.invert_action.blockSignals(True)
            self.invert_action.setChecked(state.inverted)
            self.invert_action.blockSignals(False)

    def _show_details(self, details: str) -> None:
        box = QMessageBox(QMessageBox.Icon.Information, "Why this image cannot be shown",
                          "The technical detail, for whoever looks after the files:", parent=self)
        box.setDetailedText(details)
        box.setInformativeText(details.splitlines()[0] if details else "")
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.details_box = box
        box.open()

    def _on_preview(self, pixels, description: dict) -> None:
        """The first image found, while the files are still being indexed; the series
        replaces it as soon as it is known."""
        slot = self.active_slot()
        if slot.series_key is None and slot.viewport.frame() is None:
            slot.viewport.set_frame(pixels, frame_info_from(description), keep_view=False)
            slot.shown = None

    def _on_series_changed(self) -> None:
        entries = self.controller.series_entries()
        self.series_browser.set_series(entries)
        keys = {entry["key"] for entry in entries}
        for slot in self.slots:
            if slot.series_key is not None and slot.series_key not in keys:
                slot.series_key = None
                slot.viewport.set_frame(None)
        if entries and self.active_slot().series_key is None:
            self.show_series(entries[0]["key"])
        self.set_layout(self._layout_name)  # fills the other viewports

    def _on_frame_ready(self, key: str, index: int) -> None:
        for slot in self.slots:
            if slot.series_key == key and slot.index == index:
                self._show(slot, reset=slot.viewport.frame() is None)

    # ----------------------------------------------------------------- scrolling
    def scroll(self, slot: ViewportSlot | None = None, step: int = 1, wrap: bool = False) -> None:
        slot = slot or self.active_slot()
        if slot.series_key is None:
            return
        count = self.controller.frame_count(slot.series_key)
        if count <= 0:
            return
        new = (slot.index + step) % count if wrap else min(max(slot.index + step, 0), count - 1)
        self._move_to(slot, new)

    def _jump(self, slot: ViewportSlot, where: int) -> None:
        if slot.series_key is None:
            return
        count = self.controller.frame_count(slot.series_key)
        self._move_to(slot, count - 1 if where < 0 else 0)

    def _move_to(self, slot: ViewportSlot, index: int) -> None:
        if index == slot.index:
            return
        self._retarget(slot, slot.series_key, index)
        self._show(slot)
        if slot is self.active_slot():
            self.controller.set_current(slot.series_key, index)
            self._schedule_tags()
        if self.sync_check.isChecked():
            self._sync_from(slot)

    def _sync_from(self, source: ViewportSlot) -> None:
        """Move viewports showing another series of the same frame of reference to the slice
        nearest in space (same series: the same slice)."""
        visible = self.slots[: LAYOUTS[self._layout_name][0] * LAYOUTS[self._layout_name][1]]
        for slot in visible:
            if slot is source or slot.series_key is None:
                continue
            if slot.series_key == source.series_key:
                target = source.index
            else:
                target = self.controller.matching_index(source.series_key, source.index, slot.series_key)
            if target is not None and target != slot.index:
                self._retarget(slot, slot.series_key, target)
                self._show(slot)

    def _visible_slots(self) -> list[ViewportSlot]:
        rows, columns = LAYOUTS[self._layout_name]
        return self.slots[: rows * columns]

    def update_sync_badges(self) -> None:
        """Tell the user, on each viewport of a 1x2 / 2x2 layout, whether it scrolls with the
        active one: "Synced" (same series, or same frame of reference) or why not."""
        visible = [slot for slot in self._visible_slots() if slot.series_key is not None]
        source = self.active_slot()
        for slot in self.slots:
            text, good = None, True
            if len(visible) > 1 and slot in visible and slot is not source and source.series_key is not None:
                synced, why = self.controller.sync_relation(source.series_key, slot.series_key)
                if not self.sync_check.isChecked():
                    text, good = "Sync off", False
                elif synced:
                    text = f"\u21c5 Synced ({why})"
                else:
                    text, good = f"Not synced: {why}", False
            elif len(visible) > 1 and slot is source and self.sync_check.isChecked():
                text = "\u21c5 Sync source"
            slot.viewport.set_badge("sync", text, good)

    # ------------------------------------------------------------------- tools
    def _current_tool(self) -> str:
        for tool, action in getattr(self, "tool_actions", {}).items():
            if action.isChecked():
                return tool
        return "pan"

    def set_tool(self, tool: str) -> None:
        self.tool_actions[tool].setChecked(True)
        for slot in self.slots:
            slot.viewport.set_tool(tool)

    def set_overlays_visible(self, visible: bool) -> None:
        if self.overlay_action.isChecked() != visible:
            self.overlay_action.setChecked(visible)
        for viewport in self.viewports() + list(self.mpr_view.viewports.values()):
            viewport.set_overlays_visible(visible)

    def _reset_view(self) -> None:
        viewport = self.active_viewport()
        viewport.reset_view()
        self.set_inverted(False)
        slot = self.active_slot()
        if slot.series_key is not None:
            window = self.controller.frame_info(slot.series_key, slot.index).get("window")
            if window:
                viewport.set_window(*window)
            self.controller.remember_display(slot.series_key, window=None, view=None, inverted=False)

    def set_inverted(self, inverted: bool) -> None:
        """Invert the grey scale of the active series (kept with the series, MPR included)."""
        if self.invert_action.isChecked() != inverted:
            self.invert_action.setChecked(inverted)
            return
        slot = self.active_slot()
        if self.center.currentWidget() is self.mpr_view:
            self.mpr_view.set_inverted(inverted)
            key = self._mpr_key
        else:
            key = slot.series_key
        for other in self.slots:
            if other.series_key == key:
                other.viewport.set_inverted(inverted)
        if key is not None:
            self.controller.remember_display(key, inverted=inverted)

    def apply_preset_number(self, number: int) -> None:
        """Keys 1-9: the n-th preset of the presets box (the file's windows first)."""
        if number < self.preset_combo.count():
            self._apply_preset(number)

    def _fill_presets(self) -> None:
        slot = self.active_slot()
        self.preset_combo.clear()
        self.preset_combo.addItem("W/L presets")
        if slot.series_key is None:
            return
        for name, center, width in self.controller.window_presets(slot.series_key):
            self.preset_combo.addItem(f"{name} ({width:g}/{center:g})", (center, width))

    def _apply_preset(self, row: int) -> None:
        data = self.preset_combo.itemData(row)
        if data and self.center.currentWidget() is self.mpr_view:
            self.mpr_view.set_window(*data)
        elif data:
            self.active_viewport().set_window(*data)
        self.preset_combo.setCurrentIndex(0)

    def apply_preset(self, name: str) -> None:
        """Apply the preset whose name starts with ``name`` (e.g. "Lung")."""
        for row in range(self.preset_combo.count()):
            if self.preset_combo.itemText(row).startswith(name):
                self._apply_preset(row)
                return
        raise KeyError(name)

    def _on_window_changed(self, slot: ViewportSlot, center: float, width: float) -> None:
        if slot.series_key is not None and slot.shown == (slot.series_key, slot.index):
            self.controller.remember_display(slot.series_key, window=(center, width))
        # viewports on the same series share a window, as in every radiology viewer
        for other in self.slots:
            if other is not slot and other.series_key == slot.series_key and other.viewport.frame() is not None:
                if other.viewport.window() != (center, width):
                    other.viewport.set_window(center, width)

    # -------------------------------------------------------------------- cine
    def set_cine(self, playing: bool) -> None:
        if self.cine_action.isChecked() != playing:
            self.cine_action.setChecked(playing)
            return
        if playing:
            self.cine_timer.start(int(1000 / self.fps_spin.value()))
            self.cine_action.setText("Stop")
        else:
            self.cine_timer.stop()
            self.cine_action.setText("Play")

    def _cine_tick(self) -> None:
        slot = self.active_slot()
        if slot.series_key is None:
            return
        next_index = (slot.index + 1) % max(self.controller.frame_count(slot.series_key), 1)
        if self.controller.display_frame(slot.series_key, next_index) is None:
            self.controller.request_frame(slot.series_key, next_index)
            return  # wait for the decode rather than showing "Loading…" mid-loop
        self._move_to(slot, next_index)

    # ------------------------------------------------------------ measurements
    def _on_measurement_drawn(self, slot: ViewportSlot, kind: str, points: list) -> None:
        if slot.series_key is not None:
            self.controller.add_measurement(slot.series_key, slot.index, kind, points)

    def _drawn_measurements(self, slot: ViewportSlot) -> list[DrawnMeasurement]:
        if slot.series_key is None:
            return []
        return [DrawnMeasurement(m["id"], m["kind"], [tuple(p) for p in m["points"]], m["text"])
                for m in self.controller.measurements_for(slot.series_key, slot.index)]

    def _refresh_measurements(self) -> None:
        self.measurement_list.set_measurements(self.controller.measurement_rows())
        for slot in self.slots:
            slot.viewport.set_measurements(self._drawn_measurements(slot))

    def _go_to_measurement(self, measurement_id: str) -> None:
        where = self.controller.measurement_location(measurement_id)
        if where is None:
            return
        key, index = where
        slot = self.active_slot()
        if slot.series_key != key:
            self.show_series(key, index)
        else:
            self._move_to(slot, index)
        slot.viewport.set_measurements(self._drawn_measurements(slot), selected=measurement_id)

    # --------------------------------------------------------------------- MPR
    def set_mpr_mode(self, on: bool) -> None:
        if self.mpr_action.isChecked() != on:
            self.mpr_action.setChecked(on)
            return
        slot = self.active_slot()
        if on:
            self._remember(slot)
        else:
            self._leave_mpr(slot)
        self.center.setCurrentWidget(self.mpr_view if on else self.grid_host)
        if on and slot.series_key is not None:
            self.mpr_view.show_problem("Building the volume…")
            self.controller.request_mpr(slot.series_key)

    def _leave_mpr(self, slot: ViewportSlot) -> None:
        """Back from MPR: the series' slice follows the cross-hair, its window the MPR's."""
        key, self._mpr_key = self._mpr_key, None
        if key is None or slot.series_key != key or self.mpr_view.volume() is None:
            return
        state = self.controller.display_state(key)
        count = self.controller.frame_count(key)
        volume = self.mpr_view.volume()
        if volume.shape[0] == count:  # the volume's slices are the series' (not resampled)
            self._move_to(slot, int(round(min(max(self.mpr_view.voxel()[0], 0), count - 1))))
            if slot.viewport.frame() is not None:  # and the axial plane's zoom/pan come back
                magnification, pan = self.mpr_view.viewports["axial"].relative_view()
                slot.viewport.set_relative_view(magnification, pan if slot.viewport.unturned() else (0.0, 0.0))
        if state.window is not None and slot.viewport.frame() is not None:
            slot.viewport.set_window(*state.window)
        slot.viewport.set_inverted(state.inverted)

    def _on_mpr_ready(self, volume, meta: dict) -> None:
        self._mpr_key = meta.get("key")
        state = self.controller.display_state(self._mpr_key) if self._mpr_key else None
        start = None
        if state is not None and volume.shape[0] == self.controller.frame_count(self._mpr_key):
            start = state.index
        self.mpr_view.set_volume(volume, meta.get("description", ""), meta.get("units", ""),
                                 tuple(meta["window"]) if meta.get("window") else None,
                                 bool(meta.get("invert")), meta.get("notes"), slice_index=start,
                                 inverted=bool(meta.get("inverted")))
        slot = self.active_slot()
        if slot.series_key == self._mpr_key and slot.viewport.frame() is not None:
            # the zoom the user had on the stack, on every plane; the pan too on the axial plane
            # when its pixels are the stack's and the stack is neither flipped nor rotated
            magnification, pan = slot.viewport.relative_view()
            self.mpr_view.set_relative_view(magnification, pan if start is not None and slot.viewport.unturned() else None)

    def _on_mpr_window(self, center: float, width: float) -> None:
        if self._mpr_key is not None:
            self.controller.remember_display(self._mpr_key, window=(center, width))

    # -------------------------------------------------------------------- tags
    def _schedule_tags(self) -> None:
        if self.side_tabs.currentWidget() is self.tag_browser:
            self._tags_timer.start()

    def _request_tags(self) -> None:
        slot = self.active_slot()
        if slot.series_key is not None:
            self.controller.request_tags(slot.series_key, slot.index)

    # ------------------------------------------------------------------ export
    def view_image(self, with_overlays: bool) -> QImage:
        """The active view (a viewport, or the whole MPR view) as an image."""
        if self.center.currentWidget() is self.mpr_view:
            was_visible = self.overlay_action.isChecked()
            self.set_overlays_visible(with_overlays)
            image = self.mpr_view.grab().toImage()
            self.set_overlays_visible(was_visible)
            return image
        return self.active_viewport().grab_view(with_overlays)

    def export_view_png(self, path: Path | str, with_overlays: bool = True) -> None:
        self.controller.save_png(self.view_image(with_overlays), Path(path))

    def _ask_export_png(self, with_overlays: bool) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export view as PNG", "view.png", "PNG images (*.png)")
        if path:
            if not path.lower().endswith(".png"):
                path += ".png"
            self.export_view_png(path, with_overlays)

    def _ask_export_dicom(self) -> None:
        self.request_deidentified_export()

    def request_deidentified_export(self, folder: Path | str | None = None, choices: dict | None = None) -> None:
        """Export the active series as de-identified DICOM. A series that may show burned-in
        identifying text (declared, or by modality / SOP class) is confirmed first, with No as
        the default; nothing is written before the answer. ``folder`` None: the export dialog
        asks where to and with which options (``choices``: its values, for scripts and tests)."""
        slot = self.active_slot()
        if slot.series_key is None:
            self.controller.message.emit("warning", "Open a series first.")
            return
        key = slot.series_key
        if folder is None and choices is None:
            self._ask_export_options(key)
            return
        choices = dict(choices or {})
        folder = folder if folder is not None else choices.get("folder")
        reason = self.controller.burned_in_reason(key)
        if reason is None:
            self._export_dicom_to(key, folder, choices)
            return
        box = QMessageBox(QMessageBox.Icon.Warning, "Burned-in annotation",
                          "This series may show identifying text burned into its pixels.", parent=self)
        box.setInformativeText(
            f"Why: this series {reason.split(':')[0]}.\n\nDe-identification removes and replaces header "
            "attributes only: text in the pixels (names, dates, IDs) stays visible in the exported "
            "files. Export anyway?")
        box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        box.setDefaultButton(QMessageBox.StandardButton.No)
        box.setEscapeButton(QMessageBox.StandardButton.No)
        box.button(QMessageBox.StandardButton.Yes).setText("Export anyway")
        box.setWindowModality(Qt.WindowModality.WindowModal)
        self.burned_in_question = box

        def answered(result: int) -> None:
            self.burned_in_question = None
            box.deleteLater()
            if result == QMessageBox.StandardButton.Yes:
                self._export_dicom_to(key, folder, choices)
            else:
                self.status_label.setText("De-identified export cancelled: the series may show burned-in text.")

        box.finished.connect(answered)
        box.open()

    def _ask_export_options(self, key: str) -> None:
        dialog = DeidExportDialog(self)
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        self.export_dialog = dialog

        def chosen() -> None:
            choices = dialog.choices()
            self.export_dialog = None
            if self.active_slot().series_key == key:
                self.request_deidentified_export(choices["folder"], choices)

        dialog.accepted.connect(chosen)
        dialog.rejected.connect(lambda: setattr(self, "export_dialog", None))
        dialog.open()

    def _export_dicom_to(self, key: str, folder: Path | str | None, choices: dict) -> None:
        if folder:
            self.controller.export_deidentified(key, Path(folder), shift_dates=bool(choices.get("shift_dates")),
                                                keep_descriptions=bool(choices.get("keep_descriptions")),
                                                folders=bool(choices.get("folders")))

    # ---------------------------------------------------------------- feedback
    def _on_unreadable(self, rows: list) -> None:
        self.unreadable_panel.set_files([(str(path), reason) for path, reason in rows])
        index = self.side_tabs.indexOf(self.unreadable_panel)
        self.side_tabs.setTabText(index, f"Unreadable ({len(rows)})" if rows else "Unreadable")
        self.side_tabs.setTabToolTip(index, f"Unreadable files: {len(rows)}" if rows else "Unreadable files: none")

    def _on_progress(self, progress) -> None:
        if progress.fraction is None and not progress.message:
            self.progress_bar.hide()
            return
        self.progress_bar.show()
        if progress.fraction is None:
            self.progress_bar.setRange(0, 0)
        else:
            self.progress_bar.setRange(0, 1000)
            self.progress_bar.setValue(int(1000 * max(0.0, min(1.0, progress.fraction))))
        if progress.message:
            self.progress_bar.setFormat(progress.message)
            self.progress_bar.setTextVisible(True)

    def _on_busy(self, busy: bool) -> None:
        self.cancel_button.setVisible(busy)
        if not busy:
            self.progress_bar.hide()
