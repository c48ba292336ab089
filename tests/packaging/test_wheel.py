"""A plain `pip install .` ships a working app: the wheel carries the models (with manifests and
cards), the resources (samples, terminology, licenses) and the console scripts."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    """The wheel and what the build printed (verbose, so setuptools' warnings show)."""
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    log = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v", "-w", str(out), str(REPO)],
        check=True,
        timeout=600,
        cwd=build,
        capture_output=True,
        text=True,
    )
    (wheel_path,) = out.glob("healthfm_desktop-*.whl")
    return wheel_path, log.stdout + log.stderr


@pytest.fixture(scope="module")
def wheel(built) -> Path:
    return built[0]


def test_the_build_declares_its_package_data_without_setuptools_warnings(built):
    _wheel, log = built
    assert "Package would be ignored" not in log
    assert "SetuptoolsDeprecationWarning" not in log


def test_wheel_ships_every_model_with_its_manifest(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    from healthfm_desktop.core.inference.registry import ModelRegistry

    registry = ModelRegistry(REPO / "models")
    for manifest in registry.manifests.values():
        assert f"healthfm_desktop/data/models/{manifest.manifest_path.name}" in names
        assert f"healthfm_desktop/data/models/{manifest.file}" in names
        for side in manifest.extra.get("files", {}).values():  # tokenizer, domain files
            assert f"healthfm_desktop/data/models/{side['file']}" in names
    assert not any("/training/" in n for n in names), "training scripts and data must not be in the wheel"


def test_wheel_ships_resources_and_entry_points(wheel):
    archive = zipfile.ZipFile(wheel)
    names = set(archive.namelist())
    for path in (REPO / "resources").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            assert f"healthfm_desktop/data/resources/{path.relative_to(REPO / 'resources').as_posix()}" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = archive.read(entry_points).decode()
    assert "healthfm = healthfm_desktop.cli:main" in text


def test_installed_layout_finds_models_and_resources(wheel, tmp_path):
    """Unpack the wheel as pip would and check the path lookup finds data inside the package."""
    zipfile.ZipFile(wheel).extractall(tmp_path)
    code = (
        "from healthfm_desktop.core import paths; "
        "print(paths.models_dir()); print(paths.resources_dir())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    ).stdout.split()
    assert out == [str(tmp_path / "healthfm_desktop/data/models"), str(tmp_path / "healthfm_desktop/data/resources")]
