"""The MPR view: axial, coronal and sagittal reformats of one volume with a linked cross-hair.
Clicking or dragging in one plane moves the other two to that point; the wheel pages through
a plane. Each plane is drawn with its physical pixel spacing, so the aspect is correct.

The volume is any object with ``shape`` (slices, rows, columns), ``planes`` (names),
``plane_count(plane)``, ``plane_image(plane, index) -> (pixels, (row_mm, col_mm))``,
``voxel_to_plane(plane, voxel) -> (index, col, row)`` and
``plane_to_voxel(plane, index, col, row) -> voxel`` (voxel = (slice, row, column) floats);
the controller builds it from the core's reformatting."""

from __future__ import annotations

from PySide6.QtWidgets import QGridLayout, QLabel, QWidget

from healthfm_desktop.views.image_viewer.rendering import WindowRenderer
from healthfm_desktop.views.image_viewer.viewport import FrameInfo, ImageViewport

PLANES = ("axial", "coronal", "sagittal")


class MprView(QWidget):
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
        grid.addWidget(self.info, 1, 1)
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
                   window: tuple[float, float] | None = None, invert: bool = False, notes: list[str] | None = None) -> None:
        self._volume = volume
        self._units = units
        self._window = window
        self._invert = invert
        slices, rows, columns = volume.shape
        self._voxel = ((slices - 1) / 2.0, (rows - 1) / 2.0, (columns - 1) / 2.0)
        lines = [description, f"Volume {columns} x {rows} x {slices}"]
        spacing = getattr(volume, "spacing", None)
        if spacing:
            lines.append("Voxel {:.2f} x {:.2f} x {:.2f} mm".format(spacing[2], spacing[1], spacing[0]))
        lines += list(notes or [])
        lines.append("Click or drag to move the cross-hair; wheel pages through a plane; right-drag sets W/L.")
        self.info.setText("\n".join(line for line in lines if line))
        self._refresh(reset=True)

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

    def voxel(self) -> tuple[float, float, float]:
        return self._voxel

    def plane_index(self, plane: str) -> int:
        return self._indices[plane]

    def _refresh(self, reset: bool = False) -> None:
        if self._volume is None:
            return
        for plane, viewport in self.viewports.items():
            index, col, row = self._volume.voxel_to_plane(plane, self._voxel)
            index = int(round(min(max(index, 0), self._volume.plane_count(plane) - 1)))
            if reset or index != self._indices[plane] or viewport.frame() is None:
                pixels, spacing = self._volume.plane_image(plane, index)
                window = viewport.window() if not reset else self._window
                info = FrameInfo(pixel_spacing=spacing, invert=self._invert, units=self._units, default_window=window,
                                 corners={"top_left": [plane.title()],
                                          "top_right": [f"{index + 1} / {self._volume.plane_count(plane)}"]})
                viewport.set_frame(pixels, info, keep_view=not reset)
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
