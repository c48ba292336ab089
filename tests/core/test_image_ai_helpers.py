"""Helpers for the image-AI tests (no tests here): wrap real pixels into DICOM files the way a
modality would write them, so readers, models and SEG/SR export meet real DICOM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

REPO = Path(__file__).resolve().parents[2]
IMAGE_TEST_DATA = REPO / "tests" / "data" / "images"
IMAGE_SAMPLES = REPO / "resources" / "samples" / "images"

SOP_CLASS = {
    "CR": "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
    "US": "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image Storage
    "MR": "1.2.840.10008.5.1.4.1.1.4",
}


def make_dicom(
    path: Path,
    pixels: np.ndarray,
    modality: str,
    pixel_spacing_mm: float | None = None,
    photometric: str = "MONOCHROME2",
    bits: int = 8,
    series: tuple[str, str] | None = None,
    instance_number: int = 1,
) -> Path:
    """Write ``pixels`` (uint8 or uint16, 2D) as a Part 10 DICOM file of ``modality``;
    ``series`` = (study UID, series UID) puts several files into one series."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SOP_CLASS[modality]
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = series or (generate_uid(), generate_uid())
    ds.FrameOfReferenceUID = generate_uid()
    ds.PatientID = "TEST0001"
    ds.PatientName = "Test^Image"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyDate = "20240101"
    ds.StudyTime = "120000"
    ds.StudyID = "1"
    ds.AccessionNumber = "A1"
    ds.ReferringPhysicianName = ""
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance_number
    ds.Manufacturer = "test"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if pixel_spacing_mm is not None:
        ds.PixelSpacing = [f"{pixel_spacing_mm:.6f}", f"{pixel_spacing_mm:.6f}"]
    ds.PixelData = np.ascontiguousarray(pixels.astype(np.uint8 if bits == 8 else np.uint16)).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def read_back(path: Path):
    return pydicom.dcmread(path)
