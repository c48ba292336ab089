"""The ONE definition of how an image file becomes a model input. The training scripts import
the same functions, so a PNG, a JPEG or a DICOM file reaches the network exactly as the training
arrays did (tests/core/test_image_ai_preprocessing.py proves the tensors are identical).

Files are read into a grey-scale ``SourceImage`` (uint8 display values, like the training data),
then turned into a network tensor: the classifier takes a centre-square 28x28 crop (how MedMNIST
made PneumoniaMNIST), the segmenter a 144x208 letterbox (how the HC18 arrays were made: area
downscaling, zero padding, centred)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from healthfm_desktop.core.errors import UnreadableFileError
from healthfm_desktop.core.imaging import raster
from healthfm_desktop.core.routing import is_dicom_file

CLASSIFIER_SIZE = 28
# Mean and standard deviation of the PneumoniaMNIST training pixels (0..1 scale), rounded;
# fixed constants so that training and inference cannot drift apart.
CLASSIFIER_MEAN = 0.5719
CLASSIFIER_STD = 0.1684

SEGMENTER_HEIGHT = 144
SEGMENTER_WIDTH = 208
# Mean and standard deviation of the HC18 training pixels (0..1 scale), rounded.
SEGMENTER_MEAN = 0.1393
SEGMENTER_STD = 0.1677

MAX_PIXELS = 8192 * 8192  # refuse absurd images before allocating float copies of them


@dataclass
class SourceImage:
    """A grey-scale image as the models see it: ``pixels`` uint8 (H, W), plus what the file said."""

    pixels: np.ndarray
    path: Path | None = None
    kind: str = "array"  # "dicom", "png", "jpeg", "array"
    modality: str | None = None
    pixel_spacing_mm: tuple[float, float] | None = None  # (row spacing, column spacing)
    was_colour: bool = False  # the file had real colour (chroma), not grey stored as RGB
    dicom: object | None = field(default=None, repr=False)  # the pydicom Dataset, for SEG/SR export

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.pixels.shape[:2])  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# reading files


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Min-max stretch any numeric 2D array to 0..255 (used when there is no window)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        raise UnreadableFileError("the image has no finite pixel values")
    low, high = float(values[finite].min()), float(values[finite].max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (np.where(finite, values, low) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _colour_to_grey(rgb: np.ndarray) -> tuple[np.ndarray, bool]:
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        return rgb, False
    rgb = rgb[..., :3]
    spread = int(rgb.max(axis=-1).astype(np.int32).max() - 0) if rgb.size else 0
    chroma = np.abs(rgb.astype(np.int32) - rgb.mean(axis=-1, keepdims=True).astype(np.int32))
    was_colour = bool(spread and np.percentile(chroma.max(axis=-1), 99) > 12)
    grey = raster.rgb_to_grey(rgb.astype(np.uint8))
    return grey, was_colour


def read_raster(path: Path) -> SourceImage:
    """PNG / JPEG (8 or 16 bit, grey or colour) via Pillow."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            if image.width * image.height > MAX_PIXELS:
                raise UnreadableFileError(f"the image is too large ({image.width}x{image.height})")
            kind = "jpeg" if image.format == "JPEG" else (image.format or "raster").lower()
            if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                return SourceImage(_to_uint8(np.asarray(image)), Path(path), kind)
            if image.mode in ("L", "1"):
                return SourceImage(np.asarray(image.convert("L")), Path(path), kind)
            if image.mode == "LA":
                return SourceImage(np.asarray(image.convert("L")), Path(path), kind)
            grey, was_colour = _colour_to_grey(np.asarray(image.convert("RGB")))
            return SourceImage(grey, Path(path), kind, was_colour=was_colour)
    except UnreadableFileError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UnreadableFileError(f"not a readable PNG/JPEG image ({type(exc).__name__})") from exc


def read_dicom(path: Path) -> SourceImage:
    """A single-frame (or the first frame of a multi-frame) DICOM file as display values."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UnreadableFileError(f"cannot read the file ({exc.strerror or type(exc).__name__})") from exc
    return read_dicom_bytes(data, frame=0, path=Path(path))


def read_dicom_bytes(data: bytes, frame: int = 0, path: Path | None = None) -> SourceImage:
    with warnings.catch_warnings():  # pydicom warns about each odd value; the user gets one line
        warnings.simplefilter("ignore")
        return _read_dicom_bytes(data, frame, path)


def _read_dicom_bytes(data: bytes, frame: int = 0, path: Path | None = None) -> SourceImage:
    """One frame of a DICOM object (file bytes, or a zip member's bytes) with its modality LUT
    and default VOI window applied, MONOCHROME1 inverted, as 0..255 display values.

    Read with pydicom here (the shared DICOM reader in core/imaging indexes and decodes series
    for the viewer; the models need one frame with the file's own window, which pydicom's
    apply_modality_lut / apply_voi_lut give directly). The viewer hands us the bytes of the
    object it shows, so the app and the command line read pixels the same way."""
    import io

    import pydicom

    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:  # pydicom raises many types on corrupt input (NotImplementedError for a bad VR)
        raise UnreadableFileError(f"not a readable DICOM file ({type(exc).__name__})") from exc
    if "PixelData" not in dataset and "FloatPixelData" not in dataset:
        raise UnreadableFileError("the DICOM file has no image (no Pixel Data)")
    try:
        rows, cols = int(dataset.Rows), int(dataset.Columns)
        if rows * cols > MAX_PIXELS:
            raise UnreadableFileError(f"the image is too large ({cols}x{rows})")
        frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
        if not 0 <= frame < frames:
            raise UnreadableFileError(f"the file has no frame {frame + 1}")
        if "TransferSyntaxUID" not in getattr(dataset, "file_meta", {}):
            # no File Meta: an uncompressed dataset; use the encoding it was parsed with
            dataset.file_meta = getattr(dataset, "file_meta", None) or pydicom.dataset.FileMetaDataset()
            implicit, little = getattr(dataset, "original_encoding", (True, True))
            dataset.file_meta.TransferSyntaxUID = (
                pydicom.uid.ImplicitVRLittleEndian if implicit
                else pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian
            )
        pixels = dataset.pixel_array if frames == 1 else dataset.pixel_array[frame]
    except UnreadableFileError:
        raise
    except Exception as exc:  # pydicom raises many types for broken or undecodable pixel data
        detail = str(exc).strip().splitlines()[0][:120].rstrip(":") if str(exc).strip() else type(exc).__name__
        raise UnreadableFileError(f"the DICOM pixel data cannot be decoded ({detail})") from exc
    photometric = str(getattr(dataset, "PhotometricInterpretation", "MONOCHROME2"))
    was_colour = False
    if pixels.ndim == 3:  # colour (RGB, YBR converted by pydicom)
        grey, was_colour = _colour_to_grey(pixels if pixels.dtype == np.uint8 else _to_uint8(pixels))
        display = grey
    elif pixels.ndim == 2:
        display = _dicom_display_values(dataset, pixels)
        if photometric == "MONOCHROME1":
            display = 255 - display
    else:
        raise UnreadableFileError("the DICOM pixel data has an unexpected shape")
    spacing = None
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = getattr(dataset, keyword, None)
        try:
            if value is not None and len(value) == 2 and float(value[0]) > 0 and float(value[1]) > 0:
                spacing = (float(value[0]), float(value[1]))
                break
        except (TypeError, ValueError):
            continue
    if spacing is None:
        spacing = _functional_group_spacing(dataset, frame)
    if spacing is None:
        spacing = _ultrasound_region_spacing(dataset)
    modality = str(getattr(dataset, "Modality", "") or "") or None
    return SourceImage(np.ascontiguousarray(display), path, "dicom", modality, spacing, was_colour, dataset)


def _dicom_display_values(dataset, pixels: np.ndarray) -> np.ndarray:
    """Stored values -> 0..255 as a viewer shows them: 8-bit images without LUTs are used as
    they are (so a DICOM-wrapped training image gives the training tensor exactly); with a VOI
    window, the window maps onto 0..255; otherwise the modality values are min-max stretched."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    has_voi = "WindowCenter" in dataset or "VOILUTSequence" in dataset
    has_modality_lut = "RescaleSlope" in dataset or "RescaleIntercept" in dataset or "ModalityLUTSequence" in dataset
    if pixels.dtype == np.uint8 and not has_voi and not has_modality_lut:
        return np.ascontiguousarray(pixels)
    try:
        values = apply_modality_lut(pixels, dataset)
        if has_voi:
            windowed = apply_voi_lut(values, dataset, prefer_lut=True)
            top = float(2 ** int(getattr(dataset, "BitsStored", 8)) - 1)
            if "VOILUTSequence" not in dataset and top > 0:
                return np.clip(np.rint(np.asarray(windowed, dtype=np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
            return _to_uint8(windowed)
        return _to_uint8(values)
    except Exception:  # a broken LUT should not stop us: fall back to the stored values
        return _to_uint8(pixels)


def _functional_group_spacing(dataset, frame: int) -> tuple[float, float] | None:
    """Enhanced multi-frame objects keep PixelSpacing in the (per-frame or shared) functional
    groups' PixelMeasuresSequence."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        try:
            value = getattr(dataset, groups)[index].PixelMeasuresSequence[0].PixelSpacing
            if float(value[0]) > 0 and float(value[1]) > 0:
                return (float(value[0]), float(value[1]))
        except (AttributeError, IndexError, TypeError, ValueError, KeyError):
            continue
    return None


def _ultrasound_region_spacing(dataset) -> tuple[float, float] | None:
    """Ultrasound stores its calibration in SequenceOfUltrasoundRegions (PhysicalDelta in cm)."""
    regions = getattr(dataset, "SequenceOfUltrasoundRegions", None)
    if not regions:
        return None
    region = regions[0]
    try:
        # PhysicalUnits 3 = cm
        if int(region.PhysicalUnitsXDirection) == 3 and int(region.PhysicalUnitsYDirection) == 3:
            dx, dy = float(region.PhysicalDeltaX) * 10.0, float(region.PhysicalDeltaY) * 10.0
            if dx > 0 and dy > 0:
                return (abs(dy), abs(dx))
    except (AttributeError, TypeError, ValueError):
        return None
    return None


def read_image(path: str | Path) -> SourceImage:
    """Read a DICOM, PNG or JPEG file into a grey-scale ``SourceImage``."""
    path = Path(path)
    if not path.exists():
        raise UnreadableFileError("no such file")
    if path.is_dir():
        raise UnreadableFileError("is a folder, not an image file")
    if is_dicom_file(path) or path.suffix.lower() in (".dcm", ".dicom"):
        return read_dicom(path)
    return read_raster(path)


# --------------------------------------------------------------------------------------------
# classifier input


def centre_square(pixels: np.ndarray) -> np.ndarray:
    """The largest centred square, as MedMNIST cropped the chest X-rays before resizing."""
    height, width = pixels.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return pixels[top : top + side, left : left + side]


def resize_for_classifier(pixels: np.ndarray) -> np.ndarray:
    """uint8 (H, W) -> uint8 (28, 28): centre square, area downsampling."""
    square = centre_square(np.asarray(pixels, dtype=np.uint8))
    if square.shape == (CLASSIFIER_SIZE, CLASSIFIER_SIZE):
        return square
    interpolation = "area" if square.shape[0] > CLASSIFIER_SIZE else "linear"
    return raster.resize(square, (CLASSIFIER_SIZE, CLASSIFIER_SIZE), interpolation)


def normalise_classifier_batch(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28), the network's input scale. Training uses
    exactly this on its arrays."""
    images = np.asarray(images_uint8, dtype=np.float32) / np.float32(255.0)
    return ((images - np.float32(CLASSIFIER_MEAN)) / np.float32(CLASSIFIER_STD))[:, None, :, :].astype(np.float32)


def classifier_input(image: SourceImage | np.ndarray) -> np.ndarray:
    pixels = image.pixels if isinstance(image, SourceImage) else np.asarray(image)
    return normalise_classifier_batch(resize_for_classifier(pixels)[None])


# --------------------------------------------------------------------------------------------
# segmenter input


@dataclass(frozen=True)
class Letterbox:
    """How an (H, W) image was placed into the 144x208 network frame, so masks can go back."""

    source_shape: tuple[int, int]
    content_shape: tuple[int, int]  # (h, w) after scaling
    top: int
    left: int

    def to_source(self, network_map: np.ndarray) -> np.ndarray:
        """A float map in the network frame -> the same map at the source image's size."""
        h, w = self.content_shape
        content = network_map[self.top : self.top + h, self.left : self.left + w]
        if content.shape == self.source_shape:
            return np.ascontiguousarray(content)
        return raster.resize(np.asarray(content, dtype=np.float32), (self.source_shape[1], self.source_shape[0]), "linear")

    def to_network(self, source_map: np.ndarray) -> np.ndarray:
        """Place a source-sized uint8 map into the network frame (as the input is placed)."""
        return letterbox_pixels(source_map)[0]


def letterbox_pixels(pixels: np.ndarray) -> tuple[np.ndarray, Letterbox]:
    """uint8 (H, W) -> uint8 (144, 208): keep the aspect ratio, area-downscale to fit, pad with
    zeros, centred. An image already 144x208 is used as it is (the training arrays)."""
    pixels = np.asarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    if (height, width) == (SEGMENTER_HEIGHT, SEGMENTER_WIDTH):
        return pixels, Letterbox((height, width), (height, width), 0, 0)
    scale = min(SEGMENTER_HEIGHT / height, SEGMENTER_WIDTH / width)
    new_h = max(1, min(SEGMENTER_HEIGHT, int(round(height * scale))))
    new_w = max(1, min(SEGMENTER_WIDTH, int(round(width * scale))))
    resized = raster.resize(pixels, (new_w, new_h), "area" if scale < 1 else "linear")
    top, left = (SEGMENTER_HEIGHT - new_h) // 2, (SEGMENTER_WIDTH - new_w) // 2
    frame = np.zeros((SEGMENTER_HEIGHT, SEGMENTER_WIDTH), dtype=np.uint8)
    frame[top : top + new_h, left : left + new_w] = resized
    return frame, Letterbox((height, width), (new_h, new_w), top, left)


def normalise_segmenter_batch(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 (N, 144, 208) -> float32 (N, 1, 144, 208). Training uses exactly this."""
    images = np.asarray(images_uint8, dtype=np.float32) / np.float32(255.0)
    return ((images - np.float32(SEGMENTER_MEAN)) / np.float32(SEGMENTER_STD))[:, None, :, :].astype(np.float32)


def segmenter_input(image: SourceImage | np.ndarray) -> tuple[np.ndarray, Letterbox]:
    pixels = image.pixels if isinstance(image, SourceImage) else np.asarray(image)
    frame, letterbox = letterbox_pixels(pixels)
    return normalise_segmenter_batch(frame[None]), letterbox


def intensity_statistics(pixels_uint8: np.ndarray) -> tuple[float, float]:
    """Per-image mean and standard deviation on the 0..1 scale (for the intended-use check)."""
    values = np.asarray(pixels_uint8, dtype=np.float32) / 255.0
    return float(values.mean()), float(values.std())
