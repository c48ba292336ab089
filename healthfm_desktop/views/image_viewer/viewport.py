"""One image viewport: draws a frame with its window/level, zoom, pan, flip and rotation, the
corner annotations, measurements, AI overlays and an MPR cross-hair, and turns mouse and keys
into intents (scroll a slice, change W/L, draw a measurement). It computes nothing clinical:
measurement values come back from the controller."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontMetrics,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPen,
    QPolygonF,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import QSizePolicy, QToolButton, QWidget

from healthfm_desktop.views.image_viewer.rendering import RenderedImage, WindowRenderer, qimage_from_uint8, rgba_to_qimage

#: tools a left-drag can use; right-drag is always window/level, middle-drag always pan
TOOLS = ("pan", "zoom", "window", "distance", "angle", "rectangle", "ellipse", "crosshair")
MEASUREMENT_TOOLS = ("distance", "angle", "rectangle", "ellipse")
_HANDLE_RADIUS_PX = 6.0
_MEASUREMENT_COLOR = QColor(255, 210, 0)
_SELECTED_COLOR = QColor(0, 230, 255)
_SHAPE_COLOR = QColor(0, 255, 120)
_CROSSHAIR_COLOR = QColor(255, 80, 80, 200)


@dataclass
class FrameInfo:
    """What the viewport needs to know about a frame besides its pixels."""

    #: (row spacing, column spacing) in mm between pixel centres, or None when unknown
    pixel_spacing: tuple[float, float] | None = None
    #: MONOCHROME1: low values are bright
    invert: bool = False
    #: unit of the pixel values, e.g. "HU" for CT; "" when the values have no unit
    units: str = ""
    #: greyscale frames: the window to start with (centre, width)
    default_window: tuple[float, float] | None = None
    #: corner texts, each a list of lines: "top_left", "top_right", "bottom_left"
    corners: dict[str, list[str]] = field(default_factory=dict)
    #: the file's own VOI LUT (pixels -> uint8), used until the user changes the window
    voi_lut: Callable[[np.ndarray], np.ndarray] | None = None
    #: modality value = pixel * value_scale + value_offset (stored values of rescaled series)
    value_scale: float = 1.0
    value_offset: float = 0.0
    #: orientation letters of the unrotated image's edges ("left", "right", "top", "bottom")
    edges: dict[str, str] | None = None


#: bar lengths (mm) the scale bar picks from: the longest that fits a fifth of the width
_SCALE_BAR_MM = (1, 2, 5, 10, 20, 50, 100, 200, 500)


@dataclass
class DrawnMeasurement:
    """A measurement as the viewport draws it: points in image (column, row) coordinates."""

    id: str
    kind: str
    points: list[tuple[float, float]]
    label: str


class ImageViewport(QWidget):
    #: +1 / -1 slices (wheel, arrow keys, cine); the owner decides what a slice is
    slice_step_requested = Signal(int)
    #: jump to the first (0) or last (-1) slice
    slice_jump_requested = Signal(int)
    window_changed = Signal(float, float)  # centre, width
    #: column, row (image coordinates, floats) under the cursor, or -1, -1 when outside
    cursor_moved = Signal(float, float)
    #: kind, [(col, row), ...] in image coordinates, after the user finished drawing
    measurement_drawn = Signal(str, list)
    #: id, new points, after the user dragged a handle
    measurement_edited = Signal(str, list)
    measurement_selected = Signal(str)
    #: column, row where the user put the MPR cross-hair
    crosshair_moved = Signal(float, float)
    view_changed = Signal()
    activated = Signal()
    #: the user asked for the technical detail behind the problem shown in the viewport
    details_requested = Signal(str)

    def __init__(self, renderer: WindowRenderer, parent: QWidget | None = None):
        super().__init__(parent)
        self._renderer = renderer
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(120, 120)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self._frame: np.ndarray | None = None
        self._rendered: RenderedImage | None = None
        self._info = FrameInfo()
        self._center = 0.0
        self._width = 1.0
        self._file_lut_active = False
        self._data_range = 1.0
        self._zoom = 1.0
        self._fit = True
        self._pan = QPointF(0.0, 0.0)
        self._flip_h = False
        self._flip_v = False
        self._rotation = 0
        self._tool = "pan"
        self._overlays_visible = True
        self._smooth = True
        self._overlays: dict[str, tuple[RenderedImage, float]] = {}
        self._shapes: dict[str, tuple[list[tuple[float, float]], str]] = {}
        self._measurements: list[DrawnMeasurement] = []
        self._selected_measurement: str | None = None
        self._crosshair: tuple[float, float] | None = None
        self._active = False
        self._message = "Drop DICOM files, folders, zips, a DICOMDIR or PNG / JPEG images here"
        self._user_invert = False  # on top of the photometric interpretation's own
        self._details_button = QToolButton(self)
        self._details_button.setText("Details…")
        self._details_button.setObjectName("viewportDetails")
        self._details_button.hide()
        self._details = ""
        self._details_button.clicked.connect(lambda: self.details_requested.emit(self._details))
        #: a short notice drawn at the top centre (sync state, "not DICOM"...): text, good?
        self._badges: dict[str, tuple[str, bool]] = {}
        self._cursor_text = ""
        # interaction state
        self._drag_button: Qt.MouseButton | None = None
        self._drag_start = QPointF()
        self._drag_last = QPointF()
        self._drag_window = (0.0, 1.0)
        self._draft: list[tuple[float, float]] = []
        self._draft_kind = ""
        self._editing: tuple[str, int] | None = None
        self._font = QFont(self.font())
        self._font.setPointSizeF(max(8.0, self._font.pointSizeF() * 0.9))

    # ----------------------------------------------------------------- content
    def set_frame(self, frame: np.ndarray | None, info: FrameInfo | None = None, keep_view: bool = True) -> None:
        """Show ``frame`` (modality units). ``keep_view`` keeps zoom/pan/window (scrolling a
        series); otherwise the view resets to fit and the frame's default window."""
        previous_shape = None if self._frame is None else self._frame.shape[:2]
        if frame is not None:
            self._details_button.hide()
        self._frame = frame
        self._info = info or FrameInfo()
        if frame is None:
            self._rendered = None
            self.update()
            return
        if not keep_view or previous_shape != frame.shape[:2]:
            self._fit = True
            self._pan = QPointF(0.0, 0.0)
        if not keep_view or previous_shape is None:
            self._data_range, default = self._default_window(frame, self._info)
            self._center, self._width = self._info.default_window or default
            self._file_lut_active = self._info.voi_lut is not None
        self._render()
        self.update()

    def frame(self) -> np.ndarray | None:
        return self._frame

    def frame_info(self) -> FrameInfo:
        return self._info

    def set_message(self, text: str) -> None:
        """Text shown in the middle when there is no frame (e.g. "Loading…")."""
        self._message = text
        self._details = ""
        self._details_button.hide()
        self.update()

    def set_problem(self, sentence: str, details: str) -> None:
        """A frame that cannot be shown: one plain sentence in the middle, the technical
        detail behind a "Details…" button (never decoder text over the image)."""
        self.set_frame(None)
        self._message = sentence
        self._details = details
        self._details_button.setVisible(bool(details))
        self._place_details_button()
        self.update()

    def message(self) -> str:
        return self._message

    def _place_details_button(self) -> None:
        hint = self._details_button.sizeHint()
        self._details_button.move(int((self.width() - hint.width()) / 2), int(self.height() / 2 + 3 * QFontMetrics(self._font).height()))

    def set_badge(self, name: str, text: str | None, good: bool = True) -> None:
        """Show (or, with ``text`` None, remove) a notice at the top centre: green when
        ``good`` (e.g. "Synced"), amber otherwise (e.g. "Not synced: other frame of reference")."""
        if text:
            self._badges[name] = (text, good)
        else:
            self._badges.pop(name, None)
        self.update()

    def badges(self) -> dict[str, str]:
        return {name: text for name, (text, _good) in self._badges.items()}

    def set_corner_text(self, corners: dict[str, list[str]]) -> None:
        self._info.corners = corners
        self.update()

    @staticmethod
    def _default_window(frame: np.ndarray, info: FrameInfo) -> tuple[float, tuple[float, float]]:
        if frame.ndim == 3 and frame.dtype == np.uint8:
            return 255.0, (127.5, 256.0)
        low, high = (float(v) * info.value_scale + info.value_offset for v in (np.min(frame), np.max(frame)))
        span = max(high - low, 1.0)
        return span, ((low + high + 1.0) / 2.0, span + 1.0)

    # ------------------------------------------------------------ window/level
    def window(self) -> tuple[float, float]:
        return self._center, self._width

    def set_window(self, center: float, width: float) -> None:
        width = max(float(width), 1.0)
        if (center, width) == (self._center, self._width):
            return
        self._center, self._width = float(center), width
        self._file_lut_active = False
        self._render()
        self.update()
        self.window_changed.emit(self._center, self._width)

    def _render(self) -> None:
        if self._frame is None:
            return
        if self._frame.ndim == 3 and self._frame.dtype == np.uint8:
            pixels = self._frame  # colour: display values already
        elif self._file_lut_active and self._info.voi_lut is not None:
            pixels = self._info.voi_lut(self._frame)
            if self._user_invert:
                pixels = 255 - pixels
        else:
            pixels = self._renderer(self._frame, self._center, self._width, self._info.invert != self._user_invert,
                                    self._info.value_scale, self._info.value_offset)
        self._rendered = qimage_from_uint8(pixels)

    def set_inverted(self, inverted: bool) -> None:
        """Invert the grey scale on top of the file's photometric interpretation."""
        if inverted != self._user_invert:
            self._user_invert = bool(inverted)
            self._render()
            self.update()
            self.view_changed.emit()

    def inverted(self) -> bool:
        return self._user_invert

    def rendered_image(self) -> QImage | None:
        return None if self._rendered is None else self._rendered.image

    # ----------------------------------------------------------------- geometry
    def image_size(self) -> tuple[int, int]:
        """(width, height) in pixels of the current frame, (0, 0) without one."""
        if self._frame is None:
            return 0, 0
        return int(self._frame.shape[1]), int(self._frame.shape[0])

    def pixel_aspect(self) -> float:
        """Height of a pixel on screen relative to its width (row spacing / column spacing)."""
        spacing = self._info.pixel_spacing
        if not spacing or spacing[0] <= 0 or spacing[1] <= 0:
            return 1.0
        return float(spacing[0]) / float(spacing[1])

    def zoom(self) -> float:
        """Screen pixels per image column; after fit it is the fitted zoom."""
        if self._fit:
            return self._fit_zoom()
        return self._zoom

    def _fit_zoom(self) -> float:
        width, height = self.image_size()
        if not width or not height:
            return 1.0
        shown_w, shown_h = float(width), float(height) * self.pixel_aspect()
        if self._rotation in (90, 270):
            shown_w, shown_h = shown_h, shown_w
        return max(min(self.width() / shown_w, self.height() / shown_h), 1e-3)

    def image_to_widget(self) -> QTransform:
        width, height = self.image_size()
        zoom = self.zoom()
        transform = QTransform()
        transform.translate(self.width() / 2.0 + self._pan.x(), self.height() / 2.0 + self._pan.y())
        transform.rotate(self._rotation)
        transform.scale(-zoom if self._flip_h else zoom, (-zoom if self._flip_v else zoom) * self.pixel_aspect())
        transform.translate(-width / 2.0, -height / 2.0)
        return transform

    def widget_to_image(self, point: QPointF) -> QPointF:
        inverse, ok = self.image_to_widget().inverted()
        return inverse.map(point) if ok else QPointF(-1, -1)

    def fit(self) -> None:
        self._fit = True
        self._pan = QPointF(0.0, 0.0)
        self._view_changed()

    def actual_size(self) -> None:
        """1:1 - one image pixel per screen pixel."""
        self._fit = False
        self._zoom = 1.0
        self._view_changed()

    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        zoom = min(max(zoom, 0.02), 64.0)
        if anchor is not None:
            fixed = self.widget_to_image(anchor)
        self._fit = False
        self._zoom = zoom
        if anchor is not None:
            moved = self.image_to_widget().map(fixed)
            self._pan += anchor - moved
        self._view_changed()

    def flip_horizontal(self) -> None:
        self._flip_h = not self._flip_h
        self._view_changed()

    def flip_vertical(self) -> None:
        self._flip_v = not self._flip_v
        self._view_changed()

    def rotate(self, degrees: int = 90) -> None:
        self._rotation = (self._rotation + degrees) % 360
        self._view_changed()

    def reset_view(self) -> None:
        self._flip_h = self._flip_v = False
        self._rotation = 0
        self.fit()

    def view_state(self) -> dict:
        return {"zoom": self.zoom(), "fit": self._fit, "flip_h": self._flip_h, "flip_v": self._flip_v,
                "rotation": self._rotation, "pan": (self._pan.x(), self._pan.y())}

    def set_view_state(self, state: dict) -> None:
        """Restore what ``view_state`` returned (a series the user comes back to)."""
        self._fit = bool(state.get("fit", True))
        self._zoom = float(state.get("zoom", 1.0))
        self._flip_h, self._flip_v = bool(state.get("flip_h")), bool(state.get("flip_v"))
        self._rotation = int(state.get("rotation", 0)) % 360
        pan = state.get("pan") or (0.0, 0.0)
        self._pan = QPointF(float(pan[0]), float(pan[1]))
        self._view_changed()

    def relative_view(self) -> tuple[float, tuple[float, float]]:
        """The zoom as a multiple of the fitted zoom and the pan in image pixels: what a viewport
        of another size (an MPR plane) needs to show the image the same way."""
        zoom = self.zoom()
        return zoom / self._fit_zoom(), (self._pan.x() / zoom, self._pan.y() / zoom)

    def unturned(self) -> bool:
        """Neither flipped nor rotated: screen directions are the image's own."""
        return not self._flip_h and not self._flip_v and self._rotation == 0

    def set_relative_view(self, magnification: float, pan: tuple[float, float] = (0.0, 0.0)) -> None:
        """Apply ``relative_view``'s figures at this viewport's own size (flips and rotation kept)."""
        if abs(magnification - 1.0) < 1e-6 and not any(pan):
            self.fit()
            return
        zoom = min(max(magnification * self._fit_zoom(), 0.02), 64.0)
        self._fit = False
        self._zoom = zoom
        self._pan = QPointF(pan[0] * zoom, pan[1] * zoom)
        self._view_changed()

    def _view_changed(self) -> None:
        self.update()
        self.view_changed.emit()

    # ------------------------------------------------------------------- tools
    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}")
        self._tool = tool
        self._draft = []
        self.setCursor(Qt.CursorShape.CrossCursor if tool in MEASUREMENT_TOOLS + ("crosshair",) else Qt.CursorShape.ArrowCursor)
        self.update()

    def tool(self) -> str:
        return self._tool

    def set_smooth(self, smooth: bool) -> None:
        """Bilinear (True) or nearest-neighbour (False) magnification."""
        self._smooth = smooth
        self.update()

    def set_overlays_visible(self, visible: bool) -> None:
        """Corner texts, measurements and AI overlays on or off (the image stays)."""
        self._overlays_visible = visible
        self.update()

    def overlays_visible(self) -> bool:
        return self._overlays_visible

    def set_active(self, active: bool) -> None:
        self._active = active
        self.update()

    # ------------------------------------------------------- overlays for others
    def set_overlay(self, name: str, rgba: np.ndarray | None, opacity: float = 0.5) -> None:
        """Draw an RGBA image (uint8 HxWx4, same size as the frame) over the image in image
        coordinates, or remove it with ``None``. ``opacity`` multiplies the overlay's alpha."""
        if rgba is None:
            self._overlays.pop(name, None)
        else:
            width, height = self.image_size()
            if width and rgba.shape[:2] != (height, width):
                raise ValueError(f"overlay {name!r} is {rgba.shape[1]}x{rgba.shape[0]}, the image is {width}x{height}")
            self._overlays[name] = (rgba_to_qimage(np.ascontiguousarray(rgba)), float(opacity))
        self.update()

    def set_overlay_opacity(self, name: str, opacity: float) -> None:
        if name in self._overlays:
            image, _ = self._overlays[name]
            self._overlays[name] = (image, float(min(max(opacity, 0.0), 1.0)))
            self.update()

    def clear_overlays(self) -> None:
        """Remove every RGBA and shape overlay (not the measurements)."""
        if self._overlays or self._shapes:
            self._overlays.clear()
            self._shapes.clear()
            self.update()

    def overlay_names(self) -> list[str]:
        return list(self._overlays)

    def overlay_state(self) -> tuple[dict, dict]:
        """The RGBA and shape overlays as they are, for ``restore_overlay_state`` when the
        viewport comes back to the image they were computed for."""
        return dict(self._overlays), dict(self._shapes)

    def restore_overlay_state(self, state: tuple[dict, dict]) -> None:
        self._overlays, self._shapes = dict(state[0]), dict(state[1])
        self.update()

    def add_shape_overlay(self, name: str, polygon_points, label: str = "") -> None:
        """A closed outline (e.g. a segmented contour) in image (column, row) coordinates with a
        label drawn beside it like a measurement. Same name replaces; empty points remove."""
        points = [(float(x), float(y)) for x, y in polygon_points]
        if not points:
            self._shapes.pop(name, None)
        else:
            self._shapes[name] = (points, label)
        self.update()

    def remove_shape_overlay(self, name: str) -> None:
        self._shapes.pop(name, None)
        self.update()

    def shape_overlay_names(self) -> list[str]:
        return list(self._shapes)

    def set_measurements(self, measurements: list[DrawnMeasurement], selected: str | None = None) -> None:
        self._measurements = list(measurements)
        self._selected_measurement = selected
        self.update()

    def set_crosshair(self, point: tuple[float, float] | None) -> None:
        self._crosshair = point
        self.update()

    def crosshair(self) -> tuple[float, float] | None:
        return self._crosshair

    # ---------------------------------------------------------------- readout
    def value_at(self, col: float, row: float) -> str:
        """The pixel value under (col, row) as the user reads it, or "" outside the image."""
        if self._frame is None:
            return ""
        c, r = int(math.floor(col)), int(math.floor(row))
        height, width = self._frame.shape[:2]
        if not (0 <= c < width and 0 <= r < height):
            return ""
        value = self._frame[r, c]
        if np.ndim(value):
            return "RGB " + " ".join(str(int(v)) for v in value)
        number = float(value) * self._info.value_scale + self._info.value_offset
        text = f"{int(number)}" if number.is_integer() else f"{number:.2f}"
        return f"{text} {self._info.units}".strip()

    def cursor_text(self) -> str:
        return self._cursor_text

    # ------------------------------------------------------------------ paint
    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        painter = QPainter(self)
        painter.fillRect(self.rect(), Qt.GlobalColor.black)
        # save/restore rather than resetTransform: when a parent is grabbed, Qt paints this
        # widget with the parent's painter, whose base transform is our offset in the parent
        painter.save()
        self.paint_content(painter, self._overlays_visible)
        painter.restore()
        if self._active:
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.setPen(QPen(QColor(70, 140, 255), 2))
            painter.drawRect(self.rect().adjusted(1, 1, -1, -1))
        painter.end()

    def paint_content(self, painter: QPainter, with_overlays: bool) -> None:
        """Draw the image and (optionally) everything on top; also used for PNG export."""
        if self._rendered is None:
            painter.setPen(QColor(160, 160, 160))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._message)
            return
        transform = self.image_to_widget()
        width, height = self.image_size()
        painter.save()
        painter.setTransform(transform)
        # bilinear, as radiology viewers show by default; the readout still reads true pixels
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self._smooth)
        painter.drawImage(QPointF(0, 0), self._rendered.image)
        if with_overlays:
            for image, opacity in self._overlays.values():
                painter.setOpacity(opacity)
                painter.drawImage(QRectF(0, 0, width, height), image.image)
            painter.setOpacity(1.0)
        painter.restore()
        if not with_overlays:
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setFont(self._font)
        for points, label in self._shapes.values():
            self._draw_polyline(painter, transform, points, closed=True, color=_SHAPE_COLOR)
            if label:
                self._draw_label(painter, transform.map(QPointF(*max(points, key=lambda p: p[0]))), label, _SHAPE_COLOR)
        for measurement in self._measurements:
            color = _SELECTED_COLOR if measurement.id == self._selected_measurement else _MEASUREMENT_COLOR
            self._draw_measurement(painter, transform, measurement.kind, measurement.points, color)
            anchor = transform.map(QPointF(*measurement.points[-1]))
            self._draw_label(painter, anchor, measurement.label, color)
        if self._draft:
            self._draw_measurement(painter, transform, self._draft_kind, self._draft, _SELECTED_COLOR)
        if self._crosshair is not None:
            self._draw_crosshair(painter, transform)
        self._draw_corners(painter)
        self._draw_edge_letters(painter, transform)
        self._draw_scale_bar(painter)
        self._draw_badges(painter)

    def edge_letters(self) -> dict[str, str]:
        """Orientation letters at the screen's edges now (after flips and rotation): what the
        user reads at the middle of each side; {} without orientation."""
        edges = self._info.edges
        if not edges or self._frame is None:
            return {}
        transform = self.image_to_widget()
        origin = transform.map(QPointF(0, 0))
        along_x, along_y = transform.map(QPointF(1, 0)) - origin, transform.map(QPointF(0, 1)) - origin
        shown = {}
        for side, (dx, dy) in {"right": (1, 0), "left": (-1, 0), "bottom": (0, 1), "top": (0, -1)}.items():
            on_x = along_x.x() * dx + along_x.y() * dy
            on_y = along_y.x() * dx + along_y.y() * dy
            if abs(on_x) >= abs(on_y):
                shown[side] = edges["right" if on_x > 0 else "left"]
            else:
                shown[side] = edges["bottom" if on_y > 0 else "top"]
        return shown

    def _draw_edge_letters(self, painter: QPainter, transform: QTransform) -> None:
        font = QFont(self._font)
        font.setBold(True)
        painter.setFont(font)
        metrics = QFontMetrics(font)
        for side, letters in self.edge_letters().items():
            width = metrics.horizontalAdvance(letters)
            x = {"left": 6, "right": self.width() - 6 - width}.get(side, (self.width() - width) / 2)
            y = {"top": 6 + metrics.ascent(), "bottom": self.height() - 6 - metrics.descent()}.get(
                side, self.height() / 2 + metrics.ascent() / 2)
            self._outlined_text(painter, QPointF(x, y), letters, QColor(255, 235, 120))
        painter.setFont(self._font)

    def scale_bar(self) -> tuple[float, float] | None:
        """(millimetres, screen pixels) of the scale bar drawn now; None without pixel spacing."""
        spacing = self._info.pixel_spacing
        if self._frame is None or not spacing or spacing[1] <= 0:
            return None
        pixels_per_mm = self.zoom() / float(spacing[1])  # rows are scaled by the aspect: isotropic
        fitting = [mm for mm in _SCALE_BAR_MM if mm * pixels_per_mm <= self.width() / 5]
        if not fitting:
            return None
        return float(fitting[-1]), fitting[-1] * pixels_per_mm

    def _draw_scale_bar(self, painter: QPainter) -> None:
        bar = self.scale_bar()
        if bar is None:
            return
        millimetres, length = bar
        metrics = QFontMetrics(self._font)
        right = self.width() - 12.0
        y = self.height() - 12.0 - metrics.height() * (2 if self._cursor_text else 1)
        for colour, width in ((QColor(0, 0, 0, 220), 4), (QColor(235, 235, 235), 2)):
            pen = QPen(colour, width)
            painter.setPen(pen)
            painter.drawLine(QPointF(right - length, y), QPointF(right, y))
            painter.drawLine(QPointF(right - length, y - 4), QPointF(right - length, y + 4))
            painter.drawLine(QPointF(right, y - 4), QPointF(right, y + 4))
        text = f"{millimetres:g} mm" if millimetres < 10 else f"{millimetres / 10:g} cm"
        self._outlined_text(painter, QPointF(right - length / 2 - metrics.horizontalAdvance(text) / 2, y - 6), text,
                            QColor(235, 235, 235))

    @staticmethod
    def _outlined_text(painter: QPainter, at: QPointF, text: str, colour: QColor) -> None:
        # a dark outline keeps the text readable over bright anatomy (MONOCHROME1 CR)
        painter.setPen(QColor(0, 0, 0, 220))
        for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1), (1, 1)):
            painter.drawText(QPointF(at.x() + dx, at.y() + dy), text)
        painter.setPen(colour)
        painter.drawText(at, text)

    def _draw_badges(self, painter: QPainter) -> None:
        """Top centre, below any corner line they would cover."""
        metrics = QFontMetrics(self._font)
        corners = self.corner_lines()
        left, right = corners.get("top_left", []), corners.get("top_right", [])
        y = 6.0
        for text, good in self._badges.values():
            width = metrics.horizontalAdvance(text) + 12
            x = (self.width() - width) / 2
            for i in range(max(len(left), len(right))):
                line_top = 6 + i * metrics.height()
                if line_top + metrics.height() <= y:
                    continue
                left_end = 6 + (metrics.horizontalAdvance(left[i]) if i < len(left) else 0)
                right_start = self.width() - 6 - (metrics.horizontalAdvance(right[i]) if i < len(right) else 0)
                if left_end > x - 4 or right_start < x + width + 4:
                    y = line_top + metrics.height() + 2  # that line is in the way: go below it
            box = QRectF(x, y, width, metrics.height() + 4)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(20, 110, 60, 200) if good else QColor(150, 95, 0, 210))
            painter.drawRoundedRect(box, 4, 4)
            painter.setPen(QColor(245, 245, 245))
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
            y += box.height() + 3

    def _draw_polyline(self, painter, transform, points, closed, color) -> None:
        pen = QPen(color, 1.5)
        pen.setCosmetic(True)
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        polygon = QPolygonF([transform.map(QPointF(x, y)) for x, y in points])
        if closed:
            painter.drawPolygon(polygon)
        else:
            painter.drawPolyline(polygon)

    def _draw_measurement(self, painter, transform, kind, points, color) -> None:
        if kind in ("distance", "angle"):
            self._draw_polyline(painter, transform, points, closed=False, color=color)
        elif kind in ("rectangle", "ellipse") and len(points) == 2:
            (x0, y0), (x1, y1) = points
            rect = QRectF(QPointF(min(x0, x1), min(y0, y1)), QPointF(max(x0, x1), max(y0, y1)))
            path = QPainterPath()
            if kind == "rectangle":
                path.addRect(rect)
            else:
                path.addEllipse(rect)
            pen = QPen(color, 1.5)
            pen.setCosmetic(True)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawPath(transform.map(path))
        painter.setBrush(QBrush(color))
        painter.setPen(Qt.PenStyle.NoPen)
        for x, y in points:
            painter.drawEllipse(transform.map(QPointF(x, y)), 3.0, 3.0)

    def _draw_label(self, painter: QPainter, anchor: QPointF, text: str, color: QColor) -> None:
        if not text:
            return
        metrics = QFontMetrics(self._font)
        lines = text.split("\n")
        box = QRectF(anchor.x() + 8, anchor.y() - 4, max(metrics.horizontalAdvance(line) for line in lines) + 8,
                     metrics.height() * len(lines) + 4)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(0, 0, 0, 150))
        painter.drawRect(box)
        painter.setPen(color)
        for i, line in enumerate(lines):
            painter.drawText(QPointF(box.left() + 4, box.top() + 2 + metrics.ascent() + i * metrics.height()), line)

    def _draw_crosshair(self, painter: QPainter, transform: QTransform) -> None:
        width, height = self.image_size()
        x, y = self._crosshair
        pen = QPen(_CROSSHAIR_COLOR, 1.0)
        pen.setCosmetic(True)
        painter.setPen(pen)
        painter.drawLine(transform.map(QPointF(x, 0)), transform.map(QPointF(x, height)))
        painter.drawLine(transform.map(QPointF(0, y)), transform.map(QPointF(width, y)))

    def corner_lines(self) -> dict[str, list[str]]:
        """Everything the corners show now (also what tests read)."""
        corners = {key: list(lines) for key, lines in self._info.corners.items()}
        bottom_left = corners.setdefault("bottom_left", [])
        if self._frame is not None and not (self._frame.ndim == 3 and self._frame.dtype == np.uint8):
            bottom_left.append("VOI LUT (file)" if self._file_lut_active else f"W {self._width:.0f}  L {self._center:.0f}")
        bottom_left.append(f"Zoom {self.zoom() * 100:.0f}%")
        corners["bottom_right"] = [self._cursor_text] if self._cursor_text else []
        return corners

    def _draw_corners(self, painter: QPainter) -> None:
        metrics = QFontMetrics(self._font)
        line_height = metrics.height()
        margin = 6
        for corner, lines in self.corner_lines().items():
            right = corner.endswith("right")
            bottom = corner.startswith("bottom")
            for i, line in enumerate(lines):
                row = (len(lines) - 1 - i) if bottom else i
                y = (self.height() - margin - row * line_height - metrics.descent()) if bottom else (margin + row * line_height + metrics.ascent())
                x = (self.width() - margin - metrics.horizontalAdvance(line)) if right else margin
                self._outlined_text(painter, QPointF(x, y), line, QColor(235, 235, 235))

    # ------------------------------------------------------------------ input
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self.activated.emit()
        self.setFocus()
        position = event.position()
        button = event.button()
        if self._frame is None:
            return
        image_point = self.widget_to_image(position)
        if button == Qt.MouseButton.LeftButton:
            handle = self._handle_at(position)
            if handle is not None and self._tool not in ("crosshair",):
                self._editing = handle
                self._selected_measurement = handle[0]
                self.measurement_selected.emit(handle[0])
                self._drag_button = button
                return
            if self._tool in ("distance", "rectangle", "ellipse"):
                self._draft_kind = self._tool
                self._draft = [(image_point.x(), image_point.y()), (image_point.x(), image_point.y())]
            elif self._tool == "angle":
                if not self._draft:
                    self._draft_kind = "angle"
                    self._draft = [(image_point.x(), image_point.y()), (image_point.x(), image_point.y())]
                else:  # third click: the second arm
                    self._draft[-1] = (image_point.x(), image_point.y())
                    points, self._draft = self._draft, []
                    self.measurement_drawn.emit("angle", points)
                    self.update()
                    return
            elif self._tool == "crosshair":
                self._set_crosshair_from_user(image_point)
        self._drag_button = button
        self._drag_start = self._drag_last = position
        self._drag_window = (self._center, self._width)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        position = event.position()
        image_point = self.widget_to_image(position)
        self._update_readout(image_point)
        if self._tool == "angle" and len(self._draft) == 3 and self._drag_button is None:
            self._draft[-1] = (image_point.x(), image_point.y())
            self.update()
        if self._drag_button is None or self._frame is None:
            return
        delta = position - self._drag_last
        self._drag_last = position
        button = self._drag_button
        if self._editing is not None:
            measurement_id, index = self._editing
            for measurement in self._measurements:
                if measurement.id == measurement_id:
                    measurement.points[index] = (image_point.x(), image_point.y())
            self.update()
        elif button == Qt.MouseButton.RightButton or (button == Qt.MouseButton.LeftButton and self._tool == "window"):
            self._drag_window_level(position)
        elif button == Qt.MouseButton.MiddleButton or (button == Qt.MouseButton.LeftButton and self._tool == "pan"):
            self._pan += delta
            self._view_changed()
        elif button == Qt.MouseButton.LeftButton and self._tool == "zoom":
            self.set_zoom(self.zoom() * math.exp(-delta.y() / 150.0), self._drag_start)
        elif button == Qt.MouseButton.LeftButton and self._draft:
            self._draft[-1] = (image_point.x(), image_point.y())
            self.update()
        elif button == Qt.MouseButton.LeftButton and self._tool == "crosshair":
            self._set_crosshair_from_user(image_point)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._editing is not None:
            measurement_id, _ = self._editing
            self._editing = None
            self._drag_button = None
            for measurement in self._measurements:
                if measurement.id == measurement_id:
                    self.measurement_edited.emit(measurement_id, list(measurement.points))
            return
        if self._drag_button == Qt.MouseButton.LeftButton and self._draft and self._draft_kind != "angle":
            points, self._draft = self._draft, []
            start, end = self.image_to_widget().map(QPointF(*points[0])), self.image_to_widget().map(QPointF(*points[1]))
            if (end - start).manhattanLength() >= 3:  # a click is not a measurement
                self.measurement_drawn.emit(self._draft_kind, points)
            self.update()
        elif self._drag_button == Qt.MouseButton.LeftButton and self._draft_kind == "angle" and len(self._draft) == 2:
            # first arm done; the next click places the end of the second arm
            self._draft.append(self._draft[-1])
            self.update()
        self._drag_button = None

    def leaveEvent(self, event) -> None:  # noqa: N802
        self._cursor_text = ""
        self.cursor_moved.emit(-1.0, -1.0)
        self.update()

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        steps = event.angleDelta().y() / 120.0
        if not steps:
            return
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.set_zoom(self.zoom() * (1.15 ** steps), event.position())
        else:
            self.slice_step_requested.emit(-1 if steps > 0 else 1)
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        key = event.key()
        if key in (Qt.Key.Key_Up, Qt.Key.Key_Left):
            self.slice_step_requested.emit(-1)
        elif key in (Qt.Key.Key_Down, Qt.Key.Key_Right):
            self.slice_step_requested.emit(1)
        elif key == Qt.Key.Key_PageUp:
            self.slice_step_requested.emit(-10)
        elif key == Qt.Key.Key_PageDown:
            self.slice_step_requested.emit(10)
        elif key == Qt.Key.Key_Home:
            self.slice_jump_requested.emit(0)
        elif key == Qt.Key.Key_End:
            self.slice_jump_requested.emit(-1)
        elif key == Qt.Key.Key_Escape:
            self._draft = []
            self.update()
        else:
            super().keyPressEvent(event)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._place_details_button()
        self.view_changed.emit()

    def _drag_window_level(self, position: QPointF) -> None:
        # a full drag across the viewport spans the data's range: fine enough for 8 bits,
        # fast enough for 16
        total = position - self._drag_start
        sensitivity = self._data_range / max(self.width(), 1)
        center0, width0 = self._drag_window
        self.set_window(center0 + total.y() * sensitivity, max(1.0, width0 + total.x() * sensitivity))

    def _update_readout(self, image_point: QPointF) -> None:
        if self._frame is None:
            return
        value = self.value_at(image_point.x(), image_point.y())
        if value:
            self._cursor_text = f"({int(math.floor(image_point.x()))}, {int(math.floor(image_point.y()))})  {value}"
            self.cursor_moved.emit(image_point.x(), image_point.y())
        else:
            self._cursor_text = ""
            self.cursor_moved.emit(-1.0, -1.0)
        self.update()

    def _set_crosshair_from_user(self, image_point: QPointF) -> None:
        width, height = self.image_size()
        x = min(max(image_point.x(), 0.0), width - 1.0)
        y = min(max(image_point.y(), 0.0), height - 1.0)
        self._crosshair = (x, y)
        self.update()
        self.crosshair_moved.emit(x, y)

    def _handle_at(self, position: QPointF) -> tuple[str, int] | None:
        transform = self.image_to_widget()
        for measurement in reversed(self._measurements):
            for index, (x, y) in enumerate(measurement.points):
                if (transform.map(QPointF(x, y)) - position).manhattanLength() <= _HANDLE_RADIUS_PX * 1.5:
                    return measurement.id, index
        return None

    # ------------------------------------------------------------------ export
    def grab_view(self, with_overlays: bool) -> QImage:
        """The viewport as the user sees it, with or without the annotations."""
        image = QImage(self.size(), QImage.Format.Format_RGB32)
        image.fill(Qt.GlobalColor.black)
        painter = QPainter(image)
        self.paint_content(painter, with_overlays)
        painter.end()
        return image
