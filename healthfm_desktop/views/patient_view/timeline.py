"""The timeline of an ICU stay: small-multiple pyqtgraph plots (vitals, respiratory, labs,
fluids) sharing one time axis in hours since admission. Reference ranges are shaded, excluded
points are red crosses pinned inside the plot (their true value is in the tooltip), hovering a
point shows its value, linked notes are dashed vertical lines. Zoom and pan act on time only and
move every plot together. Each panel is its own PlotWidget, made once and reused: switching
stays only shows/hides widgets and replaces data (re-laying out one big pyqtgraph layout with
linked views costs about a second for 30 panels)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QScrollArea, QVBoxLayout, QWidget

from healthfm_desktop.core.patients.record import PatientRecord
from healthfm_desktop.core.patients.timeline import (
    PANELS,
    LinkedNote,
    Panel,
    exclusion_summary,
    panel_series,
    panels_for,
    stay_summary,
)
from healthfm_desktop.core.patients.variables import FLUID, LAB, RESPIRATORY, VITAL

PANEL_HEIGHT = 112
COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44))  # red is kept for excluded points
GROUP_TINT = {VITAL: (255, 255, 255), RESPIRATORY: (250, 250, 255), LAB: (255, 252, 246), FLUID: (246, 252, 255)}
EXCLUDED_BRUSH = pg.mkBrush(220, 0, 0)
REFERENCE_BRUSH = pg.mkBrush(60, 170, 60, 40)


def panel_title_html(panel: Panel) -> str:
    """The panel's name, then each variable in its line's colour when there are several."""
    if len(panel.variables) == 1:
        return panel.title
    names = " ".join(f"<span style='color: rgb{COLOURS[i % len(COLOURS)]}'>&#9632; {name}</span>"
                     for i, name in enumerate(panel.variables))
    return f"{panel.title} &nbsp; {names}"


def _clock(hours: float) -> str:
    minutes = int(round(hours * 60))
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass
class PanelPlot:
    """One reusable plot: a curve and a hoverable scatter per variable slot, excluded marks,
    the reference band and note lines."""

    panel: Panel
    widget: pg.PlotWidget
    plot: pg.PlotItem
    curves: list[pg.PlotDataItem]
    points: list[pg.ScatterPlotItem]
    bars: pg.BarGraphItem | None
    excluded: pg.ScatterPlotItem
    band: pg.LinearRegionItem | None
    note_lines: list[pg.InfiniteLine] = field(default_factory=list)
    n_points: int = 0
    n_excluded: int = 0


class PatientTimeline(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        pg.setConfigOptions(antialias=False, background="w", foreground="k")
        self.summary = QLabel("")
        self.summary.setObjectName("staySummary")
        font = self.summary.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.summary.setFont(font)
        self.header = QLabel("No patient selected.")
        self.header.setWordWrap(True)
        self.canvas = QWidget()
        self.canvas_layout = QVBoxLayout(self.canvas)
        self.canvas_layout.setContentsMargins(0, 0, 0, 0)
        self.canvas_layout.setSpacing(0)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self.canvas)
        self.time_axis_label = QLabel("hours since ICU admission")
        self.time_axis_label.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.summary)
        layout.addWidget(self.header)
        layout.addWidget(self.scroll, 1)
        layout.addWidget(self.time_axis_label)
        self.plots: dict[str, PanelPlot] = {}
        self.shown: list[PanelPlot] = []
        self.record: PatientRecord | None = None
        self._syncing = False
        self._bottom: PanelPlot | None = None

    # --- building ------------------------------------------------------------------------
    def _make(self, panel: Panel) -> PanelPlot:
        widget = pg.PlotWidget()
        widget.setFixedHeight(PANEL_HEIGHT)
        widget.setBackground("w")
        plot = widget.getPlotItem()
        plot.setMenuEnabled(False)
        plot.setMouseEnabled(x=True, y=False)
        plot.showGrid(x=True, y=False, alpha=0.15)
        plot.getAxis("left").setWidth(48)
        plot.getAxis("left").enableAutoSIPrefix(False)  # FiO2 0.5 must not read "500 (x0.001)"
        plot.getAxis("bottom").enableAutoSIPrefix(False)
        plot.getAxis("bottom").setStyle(showValues=False)
        plot.getViewBox().sigXRangeChanged.connect(self._sync_time_axis)
        # the panel's name (and which colour is which variable) as a title above the plot: a
        # rotated axis title longer than the panel ran into its neighbours, and a legend
        # inside the plot covered points
        plot.setTitle(panel_title_html(panel), size="8pt", justify="left")
        if panel.unit:
            plot.setLabel("left", panel.unit, **{"font-size": "7pt"})
        plot.getViewBox().setBackgroundColor(GROUP_TINT[panel.group])
        band = None
        if panel.reference is not None and panel.reference[1] > panel.reference[0]:
            band = pg.LinearRegionItem(panel.reference, orientation="horizontal", movable=False, brush=REFERENCE_BRUSH)
            band.setZValue(-10)
            for line in band.lines:
                line.setPen(pg.mkPen(None))
            plot.addItem(band)
        curves, points = [], []
        bars = None
        for slot, name in enumerate(panel.variables):
            colour = COLOURS[slot % len(COLOURS)]
            if panel.style == "bars":
                bars = pg.BarGraphItem(x=[], height=[], width=0.25, brush=pg.mkBrush(*colour, 160), pen=None)
                plot.addItem(bars)
            else:
                curve = pg.PlotDataItem(pen=pg.mkPen(colour, width=1.2))
                plot.addItem(curve)
                curves.append(curve)
            unit = panel.unit
            scatter = pg.ScatterPlotItem(
                size=5, brush=pg.mkBrush(*colour), pen=None, hoverable=True, hoverSize=9,
                tip=lambda x, y, data, unit=unit: f"{data} {y:.4g} {unit} at {_clock(x)} h",
            )
            plot.addItem(scatter)
            points.append(scatter)
        excluded = pg.ScatterPlotItem(
            size=9, symbol="x", brush=EXCLUDED_BRUSH, pen=pg.mkPen(220, 0, 0), hoverable=True,
            tip=lambda x, y, data: f"excluded at {_clock(x)} h: {data}",
        )
        excluded.setZValue(10)
        plot.addItem(excluded)
        return PanelPlot(panel, widget, plot, curves, points, bars, excluded, band)

    def _plot_for(self, panel: Panel) -> PanelPlot:
        if panel.title not in self.plots:
            item = self._make(panel)
            self.plots[panel.title] = item
            # keep the widgets in the catalogue's panel order whatever order they were made in
            order = [p.title for p in PANELS if p.title in self.plots]
            self.canvas_layout.insertWidget(order.index(panel.title), item.widget)
        return self.plots[panel.title]

    def _sync_time_axis(self, viewbox, x_range) -> None:
        """Zoom or pan on one plot moves the time axis of every shown plot."""
        if self._syncing:
            return
        self._syncing = True
        try:
            for item in self.shown:
                if item.plot.getViewBox() is not viewbox:
                    item.plot.setXRange(*x_range, padding=0)
        finally:
            self._syncing = False

    def x_range(self) -> tuple[float, float]:
        return tuple(self.shown[0].plot.getViewBox().viewRange()[0]) if self.shown else (0.0, 0.0)

    # --- showing a stay ------------------------------------------------------------------
    def show_record(self, record: PatientRecord | None, notes: list[LinkedNote] | None = None) -> None:
        self.record = record
        panels = panels_for(record) if record is not None else []
        wanted = {p.title for p in panels}
        for title, item in self.plots.items():
            if title not in wanted:
                item.widget.setVisible(False)
        self.shown = []
        if record is None:
            self.header.setText("No patient selected.")
            self.summary.setText("")
            return
        self.summary.setText(f"Stay {record.patient_id} — {stay_summary(record)}")
        end = max(48.0, float(record.time.max()) / 60.0 if record.time.size else 48.0)
        self._syncing = True
        try:
            for panel in panels:
                item = self._plot_for(panel)
                self._fill(item, record)
                self._show_notes(item, notes or [], first=not self.shown)
                item.plot.setXRange(0, end, padding=0.01)
                item.widget.setVisible(True)
                self.shown.append(item)
        finally:
            self._syncing = False
        bottom = self.shown[-1] if self.shown else None
        if bottom is not self._bottom:
            if self._bottom is not None:
                self._bottom.plot.getAxis("bottom").setStyle(showValues=False)
            if bottom is not None:
                bottom.plot.getAxis("bottom").setStyle(showValues=True)
            self._bottom = bottom
        excluded = record.n_excluded
        note_text = f", {len(notes)} linked note(s)" if notes else ""
        reasons = "; ".join(f"{why} x{count}" for why, count in exclusion_summary(record))
        self.header.setText(
            f"Stay {record.patient_id}: {record.n_observations} observations in {len(panels)} panels"
            + note_text
            + (f"\n{excluded} excluded as impossible (red crosses): {reasons}" if excluded else "")
        )

    def _fill(self, item: PanelPlot, record: PatientRecord) -> None:
        series = {s.variable: s for s in panel_series(record, item.panel)}
        kept_values = [s.values for s in series.values() if s.values.size]
        if kept_values:
            low = min(float(v.min()) for v in kept_values)
            high = max(float(v.max()) for v in kept_values)
        else:
            low, high = (item.panel.reference or (0.0, 1.0))
        if item.panel.reference is not None:
            low, high = min(low, item.panel.reference[0]), max(high, item.panel.reference[1])
        if high <= low:
            low, high = low - 1, high + 1
        margin = 0.08 * (high - low)
        low, high = low - margin, high + margin
        item.n_points = item.n_excluded = 0
        ex_x, ex_y, ex_data = [], [], []
        for slot, name in enumerate(item.panel.variables):
            s = series.get(name)
            hours = s.hours if s is not None else np.empty(0)
            values = s.values if s is not None else np.empty(0)
            if item.bars is not None:
                item.bars.setOpts(x=hours, height=values, width=0.25)
            else:
                item.curves[slot].setData(hours, values)
            item.points[slot].setData(x=hours, y=values, data=[name] * len(hours))
            item.n_points += len(hours)
            if s is not None and s.excluded_hours.size:
                ex_x += s.excluded_hours.tolist()
                ex_y += np.clip(s.excluded_values, low, high).tolist()
                ex_data += [f"{name} {v:.4g} ({why})" for v, why in zip(s.excluded_values, s.excluded_reasons)]
        item.excluded.setData(x=ex_x, y=ex_y, data=ex_data)
        item.n_excluded = len(ex_x)
        if item.bars is not None:
            low = 0.0
        item.plot.setYRange(low, high, padding=0)

    def _show_notes(self, item: PanelPlot, notes: list[LinkedNote], first: bool) -> None:
        for line in item.note_lines:
            item.plot.removeItem(line)
        item.note_lines = []
        for note in notes:
            if note.minutes is None:
                continue
            line = pg.InfiniteLine(
                pos=note.minutes / 60.0, angle=90, movable=False,
                pen=pg.mkPen(90, 60, 200, style=Qt.PenStyle.DashLine),
                label=note.title if first else None,
                labelOpts={"position": 0.9, "color": (90, 60, 200)},
            )
            line.setToolTip(f"{note.title}\n{note.text[:300]}")
            item.plot.addItem(line)
            item.note_lines.append(line)

    def panel_titles(self) -> list[str]:
        return [item.panel.title for item in self.shown]

    def panel(self, title: str) -> PanelPlot:
        return next(item for item in self.shown if item.panel.title == title)


ALL_PANEL_TITLES = tuple(p.title for p in PANELS)
