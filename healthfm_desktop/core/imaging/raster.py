"""The raster operations the imaging AI needs (resize, grey, Sobel, JET, shift, outline, ellipse fit),
in numpy with OpenCV's conventions, so validated results stay the same without bundling OpenCV."""

from __future__ import annotations

import io
import math

import numpy as np

INTERPOLATIONS = ("area", "linear", "nearest")
_COEF_BITS = 11  # OpenCV's fixed-point resize weights for 8-bit images: 1.0 == 2048
_ONE = 1 << _COEF_BITS


# --------------------------------------------------------------------------------------------
# resize


def resize(image: np.ndarray, size_wh: tuple[int, int], interpolation: str = "linear") -> np.ndarray:
    """``cv2.resize(image, (width, height), interpolation=INTER_<NAME>)`` for uint8 and float
    images of one or more channels: pixel centres at half pixels, borders replicated; 8-bit
    linear weights in 11-bit fixed point and 2x2 area means rounded half up, as OpenCV does."""
    image = np.asarray(image)
    width, height = int(size_wh[0]), int(size_wh[1])
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}")
    if width < 1 or height < 1 or image.ndim not in (2, 3) or 0 in image.shape[:2]:
        raise ValueError(f"cannot resize a {image.shape} image to {width}x{height}")
    src_h, src_w = image.shape[:2]
    if (src_h, src_w) == (height, width):
        return image.copy()
    scale_x, scale_y = 1.0 / (width / src_w), 1.0 / (height / src_h)  # OpenCV's rounding
    int_x, int_y = int(round(scale_x)), int(round(scale_y))
    area_fast = abs(scale_x - int_x) < 2.2e-16 and abs(scale_y - int_y) < 2.2e-16
    if interpolation == "linear" and area_fast and int_x == 2 and int_y == 2:
        interpolation = "area"  # OpenCV takes the exact 2x2 mean for a 2x linear shrink
    if interpolation == "nearest":
        rows = np.minimum(np.floor(np.arange(height) * scale_y).astype(np.int64), src_h - 1)
        cols = np.minimum(np.floor(np.arange(width) * scale_x).astype(np.int64), src_w - 1)
        return image[rows][:, cols]
    if interpolation == "area" and scale_x >= 1 and scale_y >= 1:
        if area_fast and image.dtype == np.uint8:
            return _area_integer(image, int_x, int_y)
        return _area(image, width, height, scale_x, scale_y)
    return _linear(image, width, height, scale_x, scale_y, area_up=interpolation == "area")


def _area_integer(image: np.ndarray, fx: int, fy: int) -> np.ndarray:
    height, width = image.shape[0] // fy, image.shape[1] // fx
    blocks = image[: height * fy, : width * fx].astype(np.int64)
    blocks = blocks.reshape(height, fy, width, fx, *image.shape[2:]).sum(axis=(1, 3))
    area = fx * fy
    if area == 4:
        out = (blocks + 2) >> 2
    else:
        out = np.rint(blocks.astype(np.float32) * np.float32(1.0 / area))
    return np.clip(out, 0, 255).astype(np.uint8)


def _area_taps(src: int, dst: int, scale: float) -> list[tuple[int, int, float]]:
    """(output index, source index, weight) of every source pixel an output cell covers, in
    OpenCV's order and float32 weights (whole pixels at 1/cell, the partial ends pro rata)."""
    taps = []
    for d in range(dst):
        start = d * scale
        end = start + scale
        cell = min(scale, src - start)
        first = math.ceil(start)
        last = min(math.floor(end), src - 1)
        first = min(first, last)
        if first - start > 1e-3:
            taps.append((d, first - 1, float(np.float32((first - start) / cell))))
        taps.extend((d, s, float(np.float32(1.0 / cell))) for s in range(first, last))
        if end - last > 1e-3:
            taps.append((d, last, float(np.float32(min(min(end - last, 1.0), cell) / cell))))
    return taps


def _area(image: np.ndarray, width: int, height: int, scale_x: float, scale_y: float) -> np.ndarray:
    """Area averaging with float32 sums in OpenCV's order (so 8-bit results round alike)."""
    src = image.astype(np.float32) if image.dtype != np.float64 else image
    columns = _area_taps(image.shape[1], width, scale_x)
    # horizontal: each output column adds its taps one after the other
    by_column: dict[int, list[tuple[int, float]]] = {}
    for d, s, w in columns:
        by_column.setdefault(d, []).append((s, w))
    depth = max(len(v) for v in by_column.values())
    index = np.zeros((depth, width), dtype=np.int64)
    weight = np.zeros((depth, width), dtype=src.dtype)
    for d, taps in by_column.items():
        for k, (s, w) in enumerate(taps):
            index[k, d], weight[k, d] = s, w
    extra = (1,) * (image.ndim - 2)
    rows = np.zeros((image.shape[0], width, *image.shape[2:]), dtype=src.dtype)
    for k in range(depth):
        rows += src[:, index[k]] * weight[k].reshape(1, -1, *extra)
    out = np.zeros((height, width, *image.shape[2:]), dtype=src.dtype)
    started = np.zeros(height, dtype=bool)
    for d, s, w in _area_taps(image.shape[0], height, scale_y):
        term = np.asarray(w, dtype=src.dtype) * rows[s]
        out[d] = out[d] + term if started[d] else term
        started[d] = True
    return _cast_like(out, image.dtype)


def _linear_taps(src: int, dst: int, scale: float, area_up: bool, clamp: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per output index: the left source index and the weight of its right neighbour (float32).
    Columns outside the image take the edge pixel whole; rows keep their weights (``clamp``
    False) and read the edge row twice, as OpenCV does."""
    index = np.arange(dst)
    if area_up:  # OpenCV's INTER_AREA when enlarging: linear with weights that keep cells whole
        left = np.floor(index * scale).astype(np.int64)
        frac = ((index + 1) - (left + 1) * (1.0 / scale)).astype(np.float32)
        frac = np.where(frac <= 0, np.float32(0), frac - np.floor(frac)).astype(np.float32)
    else:
        pos = ((index + 0.5) * scale - 0.5).astype(np.float32)
        left = np.floor(pos).astype(np.int64)
        frac = (pos - left).astype(np.float32)
    if not clamp:
        return left, frac
    frac = np.where(left < 0, np.float32(0), frac)
    left = np.maximum(left, 0)
    frac = np.where(left >= src - 1, np.float32(0), frac)
    left = np.minimum(left, src - 1)
    return left, frac


def _linear(image: np.ndarray, width: int, height: int, scale_x: float, scale_y: float, area_up: bool) -> np.ndarray:
    x0, ax = _linear_taps(image.shape[1], width, scale_x, area_up)
    y0, ay = _linear_taps(image.shape[0], height, scale_y, area_up, clamp=False)
    x1 = np.minimum(x0 + 1, image.shape[1] - 1)
    y0, y1 = np.clip(y0, 0, image.shape[0] - 1), np.clip(y0 + 1, 0, image.shape[0] - 1)
    extra = (1,) * (image.ndim - 2)
    if image.dtype == np.uint8:
        cx0, cx1 = _fixed(1 - ax), _fixed(ax)
        cy0, cy1 = _fixed(1 - ay), _fixed(ay)
        src = image.astype(np.int64)
        cx0, cx1 = cx0.reshape(1, -1, *extra), cx1.reshape(1, -1, *extra)
        rows = src[:, x0] * cx0 + src[:, x1] * cx1  # horizontal pass, scaled by 2048
        s0, s1 = rows[y0] >> 4, rows[y1] >> 4
        b0, b1 = cy0.reshape(-1, 1, *extra), cy1.reshape(-1, 1, *extra)
        out = (((b0 * s0) >> 16) + ((b1 * s1) >> 16) + 2) >> 2
        return np.clip(out, 0, 255).astype(np.uint8)
    work = np.float64 if image.dtype == np.float64 else np.float32
    src = image.astype(work)
    ax_, ay_ = ax.astype(work).reshape(1, -1, *extra), ay.astype(work).reshape(-1, 1, *extra)
    rows = src[:, x0] * (1 - ax_) + src[:, x1] * ax_
    out = rows[y0] * (1 - ay_) + rows[y1] * ay_
    return _cast_like(out, image.dtype)


def _fixed(weight: np.ndarray) -> np.ndarray:
    return np.rint(weight.astype(np.float32) * np.float32(_ONE)).astype(np.int64)


def _cast_like(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


# --------------------------------------------------------------------------------------------
# colour, gradients, shifts


def rgb_to_grey(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> uint8 (H, W) luma (BT.601 weights in 15-bit fixed point, as OpenCV)."""
    pixels = np.asarray(rgb)[..., :3].astype(np.int64)
    luma = (pixels[..., 0] * 9798 + pixels[..., 1] * 19235 + pixels[..., 2] * 3735 + (1 << 14)) >> 15
    return luma.astype(np.uint8)


def jet(values_uint8: np.ndarray) -> np.ndarray:
    """uint8 (...) -> uint8 (..., 3) RGB in the JET colour map (blue, cyan, yellow, red)."""
    return _JET_LUT[np.asarray(values_uint8, dtype=np.uint8)]


def _jet_lut() -> np.ndarray:
    # 255 * clip(1.5 - |4x - centre|) at x = i / 255, in halves exactly; halves round to even
    i = np.arange(256, dtype=np.float64)
    channels = [np.clip(382.5 - np.abs(4 * i - 255 * centre), 0, 255) for centre in (3, 2, 1)]
    return np.rint(np.stack(channels, axis=1)).astype(np.uint8)


_JET_LUT = _jet_lut()


def sobel(image: np.ndarray, axis: int) -> np.ndarray:
    """3x3 Sobel derivative of a float image along ``axis`` (1: x, 0: y), borders reflected
    without repeating the edge pixel (OpenCV's default)."""
    from scipy import ndimage

    image = np.asarray(image, dtype=np.float32)
    derivative = ndimage.correlate1d(image, np.array([-1, 0, 1], dtype=np.float32), axis=axis, mode="mirror")
    return ndimage.correlate1d(derivative, np.array([1, 2, 1], dtype=np.float32), axis=1 - axis, mode="mirror")


def shift_linear(plane: np.ndarray, dy: float, dx: float, fill: float) -> np.ndarray:
    """float32 plane moved by (dy, dx) pixels, bilinear (fractions in 1/32 pixel steps, as
    OpenCV's warpAffine), what comes in from outside set to ``fill``."""
    plane = np.asarray(plane, dtype=np.float32)
    rows, cols = plane.shape
    # source position = destination - shift, in 1/1024 then rounded to 1/32 pixel (OpenCV)
    qy, qx = (round(-dy * 1024) + 16) >> 5, (round(-dx * 1024) + 16) >> 5
    iy, ix = qy >> 5, qx >> 5
    fy, fx = np.float32((qy & 31) / 32), np.float32((qx & 31) / 32)
    pad = max(abs(iy), abs(ix)) + 2
    padded = np.pad(plane, pad, mode="constant", constant_values=np.float32(fill))
    top, left = pad + iy, pad + ix
    a = padded[top:top + rows, left:left + cols]
    b = padded[top:top + rows, left + 1:left + 1 + cols]
    c = padded[top + 1:top + 1 + rows, left:left + cols]
    d = padded[top + 1:top + 1 + rows, left + 1:left + 1 + cols]
    one = np.float32(1)
    return (a * (one - fx) + b * fx) * (one - fy) + (c * (one - fx) + d * fx) * fy


def png_bytes(rgb_or_grey: np.ndarray) -> bytes:
    """A uint8 grey or RGB array as PNG file bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb_or_grey, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# regions, outlines, ellipses

# Moore neighbourhood in image coordinates (row, col), clockwise on screen starting east
_NEIGHBOURS = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))


def largest_filled_region(mask: np.ndarray) -> np.ndarray:
    """uint8 mask of the largest 8-connected foreground region (by the area its outline
    encloses, then by outline length), holes filled."""
    from scipy import ndimage

    binary = np.asarray(mask) > 0
    labels, count = ndimage.label(binary, structure=np.ones((3, 3), dtype=bool))
    filled = np.zeros(binary.shape, dtype=np.uint8)
    if count == 0:
        return filled
    boxes = ndimage.find_objects(labels)
    # the outline's area cannot exceed its box's (between pixel centres): trace largest boxes
    # first and stop once no box left could beat the best outline
    bound = [((b[0].stop - b[0].start - 1) * (b[1].stop - b[1].start - 1), i) for i, b in enumerate(boxes, start=1)]
    best_key, best = None, None
    for limit, index in sorted(bound, reverse=True):
        if best_key is not None and limit < best_key[0]:
            break
        box = boxes[index - 1]
        region = np.pad(labels[box] == index, 1)
        outline = trace_outline(region)
        key = (polygon_area(outline), _corner_count(outline))
        if best_key is None or key > best_key:
            best_key, best = key, (box, region)
    box, region = best
    solid = ndimage.binary_fill_holes(region)[1:-1, 1:-1]
    filled[box][solid] = 1
    return filled


def trace_outline(region: np.ndarray) -> np.ndarray:
    """(N, 2) x/y points of the outer border of the first region met in raster order, each
    border pixel as often as the border passes it (Suzuki-Abe border following, 8-connected,
    as OpenCV's findContours with CHAIN_APPROX_NONE lists them)."""
    region = np.pad(np.asarray(region) > 0, 1)
    found = np.flatnonzero(region)
    if found.size == 0:
        return np.zeros((0, 2), dtype=np.int32)
    start = divmod(int(found[0]), region.shape[1])
    # first neighbour clockwise from the west (a background pixel) that is foreground
    first = None
    for step in range(8):
        dr, dc = _NEIGHBOURS[(4 + step) % 8]
        if region[start[0] + dr, start[1] + dc]:
            first = (start[0] + dr, start[1] + dc)
            break
    if first is None:
        return np.array([[start[1] - 1, start[0] - 1]], dtype=np.int32)
    points = []
    previous, current = first, start
    while True:
        back = _NEIGHBOURS.index((previous[0] - current[0], previous[1] - current[1]))
        for step in range(1, 9):  # counter-clockwise from the one after the pixel we came from
            dr, dc = _NEIGHBOURS[(back - step) % 8]
            if region[current[0] + dr, current[1] + dc]:
                following = (current[0] + dr, current[1] + dc)
                break
        points.append((current[1] - 1, current[0] - 1))
        if following == start and current == first:
            break
        previous, current = current, following
    return np.asarray(points, dtype=np.int32)


def _corner_count(outline: np.ndarray) -> int:
    """How many points the outline keeps when straight runs are merged (CHAIN_APPROX_SIMPLE)."""
    if len(outline) < 3:
        return len(outline)
    steps = np.diff(np.vstack([outline, outline[:1]]), axis=0)
    return int(np.any(steps != np.roll(steps, 1, axis=0), axis=1).sum())


def polygon_area(points_xy: np.ndarray) -> float:
    """Area enclosed by a closed polygon (shoelace), as OpenCV's contourArea."""
    points = np.asarray(points_xy, dtype=np.float64)
    if len(points) < 3:
        return 0.0
    x, y = points[:, 0], points[:, 1]
    return abs(float(np.dot(np.roll(x, 1), y) - np.dot(np.roll(y, 1), x))) / 2


def fit_ellipse(points_xy: np.ndarray) -> tuple[tuple[float, float], tuple[float, float], float]:
    """Least-squares ellipse through >= 5 points, as ``cv2.fitEllipse``: ((cx, cy), (width,
    height), angle in degrees), width <= height. A general conic fitted in centred, scaled
    coordinates, then the centre, then the axes about that centre."""
    points = np.asarray(points_xy, dtype=np.float32).reshape(-1, 2)
    if len(points) < 5:
        raise ValueError("an ellipse needs at least 5 points")
    centre = points.astype(np.float64).mean(axis=0).astype(np.float32)
    offsets = (points - centre).astype(np.float64)
    spread = float(np.abs(offsets).sum())
    scale = 100.0 / (spread if spread > np.finfo(np.float32).eps else np.finfo(np.float32).eps)
    x, y = offsets[:, 0] * scale, offsets[:, 1] * scale
    design = np.stack([-x * x, -y * y, -x * y, x, y], axis=1)
    conic = np.linalg.lstsq(design, np.full(len(x), 10000.0), rcond=None)[0]
    centre_eq = np.array([[2 * conic[0], conic[2]], [conic[2], 2 * conic[1]]])
    cx, cy = np.linalg.lstsq(centre_eq, conic[3:5], rcond=None)[0]
    design = np.stack([(x - cx) ** 2, (y - cy) ** 2, (x - cx) * (y - cy)], axis=1)
    a, b, c = np.linalg.lstsq(design, np.ones(len(x)), rcond=None)[0]
    angle = -0.5 * math.atan2(c, b - a)
    t = c / math.sin(-2.0 * angle) if abs(c) > 1e-8 else b - a
    radii = []
    for value in (abs(a + b - t), abs(a + b + t)):
        radii.append(math.sqrt(2.0 / value) if value > 1e-8 else value)
    centre_x = float(np.float32(cx / scale) + centre[0])
    centre_y = float(np.float32(cy / scale) + centre[1])
    width, height = float(np.float32(radii[0] * 2 / scale)), float(np.float32(radii[1] * 2 / scale))
    degrees = 0.0
    if width > height:
        width, height = height, width
        degrees = 90 + angle * 180 / math.pi
    if degrees < -180:
        degrees += 360
    if degrees > 360:
        degrees -= 360
    return (centre_x, centre_y), (width, height), float(np.float32(degrees))
