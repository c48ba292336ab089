"""Package layout for setuptools (metadata and dependencies live in pyproject.toml).

models/ and resources/ sit at the top of the repository (ARCHITECTURE.md) and are installed as
healthfm_desktop/data/models and healthfm_desktop/data/resources, so that a plain
`pip install .` ships a working app (core/paths.py finds them in either place)."""

from setuptools import find_packages, setup

MODEL_FILES = ["*.onnx", "*.json", "*.md", "*.npz", "*.npy", "*.png", "*.txt"]

setup(
    packages=find_packages(include=["healthfm_desktop", "healthfm_desktop.*"])
    + ["healthfm_desktop.data.models", "healthfm_desktop.data.resources"],
    package_dir={
        "healthfm_desktop.data.models": "models",
        "healthfm_desktop.data.resources": "resources",
    },
    package_data={
        "healthfm_desktop.data.models": MODEL_FILES,
        "healthfm_desktop.data.resources": ["**/*"],
    },
    exclude_package_data={"healthfm_desktop.data.resources": ["**/__pycache__/*", "**/*.pyc"]},
)
