"""The one model registry: a model is ``<name>.onnx`` described by ``<name>.json`` (task,
inputs, outputs, labels, preprocessing as data, sha256, training data, metrics, licence),
shipped in the app's models folder or in the user's (``$HEALTHFM_HOME/models``). Manifests
are validated against resources/schemas/model-manifest.schema.json; the sha256 is checked
before a model is loaded, for the shipped models against the digests frozen into this build
(``shipped_digests``), not the manifest beside them, so rewriting both is still caught; a
missing, tampered or invalid model is reported by name, never skipped. Code that runs models asks for them by task (``by_task``), not by name."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from healthfm_desktop.core.errors import ModelError
from healthfm_desktop.core.paths import models_dir, packaged_models_dir, resources_dir, user_data_dir

REQUIRED_KEYS = ("name", "version", "file", "sha256", "task", "inputs", "outputs", "license")
SHIPPED, USER = "shipped", "user"
IMAGE_TASKS = ("image-classification", "image-segmentation", "image-embedding", "image-regression")


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
    source: str = SHIPPED
    frozen_sha256: dict[str, str] | None = None  # shipped in this build: its files' frozen digests

    @property
    def model_path(self) -> Path:
        assert self.manifest_path is not None
        return self.manifest_path.parent / self.file

    @property
    def kind(self) -> str:
        """image / text / molecule / tabular: what an input of this model is."""
        return self.extra.get("kind") or self.task.split("-")[0]

    @property
    def encoder(self) -> str | None:
        """For a head on embeddings: the encoder whose embedding it takes."""
        return self.extra.get("encoder")

    def side_file(self, key: str) -> Path:
        """A file the manifest lists under ``files`` (tokenizer, calibration, domain), checked
        against its sha256."""
        entry = self.extra.get("files", {}).get(key)
        if entry is None:
            raise ModelError(f"model {self.name!r} lists no {key} file")
        path = self.model_path.parent / entry["file"]
        if not path.is_file():
            raise ModelError(f"model {self.name!r}: its {key} file {entry['file']} is missing")
        if sha256_of(path) != self.expected_sha256(entry["file"], entry["sha256"]):
            raise ModelError(f"model {self.name!r}: {entry['file']} does not match "
                             f"{'this build' if self.frozen_sha256 is not None else 'its manifest'}; reinstall the model")
        return path

    def expected_sha256(self, file_name: str, declared: str) -> str:
        """What a file of this model must hash to: the frozen digest for a shipped model (an
        unknown file hashes to nothing), else what the manifest declares."""
        if self.frozen_sha256 is None:
            return declared
        return self.frozen_sha256.get(file_name, "not shipped with this build")

    @classmethod
    def from_json(cls, path: Path, source: str = SHIPPED) -> "ModelManifest":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"model manifest {path.name} cannot be read: {exc}") from exc
        return cls.from_dict(data, path, source)

    @classmethod
    def from_dict(cls, data: Any, path: Path, source: str = SHIPPED) -> "ModelManifest":
        problems = validate_manifest(data)
        if problems:
            raise ModelError(f"model manifest {path.name} is not valid: " + "; ".join(problems))
        known = {f for f in cls.__dataclass_fields__ if f not in ("extra", "manifest_path", "source")}
        fields = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**fields, extra=extra, manifest_path=path, source=source)


@lru_cache(maxsize=1)
def manifest_schema() -> dict[str, Any]:
    return json.loads((resources_dir() / "schemas" / "model-manifest.schema.json").read_text(encoding="utf-8"))


def validate_manifest(data: Any) -> list[str]:
    """Why a manifest cannot be used, one sentence per problem naming the field (empty if valid)."""
    from jsonschema import Draft202012Validator

    if not isinstance(data, dict):
        return ["the manifest is not a JSON object"]
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        return [f"it lacks {', '.join(missing)}"]
    problems = []
    for error in sorted(Draft202012Validator(manifest_schema()).iter_errors(data), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in error.absolute_path) or "manifest"
        problems.append(f"{where}: {error.message}")
    if not problems and data["task"] in IMAGE_TASKS and "encoder" not in data:
        from healthfm_desktop.core.inference.image_steps import check_steps

        problems.extend(check_steps(data["preprocessing"]["steps"]))
    return problems


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def user_models_dir() -> Path:
    """The user's model folder (adapted models, models brought by the user), made on first use."""
    path = user_data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class ModelEntry:
    """One line of ``healthfm models list``."""

    name: str
    version: str | None
    task: str | None
    source: str
    path: str
    valid: bool
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "task": self.task, "source": self.source,
                "path": self.path, "valid": self.valid, "error": self.error}


class ModelRegistry:
    """Manifests found in the shipped folder and, when given, the user's folder; ``problems``
    maps a manifest's file stem to why it cannot be used. A user model may not take a shipped
    model's name."""

    def __init__(self, folder: Path, user_folder: Path | None = None):
        self.folder = Path(folder)
        self.frozen_sha256 = _frozen_digests_for(self.folder)
        self.user_folder = Path(user_folder) if user_folder is not None else None
        self.manifests: dict[str, ModelManifest] = {}
        self.problems: dict[str, str] = {}
        self.problem_paths: dict[str, tuple[Path, str]] = {}
        self._verified: dict[str, tuple[float, int]] = {}
        self._scan(self.folder, SHIPPED)
        if self.user_folder is not None and self.user_folder.is_dir():
            self._scan(self.user_folder, USER)

    def _scan(self, folder: Path, source: str) -> None:
        paths = sorted(folder.glob("*.json"))
        read: list[tuple[Path, Any]] = []
        side_files: set[str] = set()
        for path in paths:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                read.append((path, ModelError(f"model manifest {path.name} cannot be read: {exc}")))
                continue
            read.append((path, data))
            if isinstance(data, dict) and isinstance(data.get("files"), dict):
                side_files.update(str(e.get("file")) for e in data["files"].values() if isinstance(e, dict))
        for path, data in read:
            if path.name in side_files:
                continue  # a tokenizer or other JSON file a manifest lists is not itself a manifest
            key = path.stem if source == SHIPPED else f"{USER}:{path.stem}"
            try:
                if isinstance(data, ModelError):
                    raise data
                manifest = ModelManifest.from_dict(data, path, source)
                if source == SHIPPED and self.frozen_sha256 is not None:
                    # checked here, before anything reads it: the sha256s it lists for side files
                    # (domain, calibration) are then as trustworthy as the frozen list
                    if sha256_of(path) != self.frozen_sha256.get(path.name):
                        raise ModelError(f"model manifest {path.name} was changed after this build (it does not "
                                         "match the digest frozen into the app); reinstall HealthFM")
                    manifest.frozen_sha256 = self.frozen_sha256
                if manifest.name in self.manifests:
                    other = self.manifests[manifest.name]
                    raise ModelError(f"model manifest {path.name} is named {manifest.name!r}, which "
                                     f"{'a shipped' if other.source == SHIPPED else 'another'} model "
                                     f"({other.manifest_path.name}) already uses; rename it")
            except ModelError as exc:
                self.problems[key] = str(exc)
                self.problem_paths[key] = (path, source)
                continue
            self.manifests[manifest.name] = manifest

    def names(self) -> list[str]:
        return sorted(self.manifests)

    def by_task(self, task: str, source: str | None = None) -> list[ModelManifest]:
        """Models of one task, shipped first, then by name."""
        found = [m for m in self.manifests.values() if m.task == task and (source is None or m.source == source)]
        return sorted(found, key=lambda m: (m.source != SHIPPED, m.name))

    def get(self, name: str) -> ModelManifest:
        if name in self.problems:
            raise ModelError(self.problems[name])
        try:
            return self.manifests[name]
        except KeyError:
            if f"{USER}:{name}" in self.problems:
                raise ModelError(self.problems[f"{USER}:{name}"]) from None
            raise ModelError(f"model {name!r} is not installed (no manifest named {name!r} in the shipped "
                             f"or the user's model folder; `healthfm models list` shows what is)") from None

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
        expected = manifest.expected_sha256(manifest.file, manifest.sha256)
        if actual != expected:
            against = "the digest frozen into this build" if manifest.frozen_sha256 is not None else "its manifest"
            raise ModelError(
                f"model {name!r}: {manifest.file} does not match {against} (sha256 {actual[:12]}…, "
                f"expected {expected[:12]}…); the file was changed or damaged, reinstall it"
            )
        self._verified[name] = stamp
        return manifest

    def entries(self) -> list[ModelEntry]:
        """Every model and every unusable manifest, each verified (sha256 of model and side files)."""
        entries = []
        for name in self.names():
            manifest = self.manifests[name]
            error = None
            try:
                self.verify(name)
                for key in manifest.extra.get("files", {}):
                    manifest.side_file(key)
            except ModelError as exc:
                error = str(exc)
            entries.append(ModelEntry(name, manifest.version, manifest.task, manifest.source,
                                      str(manifest.model_path), error is None, error))
        for key, (path, source) in sorted(self.problem_paths.items()):
            entries.append(ModelEntry(path.stem, None, None, source, str(path), False, self.problems[key]))
        return entries

    def session(self, name: str, override: str = "auto", threads: int = 0):
        """Verify, then load. Returns (session, manifest, ProviderChoice)."""
        from healthfm_desktop.core.inference.runtime import create_session

        manifest = self.verify(name)
        session, choice = create_session(manifest.model_path, override=override, threads=threads)
        return session, manifest, choice


def _frozen_digests_for(folder: Path) -> dict[str, str] | None:
    """The frozen digests when ``folder`` is the models folder this build ships, else None
    (a folder a test or a training script names is checked against its manifests)."""
    from healthfm_desktop.core.inference.shipped_digests import SHIPPED_SHA256

    try:
        shipped = Path(folder).resolve() == packaged_models_dir().resolve()
    except OSError:
        return None
    return SHIPPED_SHA256 if shipped else None


_REGISTRY: ModelRegistry | None = None
_REGISTRY_STAMP: tuple | None = None


def _user_folder_stamp(folder: Path) -> tuple:
    try:
        return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folder.glob("*.json")))
    except OSError:
        return ()


def load_registry(folder: Path | None = None) -> ModelRegistry:
    """The registry of shipped and user models (cached until the user's folder changes); with
    ``folder``, the models of that one folder only."""
    global _REGISTRY, _REGISTRY_STAMP
    if folder is not None:
        return ModelRegistry(folder)
    user = user_models_dir()
    stamp = (str(models_dir()), str(user), _user_folder_stamp(user))
    if _REGISTRY is None or _REGISTRY_STAMP != stamp:
        _REGISTRY, _REGISTRY_STAMP = ModelRegistry(models_dir(), user), stamp
    return _REGISTRY


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Used by training scripts and adaptation: fill in sha256 of the ONNX file, check the
    manifest against the schema and write it atomically."""
    from healthfm_desktop.core.storage.atomic import atomic_write_text

    model_file = path.parent / manifest["file"]
    manifest = dict(manifest)
    manifest["sha256"] = sha256_of(model_file)
    problems = validate_manifest(manifest)
    if problems:
        raise ValueError(f"manifest {path.name} is not valid: {'; '.join(problems)}")
    atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    if _frozen_digests_for(path.parent) is not None:
        # a retrained shipped model: the build's frozen list follows (commit it with the model)
        from healthfm_desktop.core.inference.shipped_digests import write_module

        write_module(path.parent)
