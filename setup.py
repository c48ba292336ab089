"""Package layout for setuptools (metadata and dependencies live in pyproject.toml).

models/ and resources/ sit at the top of the repository (ARCHITECTURE.md) and are installed as
healthfm_desktop/data/models and healthfm_desktop/data/resources, so that a plain
`pip install .` ships a working app (core/paths.py finds them in either place). Every folder
of resources/ is declared as a data package of its own: setuptools warns ("Package would be
ignored") about folders holding files that no package names."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
MODEL_FILES = ["*.onnx", "*.json", "*.md", "*.npz", "*.npy", "*.png", "*.txt"]


def data_packages(folder: str, package: str) -> dict[str, str]:
    """Package name -> folder (relative, as setuptools wants) for ``folder`` and its subfolders."""
    root = HERE / folder
    found = {package: folder}
    for sub in sorted(p for p in root.rglob("*") if p.is_dir() and p.name != "__pycache__"):
        relative = sub.relative_to(root)
        found[".".join((package, *relative.parts))] = "/".join((folder, *relative.parts))
    return found


RESOURCES = data_packages("resources", "healthfm_desktop.data.resources")

setup(
    packages=find_packages(include=["healthfm_desktop", "healthfm_desktop.*"])
    + ["healthfm_desktop.data.models", *RESOURCES],
    package_dir={"healthfm_desktop.data.models": "models", **RESOURCES},
    package_data={"healthfm_desktop.data.models": MODEL_FILES, **{name: ["*"] for name in RESOURCES}},
    exclude_package_data={name: ["*.pyc"] for name in RESOURCES},
)
