"""Multiplanar reformatting: a volume from a series of parallel slices (int16 where the values
allow, so memory stays near the int16 volume size), and axial / coronal / sagittal planes in
patient orientation with their physical pixel spacing. Uneven slice spacing (a missing slice)
is resampled onto an even grid and a gantry tilt (a sheared stack) is corrected by shifting
each slice in-plane; both are reported in ``Volume.notes``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from healthfm_desktop.core.errors import UserFacingError
from healthfm_desktop.core.imaging.series import Series
from healthfm_desktop.core.imaging.orientation import edge_letters

PLANES = ("axial", "coronal", "sagittal")

# For each plane: (index axis, row axis, column axis) as (patient axis 0=x/L 1=y/P 2=z/S, sign).
# Axial: rows anterior->posterior, columns right->left (radiological convention), index
# inferior->superior. Coronal and sagittal: superior at the top.
_PLANE_AXES = {
    "axial": ((2, +1), (1, +1), (0, +1)),
    "coronal": ((1, +1), (2, -1), (0, +1)),
    "sagittal": ((0, +1), (2, -1), (1, +1)),
}
UNEVEN_TOLERANCE = 0.01  # relative spread of slice gaps tolerated as "even"
TILT_TOLERANCE_DEG = 0.5


class MprError(UserFacingError):
    """The series cannot be reformatted (too few slices, no geometry, colour...)."""


@dataclass
class Volume:
    """Voxels ``data[slice, row, column]`` of one stack; value = data * scale + offset.

    ``spacing`` is (slice, row, column) in mm; ``axis_directions`` the unit vector (LPS) along
    which each volume axis increases. Implements the interface the MPR view uses.
    """

    data: np.ndarray
    spacing: tuple[float, float, float]
    axis_directions: np.ndarray  # 3 x 3, row a = direction of volume axis a
    scale: float = 1.0
    offset: float = 0.0
    origin: tuple[float, float, float] | None = None
    notes: list[str] = field(default_factory=list)
    planes: tuple[str, ...] = PLANES

    def __post_init__(self) -> None:
        self._mapping = _axis_mapping(self.axis_directions)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]

    @property
    def nbytes(self) -> int:
        return self.data.nbytes

    def _plane_spec(self, plane: str) -> list[tuple[int, bool]]:
        """For (index, row, column) of the plane image: (volume axis, flipped?)."""
        if plane not in _PLANE_AXES:
            raise MprError(f"unknown plane {plane!r} (axial, coronal or sagittal)")
        spec = []
        for patient_axis, sign in _PLANE_AXES[plane]:
            volume_axis, volume_sign = self._mapping[patient_axis]
            spec.append((volume_axis, volume_sign != sign))
        return spec

    def plane_count(self, plane: str) -> int:
        return self.data.shape[self._plane_spec(plane)[0][0]]

    def plane_spacing(self, plane: str) -> tuple[float, float]:
        spec = self._plane_spec(plane)
        return (self.spacing[spec[1][0]], self.spacing[spec[2][0]])

    def plane_image(self, plane: str, index: int) -> tuple[np.ndarray, tuple[float, float]]:
        """The plane's image (float32 modality values) and its (row, column) spacing in mm."""
        spec = self._plane_spec(plane)
        ia, iflip = spec[0]
        count = self.data.shape[ia]
        if not 0 <= index < count:
            raise MprError(f"{plane} index {index} out of range (0-{count - 1})")
        k = count - 1 - index if iflip else index
        return self._as_plane(np.take(self.data, k, axis=ia), spec)

    def _as_plane(self, view: np.ndarray, spec: list[tuple[int, bool]]) -> tuple[np.ndarray, tuple[float, float]]:
        """Stored values across the index axis of ``spec`` -> the plane's float32 modality
        image (rows and columns oriented) and its (row, column) spacing."""
        (ia, _), (ra, rflip), (ca, cflip) = spec
        # remaining axes of `view` keep their relative order: map them to (row, column)
        remaining = [a for a in range(3) if a != ia]
        if remaining.index(ra) == 1:
            view = view.T
        if rflip:
            view = view[::-1, :]
        if cflip:
            view = view[:, ::-1]
        image = np.ascontiguousarray(view, dtype=np.float32)
        if self.scale != 1.0:
            image *= np.float32(self.scale)
        if self.offset != 0.0:
            image += np.float32(self.offset)
        return image, (self.spacing[ra], self.spacing[ca])

    def plane_directions(self, plane: str) -> tuple[np.ndarray, np.ndarray]:
        """(right, down): the LPS directions in which the plane image's columns and rows
        increase (for its orientation letters)."""
        (_ia, _), (ra, rflip), (ca, cflip) = self._plane_spec(plane)
        down = self.axis_directions[ra] * (-1.0 if rflip else 1.0)
        right = self.axis_directions[ca] * (-1.0 if cflip else 1.0)
        return np.asarray(right, dtype=float), np.asarray(down, dtype=float)

    def plane_edge_letters(self, plane: str) -> dict[str, str]:
        """Orientation letters at the plane image's four edges."""
        return edge_letters(*self.plane_directions(plane))

    def plane_slab(self, plane: str, index: int, thickness: int, mode: str) -> tuple[np.ndarray, tuple[float, float]]:
        """A slab of ``thickness`` planes centred on ``index`` projected by ``mode`` ("mip":
        maximum, "minip": minimum, "mean"); thickness 1 is plane_image itself. One numpy
        reduction over the stored voxels (no copy per plane): a 200-plane slab of a 512 x 512
        stack stays within a UI frame."""
        if mode not in ("mip", "minip", "mean"):
            raise MprError(f"unknown slab projection {mode!r} (mip, minip or mean)")
        count = self.plane_count(plane)
        if thickness <= 1:
            return self.plane_image(plane, index)
        first = max(0, index - (thickness - 1) // 2)
        last = min(count - 1, first + thickness - 1)
        spec = self._plane_spec(plane)
        ia, iflip = spec[0]
        low, high = (count - 1 - last, count - 1 - first) if iflip else (first, last)
        block = self.data[tuple(slice(low, high + 1) if axis == ia else slice(None) for axis in range(3))]
        if mode == "mean":
            reduced = block.mean(axis=ia, dtype=np.float64)
        else:  # a negative rescale slope turns the largest stored value into the smallest
            largest = (mode == "mip") == (self.scale >= 0)
            reduced = block.max(axis=ia) if largest else block.min(axis=ia)
        return self._as_plane(reduced, spec)

    def voxel_to_plane(self, plane: str, voxel: Sequence[float]) -> tuple[float, float, float]:
        """Voxel (slice, row, column) -> (plane index, image column, image row)."""
        out = []
        for axis, flipped in self._plane_spec(plane):
            n = self.data.shape[axis]
            out.append((n - 1 - voxel[axis]) if flipped else float(voxel[axis]))
        index, row, col = out
        return index, col, row

    def plane_to_voxel(self, plane: str, index: float, col: float, row: float) -> tuple[float, float, float]:
        voxel = [0.0, 0.0, 0.0]
        for value, (axis, flipped) in zip((index, row, col), self._plane_spec(plane)):
            n = self.data.shape[axis]
            voxel[axis] = (n - 1 - value) if flipped else float(value)
        return tuple(voxel)  # type: ignore[return-value]


def _axis_mapping(directions: np.ndarray) -> dict[int, tuple[int, int]]:
    """Patient axis -> (volume axis, sign): each volume axis goes to the patient axis it is
    most aligned with (greedy on the largest cosine, so oblique stacks still map one-to-one)."""
    cos = np.abs(directions)
    mapping: dict[int, tuple[int, int]] = {}
    used_volume: set[int] = set()
    for flat in np.argsort(-cos, axis=None):
        volume_axis, patient_axis = divmod(int(flat), 3)
        if volume_axis in used_volume or patient_axis in mapping:
            continue
        sign = 1 if directions[volume_axis, patient_axis] >= 0 else -1
        mapping[patient_axis] = (volume_axis, sign)
        used_volume.add(volume_axis)
    return mapping


@dataclass
class _Geometry:
    directions: np.ndarray
    spacing: tuple[float, float, float]
    notes: list[str]
    origin: tuple[float, float, float]
    shifts: np.ndarray | None  # per-slice in-plane (rows, columns) shift undoing a gantry tilt
    projected: np.ndarray  # slice positions along the normal (mm)
    resample_at: np.ndarray | None  # even positions to resample to, when the spacing is uneven


def _geometry(series: Series) -> "_Geometry":
    frames = series.frames
    if len(frames) < 3:
        raise MprError(f"MPR needs at least 3 slices; this series has {len(frames)}")
    if series.is_colour:
        raise MprError("MPR is for grey-scale volumes; this series is colour")
    first = frames[0]
    if first.orientation is None or any(f.position is None for f in frames):
        raise MprError("MPR needs Image Position/Orientation (Patient) on every slice; this series lacks them")
    normal = first.normal
    positions = np.array([f.position for f in frames], dtype=np.float64)
    projected = positions @ normal
    gaps = np.diff(projected)
    notes: list[str] = []
    if np.any(gaps <= 1e-4):
        raise MprError("MPR needs one slice per position; this series repeats positions (time series or echoes)")
    mean_gap = float(np.mean(gaps))
    spread = float(gaps.max() - gaps.min())
    resample_at = None
    if spread > UNEVEN_TOLERANCE * mean_gap and spread > 0.01:
        # resample onto an even grid at the usual (median) gap, by linear interpolation between
        # the two nearest acquired slices, so reformats keep their physical aspect
        step = float(np.median(gaps))
        count = int(np.floor((projected[-1] - projected[0]) / step + 1e-6)) + 1
        if count > 4 * len(frames):
            raise MprError("slice positions are too irregular to reformat")
        resample_at = projected[0] + step * np.arange(count)
        notes.append(
            f"uneven slice spacing ({gaps.min():.2f} to {gaps.max():.2f} mm): resampled to {count} slices "
            f"every {step:.2f} mm (interpolated where slices are missing)"
        )
        mean_gap = step
    row_dir = np.array(first.orientation[:3])
    col_dir = np.array(first.orientation[3:])
    displacement = positions[-1] - positions[0]
    tilt = float(np.degrees(np.arccos(np.clip(abs(displacement @ normal) / np.linalg.norm(displacement), -1, 1))))
    shifts = None
    if tilt > TILT_TOLERANCE_DEG:
        spacing_now = series.pixel_spacing or (1.0, 1.0)
        in_plane = (positions - positions[0]) - np.outer(projected - projected[0], normal)
        # per slice (rows, columns) to move it back over slice 0: the stack becomes orthogonal
        shifts = np.stack([in_plane @ col_dir / spacing_now[0], in_plane @ row_dir / spacing_now[1]], axis=1)
        largest = float(np.abs(in_plane).max())
        notes.append(
            f"gantry tilt / sheared stack of {tilt:.1f}°: slices shifted in-plane (up to {largest:.1f} mm) "
            "so coronal and sagittal reformats are not sheared"
        )
    directions = np.vstack([normal, col_dir, row_dir])
    if np.max(np.abs(directions), axis=1).min() < 0.9:
        notes.append("oblique acquisition: planes follow the nearest volume axes, not true anatomical planes")
    spacing = series.pixel_spacing
    if spacing is None:
        notes.append("no pixel spacing in the file: 1 mm assumed in-plane")
        spacing = (1.0, 1.0)
    geometry = _Geometry(directions, (mean_gap, float(spacing[0]), float(spacing[1])), notes, tuple(positions[0]),
                         shifts, projected, resample_at)
    return geometry


def _correct_tilt(data: np.ndarray, shifts: np.ndarray | None) -> None:
    """Shift each slice in place by its (rows, columns) offset (linear interpolation; the
    uncovered edge takes the slice's minimum, i.e. air)."""
    if shifts is None:
        return
    from healthfm_desktop.core.imaging.raster import shift_linear

    for k in range(data.shape[0]):
        dy, dx = shifts[k]
        if abs(dy) < 1e-3 and abs(dx) < 1e-3:
            continue
        plane = data[k].astype(np.float32)
        moved = shift_linear(plane, dy, dx, fill=float(plane.min()))
        data[k] = np.rint(moved) if data.dtype.kind in "iu" else moved


def _resample_even(data: np.ndarray, geometry: "_Geometry") -> np.ndarray:
    """Slices at ``geometry.resample_at`` interpolated linearly from the acquired ones."""
    if geometry.resample_at is None:
        return data
    positions = geometry.projected - geometry.projected[0]
    targets = geometry.resample_at - geometry.projected[0]
    out = np.empty((len(targets),) + data.shape[1:], dtype=data.dtype)
    upper = np.clip(np.searchsorted(positions, targets - 1e-6), 1, len(positions) - 1)
    for j, (t, k) in enumerate(zip(targets, upper)):
        p0, p1 = positions[k - 1], positions[k]
        w = float(np.clip((t - p0) / (p1 - p0), 0.0, 1.0))
        if w < 1e-6:
            out[j] = data[k - 1]
        elif w > 1 - 1e-6:
            out[j] = data[k]
        else:
            blended = data[k - 1].astype(np.float32) * (1 - w) + data[k].astype(np.float32) * w
            out[j] = np.rint(blended) if data.dtype.kind in "iu" else blended
    return out


def _fits_int16(lo: float, hi: float) -> bool:
    return -32768 <= lo and hi <= 32767


def build_volume(series: Series, slices: Sequence[np.ndarray] | None = None, *, workers: int | None = None, cancel=None) -> Volume:
    """A ``Volume`` from a consistent stack.

    With ``slices`` (modality values already decoded, display order) they are packed to int16
    when integral and in range, else kept as float32. Without, frames are decoded here straight
    into a preallocated int16 array of stored values with one shared rescale, so peak memory
    is about the int16 volume plus a few frames in flight.
    """
    geometry = _geometry(series)
    directions, spacing, notes, origin, shifts = (
        geometry.directions, geometry.spacing, geometry.notes, geometry.origin, geometry.shifts,
    )
    n, rows, cols = len(series.frames), series.rows, series.columns
    if slices is not None:
        if len(slices) != n:
            raise MprError(f"expected {n} slices, got {len(slices)}")
        lo = min(float(np.min(s)) for s in slices)
        hi = max(float(np.max(s)) for s in slices)
        integral = all(np.array_equal(s, np.round(s)) for s in slices[:: max(1, n // 8)])
        dtype = np.int16 if integral and _fits_int16(lo, hi) else np.float32
        data = np.empty((n, rows, cols), dtype=dtype)
        for k, s in enumerate(slices):
            data[k] = s
        _correct_tilt(data, shifts)
        data = _resample_even(data, geometry)
        return Volume(data, spacing, directions, origin=origin, notes=notes)

    transforms = [f.modality_transform for f in series.frames]
    uniform = all(t.lut_dataset is None for t in transforms) and len({(t.slope, t.intercept) for t in transforms}) == 1
    instance = series.first
    stored_fits = instance.bits_allocated <= 16 and (instance.pixel_representation == 1 or instance.bits_stored <= 15)
    if uniform and stored_fits:
        data = np.empty((n, rows, cols), dtype=np.int16)
        for index, stored in series.iter_frames(stored=True, workers=workers, cancel=cancel):
            data[index] = stored
        if cancel is not None and cancel():
            raise MprError("MPR cancelled")
        _correct_tilt(data, shifts)
        data = _resample_even(data, geometry)
        return Volume(data, spacing, directions, scale=transforms[0].slope, offset=transforms[0].intercept, origin=origin, notes=notes)
    data = np.empty((n, rows, cols), dtype=np.float32)
    for index, values in series.iter_frames(workers=workers, cancel=cancel):
        data[index] = values
    if cancel is not None and cancel():
        raise MprError("MPR cancelled")
    _correct_tilt(data, shifts)
    data = _resample_even(data, geometry)
    notes.append("values kept as float32 (per-slice rescale or LUT)")
    return Volume(data, spacing, directions, origin=origin, notes=notes)


def square_pixels(image: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    """Resample a plane image so one pixel is square (the smaller spacing), for export."""
    from healthfm_desktop.core.imaging.raster import resize

    row_mm, col_mm = spacing
    target = min(row_mm, col_mm)
    height = max(1, int(round(image.shape[0] * row_mm / target)))
    width = max(1, int(round(image.shape[1] * col_mm / target)))
    if (height, width) == image.shape[:2]:
        return image
    return resize(image, (width, height), "linear")
