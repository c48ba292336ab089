"""Where the shipped models, resources and the user's own data live, in a checkout, an
installed wheel and a PyInstaller bundle alike."""

from __future__ import annotations

import os
import sys
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def _first_existing(candidates: list[Path]) -> Path:
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[0]


def _data_candidates(name: str) -> list[Path]:
    candidates = []
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        # The bundle keeps the app's data under healthfm_data/ so that medspaCy's top-level
        # resources/ folder (copied to resources/en) cannot collide with ours.
        candidates.append(Path(bundle) / "healthfm_data" / name)
    candidates.append(_PACKAGE_DIR / "data" / name)  # installed wheel
    candidates.append(_PACKAGE_DIR.parent / name)  # source checkout or editable install
    return candidates


def packaged_models_dir() -> Path:
    """The models folder that ships with this build (whatever HEALTHFM_MODELS_DIR says)."""
    return _first_existing(_data_candidates("models"))


def models_dir() -> Path:
    override = os.environ.get("HEALTHFM_MODELS_DIR")
    if override:
        return Path(override)
    return packaged_models_dir()


def resources_dir() -> Path:
    return _first_existing(_data_candidates("resources"))


def samples_dir() -> Path:
    return resources_dir() / "samples"


def demo_paths() -> list[Path]:
    """What `healthfm gui --demo` opens: the bundled samples without the README.md files that
    document them, and each sample once where it ships in two formats (approved_drugs.csv and
    .sdf hold the same 19 drugs: the CSV, sorted first, is opened)."""
    chosen: list[Path] = []
    for folder in sorted(p for p in samples_dir().iterdir() if p.is_dir()):
        stems: set[str] = set()
        for path in sorted(folder.iterdir()):
            if path.name.lower() == "readme.md" or (path.is_file() and path.stem in stems):
                continue
            stems.add(path.stem)
            chosen.append(path)
    return chosen


def user_data_dir() -> Path:
    """Per-user writable folder for settings, autosaves and the local study database."""
    override = os.environ.get("HEALTHFM_HOME")
    if override:
        path = Path(override)
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        path = Path(base) / "healthfm-desktop"
    path.mkdir(parents=True, exist_ok=True)
    return path


def user_cache_dir() -> Path:
    """Per-user folder for data the app rebuilds when it is missing (deleting it loses nothing):
    under HEALTHFM_HOME when that is set, else the XDG cache folder."""
    override = os.environ.get("HEALTHFM_HOME")
    if override:
        path = Path(override) / "cache"
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "healthfm-desktop"
    path.mkdir(parents=True, exist_ok=True)
    return path


def settings_path() -> Path:
    return user_data_dir() / "settings.ini"
