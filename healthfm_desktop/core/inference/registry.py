"""The one model registry: every shipped model is ``models/<name>.onnx`` described by
``models/<name>.json`` (inputs, outputs, labels, preprocessing, sha256, training data, metrics,
license). The sha256 is checked before a model is loaded; a missing or tampered model is
reported by name, never skipped."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from healthfm_desktop.core.errors import ModelError
from healthfm_desktop.core.paths import models_dir

REQUIRED_KEYS = ("name", "version", "file", "sha256", "task", "inputs", "outputs", "license")


@dataclass
class ModelManifest:
    name: str
    version: str
    file: str
    sha256: str
    task: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    license: str
    labels: list[str] = field(default_factory=list)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    training_data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    manifest_path: Path | None = None

    @property
    def model_path(self) -> Path:
        assert self.manifest_path is not None
        return self.manifest_path.parent / self.file

    @classmethod
    def from_json(cls, path: Path) -> "ModelManifest":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"model manifest {path.name} cannot be read: {exc}") from exc
        if not isinstance(data, dict):
            raise ModelError(f"model manifest {path.name} is not a JSON object")
        missing = [k for k in REQUIRED_KEYS if k not in data]
        if missing:
            raise ModelError(f"model manifest {path.name} lacks {', '.join(missing)}")
        known = {f for f in cls.__dataclass_fields__ if f not in ("extra", "manifest_path")}
        fields = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**fields, extra=extra, manifest_path=path)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelRegistry:
    """Manifests found in one folder; ``problems`` lists manifests that could not be read."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.manifests: dict[str, ModelManifest] = {}
        self.problems: dict[str, str] = {}
        self._verified: dict[str, tuple[float, int]] = {}
        for path in sorted(self.folder.glob("*.json")):
            try:
                manifest = ModelManifest.from_json(path)
            except ModelError as exc:
                self.problems[path.stem] = str(exc)
                continue
            self.manifests[manifest.name] = manifest

    def names(self) -> list[str]:
        return sorted(self.manifests)

    def get(self, name: str) -> ModelManifest:
        if name in self.problems:
            raise ModelError(self.problems[name])
        try:
            return self.manifests[name]
        except KeyError:
            raise ModelError(f"model {name!r} is not installed (no {name}.json in the models folder)") from None

    def verify(self, name: str) -> ModelManifest:
        """Check the model file exists and matches its manifest's sha256."""
        manifest = self.get(name)
        path = manifest.model_path
        try:
            stat = path.stat()
        except OSError:
            raise ModelError(f"model {name!r}: file {manifest.file} is missing") from None
        stamp = (stat.st_mtime, stat.st_size)
        if self._verified.get(name) == stamp:
            return manifest
        actual = sha256_of(path)
        if actual != manifest.sha256:
            raise ModelError(
                f"model {name!r}: {manifest.file} does not match its manifest (sha256 {actual[:12]}…, "
                f"expected {manifest.sha256[:12]}…); the file was changed or damaged, reinstall it"
            )
        self._verified[name] = stamp
        return manifest

    def session(self, name: str, override: str = "auto", threads: int = 0):
        """Verify, then load. Returns (session, manifest, ProviderChoice)."""
        from healthfm_desktop.core.inference.runtime import create_session

        manifest = self.verify(name)
        session, choice = create_session(manifest.model_path, override=override, threads=threads)
        return session, manifest, choice


_REGISTRY: ModelRegistry | None = None


def load_registry(folder: Path | None = None) -> ModelRegistry:
    """The registry of shipped models (cached for the default folder)."""
    global _REGISTRY
    if folder is not None:
        return ModelRegistry(folder)
    if _REGISTRY is None or _REGISTRY.folder != models_dir():
        _REGISTRY = ModelRegistry(models_dir())
    return _REGISTRY


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Used by training scripts: fill in sha256 of the ONNX file and write the manifest."""
    model_file = path.parent / manifest["file"]
    manifest = dict(manifest)
    manifest["sha256"] = sha256_of(model_file)
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ValueError(f"manifest lacks {missing}")
    path.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
