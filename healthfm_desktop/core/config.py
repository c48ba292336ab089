"""Settings shared by the GUI (QSettings in INI format on the same file) and the command line.

The GUI writes with QSettings(settings_path(), IniFormat); the command line reads the same file
here without importing Qt. Only plain string values are stored.
"""

from __future__ import annotations

import configparser
from pathlib import Path

from healthfm_desktop.core.paths import settings_path

DEFAULTS = {
    "inference/provider": "auto",
    "inference/quantized": "false",
    "dicom/ae_title": "HEALTHFM",
    "dicom/storage_port": "11112",
    "dicom/scp_bind_address": "127.0.0.1",  # the storage SCP listens on loopback unless told otherwise
    "dicom/allowed_calling_aets": "",  # comma-separated; empty: any calling AE title
    "compute/scheduler": "",  # "" = this computer; else a Dask scheduler address (core/cluster.py)
}


def read_setting(key: str, path: Path | None = None) -> str:
    """Read ``section/name`` from the INI file, falling back to DEFAULTS."""
    section, _, name = key.partition("/")
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # QSettings keys are case-sensitive
    try:
        parser.read(path or settings_path(), encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError, OSError):
        return DEFAULTS.get(key, "")
    if parser.has_option(section, name):
        return parser.get(section, name).strip().strip('"')
    return DEFAULTS.get(key, "")
