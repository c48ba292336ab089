"""DICOM reading, decoding, series grouping, display LUTs, measurements, MPR, export, PACS.

Public entry points for the viewer and the command line:

- ``scanning.scan_paths(paths, progress=None, cancel=None) -> ScanResult``: index files,
  folders, zips and DICOMDIRs (header only); ``ScanResult.series`` / ``.rejected`` / ``.notes``.
- ``series.Series.load_frame(i)``: frame ``i`` in display order, float32 modality values (grey)
  or uint8 RGB (colour); ``Series.iter_frames`` decodes many in parallel.
- ``display``: ``Window``, ``default_window``, ``windows_from_file``, ``presets_for``,
  ``apply_window`` (PS3.3 C.11.2.1.2), ``render_uint8``, ``render_frame``.
- ``measure``, ``mpr``, ``tags``, ``export``, ``anonymise``: measurements, reformats, the tag
  tree, PNG export and PS3.15 de-identification.

Submodules are imported explicitly (``from healthfm_desktop.core.imaging.scanning import
scan_paths``) so that importing this package stays cheap.
"""
