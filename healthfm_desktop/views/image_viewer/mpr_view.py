"""The MPR view: axial, coronal and sagittal reformats of one volume with a linked cross-hair.
Clicking or dragging in one plane moves the other two to that point; the wheel pages through
a plane. Each plane is drawn with its physical pixel spacing, so the aspect is correct.

The volume is any object with ``shape`` (slices, rows, columns), ``planes`` (names),
``plane_count(plane)``, ``plane_image(plane, index) -> (pixels, (row_mm, col_mm))``,
``voxel_to_plane(plane, voxel) -> (index, col, row)`` and
``plane_to_voxel(plane, index, col, row) -> voxel`` (voxel = (slice, row, column) floats);
the controller builds it from the core's reformatting. Volumes with ``plane_slab`` get MIP /
MinIP / mean slabs, with ``plane_edge_letters`` orientation letters."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QFormLayout, QGridLayout, QLabel, QSpinBox, QVBoxLayout, QWidget

from healthfm_desktop.views.image_viewer.rendering import WindowRenderer
from healthfm_desktop.views.image_viewer.viewport import FrameInfo, ImageViewport

PLANES = ("axial", "coronal", "sagittal")
#: slab projections: (label, the volume's mode name or None for a plain plane)
SLAB_MODES = (("Single plane", None), ("MIP (maximum)", "mip"), ("MinIP (minimum)", "minip"), ("Mean", "mean"))


class MprView(QWidget):
    window_changed = Signal(float, float)  # centre, width: the three planes share one

    def __init__(self, renderer: WindowRenderer, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("mprView")
        self.viewports = {plane: ImageViewport(renderer) for plane in PLANES}
        self.info = QLabel("Open a volume series and press MPR.")
        self.info.setWordWrap(True)
        self.info.setStyleSheet("color: #ddd; background: #111; padding: 8px;")
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(2)
        grid.addWidget(self.viewports["axial"], 0, 0)
        grid.addWidget(self.viewports["coronal"], 0, 1)
        grid.addWidget(self.viewports["sagittal"], 1, 0)
        self.slab_mode = QComboBox()
        self.slab_mode.setObjectName("slabMode")
        for label, mode in SLAB_MODES:
            self.slab_mode.addItem(label, mode)
        self.slab_thickness = QSpinBox()
        self.slab_thickness.setObjectName("slabThickness")
        self.slab_thickness.setRange(2, 200)
        self.slab_thickness.setValue(10)
        self.slab_thickness.setSuffix(" planes")
        self.slab_mode.currentIndexChanged.connect(lambda _i: self._refresh(force=True))
        self.slab_thickness.valueChanged.connect(lambda _v: self._refresh(force=True))
        side = QWidget()
        side.setObjectName("mprSide")
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(self.info, 1)
        slab_form = QFormLayout()
        slab_form.addRow("Slab", self.slab_mode)
        slab_form.addRow("Thickness", self.slab_thickness)
        side_layout.addLayout(slab_form)
        grid.addWidget(side, 1, 1)
        for i in (0, 1):  # four equal cells, whatever the planes' aspect
            grid.setColumnStretch(i, 1)
            grid.setRowStretch(i, 1)
        self._inverted = False
        self._volume = None
        self._voxel = (0.0, 0.0, 0.0)
        self._indices = {plane: 0 for plane in PLANES}
        self._units = ""
        self._window: tuple[float, float] | None = None
        self._invert = False
        for plane, viewport in self.viewports.items():
            viewport.set_tool("crosshair")
            viewport.set_message(f"{plane.title()}")
            viewport.crosshair_moved.connect(lambda col, row, p=plane: self._on_crosshair(p, col, row))
            viewport.slice_step_requested.connect(lambda step, p=plane: self._step(p, step))
            viewport.window_changed.connect(self._sync_window)

    def set_volume(self, volume, description: str = "", units: str = "",
                   window: tuple[float, float] | None = None, invert: bool = False, notes: list[str] | None = None,
                   slice_index: int | None = None, inverted: bool = False) -> None:
        """Show ``volume``; ``slice_index`` puts the cross-hair on that slice of the stack (the
        one the user was on), ``inverted`` the user's inversion on top of ``invert``."""
        self._volume = volume
        self._units = units
        self._window = window
        self._invert = invert
        self._inverted = inverted
        slices, rows, columns = volume.shape
        first = (slices - 1) / 2.0 if slice_index is None else float(min(max(slice_index, 0), slices - 1))
        self._voxel = (first, (rows - 1) / 2.0, (columns - 1) / 2.0)
        lines = [description, f"Volume {columns} x {rows} x {slices}"]
        spacing = getattr(volume, "spacing", None)
        if spacing:
            lines.append("Voxel {:.2f} x {:.2f} x {:.2f} mm".format(spacing[2], spacing[1], spacing[0]))
        lines += list(notes or [])
        lines.append("Click or drag to move the cross-hair; wheel pages through a plane; right-drag sets W/L.")
        self.info.setText("\n".join(line for line in lines if line))
        self._refresh(reset=True)

    def set_relative_view(self, magnification: float, axial_pan: tuple[float, float] | None = None) -> None:
        """The stack's zoom (as a multiple of fit) on every plane; its pan on the axial plane only,
        whose pixels are the stack's (``axial_pan`` None: centred)."""
        for plane, viewport in self.viewports.items():
            pan = axial_pan if plane == "axial" and axial_pan is not None else (0.0, 0.0)
            viewport.set_relative_view(magnification, pan)

    def show_problem(self, text: str) -> None:
        """Why there is no reformat (too few slices, colour, no geometry), or that one is coming."""
        self.clear()
        self.info.setText(text)

    def clear(self) -> None:
        self._volume = None
        for viewport in self.viewports.values():
            viewport.set_frame(None)

    def volume(self):
        return self._volume

    def set_inverted(self, inverted: bool) -> None:
        self._inverted = inverted
        for viewport in self.viewports.values():
            viewport.set_inverted(inverted)

    def set_window(self, center: float, width: float) -> None:
        for viewport in self.viewports.values():
            viewport.set_window(center, width)

    def window(self) -> tuple[float, float]:
        return self.viewports["axial"].window()

    def set_slab(self, mode: str | None, thickness: int = 10) -> None:
        """MIP ("mip"), MinIP ("minip"), mean ("mean") over ``thickness`` planes, or None."""
        self.slab_thickness.setValue(thickness)
        self.slab_mode.setCurrentIndex([m for _label, m in SLAB_MODES].index(mode))

    def _plane_pixels(self, plane: str, index: int):
        mode = self.slab_mode.currentData()
        if mode and hasattr(self._volume, "plane_slab"):
            return self._volume.plane_slab(plane, index, self.slab_thickness.value(), mode)
        return self._volume.plane_image(plane, index)

    def voxel(self) -> tuple[float, float, float]:
        return self._voxel

    def plane_index(self, plane: str) -> int:
        return self._indices[plane]

    def _refresh(self, reset: bool = False, force: bool = False) -> None:
        if self._volume is None:
            return
        mode = self.slab_mode.currentData()
        slab = f"{self.slab_mode.currentText().split(' ')[0]} slab {self.slab_thickness.value()} planes" if mode else ""
        for plane, viewport in self.viewports.items():
            index, col, row = self._volume.voxel_to_plane(plane, self._voxel)
            index = int(round(min(max(index, 0), self._volume.plane_count(plane) - 1)))
            if reset or force or index != self._indices[plane] or viewport.frame() is None:
                pixels, spacing = self._plane_pixels(plane, index)
                window = viewport.window() if not reset else self._window
                edges = getattr(self._volume, "plane_edge_letters", None)
                info = FrameInfo(pixel_spacing=spacing, invert=self._invert, units=self._units, default_window=window,
                                 corners={"top_left": [plane.title()] + ([slab] if slab else []),
                                          "top_right": [f"{index + 1} / {self._volume.plane_count(plane)}"]},
                                 edges=edges(plane) if edges else None)
                viewport.set_frame(pixels, info, keep_view=not reset)
                viewport.set_inverted(self._inverted)
                if not reset:
                    viewport.set_corner_text(info.corners)
            self._indices[plane] = index
            viewport.set_crosshair((col, row))

    def _on_crosshair(self, plane: str, col: float, row: float) -> None:
        if self._volume is None:
            return
        self._voxel = tuple(self._volume.plane_to_voxel(plane, self._indices[plane], col, row))
        self._refresh()

    def _step(self, plane: str, step: int) -> None:
        if self._volume is None:
            return
        index = min(max(self._indices[plane] + step, 0), self._volume.plane_count(plane) - 1)
        _, col, row = self._volume.voxel_to_plane(plane, self._voxel)
        self._voxel = tuple(self._volume.plane_to_voxel(plane, index, col, row))
        self._refresh()

    def _sync_window(self, center: float, width: float) -> None:
        for viewport in self.viewports.values():
            if viewport.window() != (center, width):
                viewport.set_window(center, width)
        self.window_changed.emit(center, width)
