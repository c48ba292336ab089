"""DICOM reading, decoding, series grouping, display LUTs, measurements, MPR, export, PACS."""
