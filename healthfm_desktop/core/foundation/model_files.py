"""An adapted model on disk: ``<name>.onnx`` (the head on embeddings, via skl2onnx), ``<name>.json``
(manifest), ``<name>.md`` (generated card) and ``<name>_domain.npz`` (applicability domain) in
the user's model folder; exported as one ``.healthfm-model`` zip and imported from one."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from healthfm_desktop.core.errors import ModelError, UnreadableFileError, UserFacingError
from healthfm_desktop.core.inference.registry import (
    SHIPPED,
    ModelManifest,
    load_registry,
    sha256_of,
    user_models_dir,
    validate_manifest,
    write_manifest,
)
from healthfm_desktop.core.storage.atomic import atomic_write_bytes, atomic_write_text

EXPORT_SUFFIX = ".healthfm-model"
MAX_IMPORT_BYTES = 200 * 1024 * 1024
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


def check_new_name(name: str, registry=None) -> None:
    """A user model may be replaced by a new version; a shipped model's name may not be taken."""
    from healthfm_desktop.core.inference.registry import manifest_schema
    import re

    if not re.fullmatch(manifest_schema()["properties"]["name"]["pattern"], name):
        raise UserFacingError(f"{name!r} cannot be a model name: use letters, digits, '_', '.' or '-' (at most 64)")
    registry = registry or load_registry()
    existing = registry.manifests.get(name)
    if existing is not None and existing.source == SHIPPED:
        raise UserFacingError(f"{name!r} is the name of a shipped model; choose another name")


def head_to_onnx(estimator, dim: int) -> bytes:
    """The fitted scikit-learn pipeline as ONNX (input "embedding"), checked against scikit-learn
    on a few embeddings before it is trusted."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(estimator[-1]): {"zipmap": False}} if hasattr(estimator[-1], "predict_proba") else None
    model = convert_sklearn(estimator, initial_types=[("embedding", FloatTensorType([None, dim]))],
                            options=options, target_opset=TARGET_OPSET)
    return model.SerializeToString()


def _check_onnx_matches(onnx_bytes: bytes, estimator, sample: np.ndarray) -> list[dict[str, Any]]:
    from healthfm_desktop.core.inference.runtime import create_session

    session, _ = create_session(onnx_bytes, threads=1)
    outputs = session.run(None, {"embedding": sample.astype(np.float32)})
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, outputs))
    if hasattr(estimator[-1], "predict_proba"):
        expected, produced = estimator.predict_proba(sample), got["probabilities"]
    else:
        expected, produced = estimator.predict(sample).reshape(-1), np.asarray(got["variable"]).reshape(-1)
    if not np.allclose(expected, produced, atol=1e-3):
        raise ModelError("the exported head does not reproduce scikit-learn's predictions; not saved")
    return [{"name": n, "shape": ["batch"] + [int(d) if isinstance(d, int) else "n" for d in v.shape[1:]],
             "dtype": str(v.dtype) if str(v.dtype) in ("float32", "int64") else "float32"}
            for n, v in zip(names, outputs)]


def save_adapted_model(name: str, kind: str, info, fit, domain, n: int, data_name: str | None,
                       folder: Path | None = None, *, sample: np.ndarray) -> tuple[Path, str]:
    """``sample``: a few training embeddings, on which the ONNX head must give scikit-learn's answers."""
    from healthfm_desktop.core.foundation.adaptation import utc_now

    folder = Path(folder) if folder is not None else user_models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / f"{name}.json"
    version = 1
    if manifest_path.is_file():
        try:
            version = int(json.loads(manifest_path.read_text(encoding="utf-8")).get("version", "0")) + 1
        except (ValueError, json.JSONDecodeError, OSError):
            version = 1
    onnx_bytes = head_to_onnx(fit.estimator, info.dim)
    outputs = _check_onnx_matches(onnx_bytes, fit.estimator, sample)
    atomic_write_bytes(folder / f"{name}.onnx", onnx_bytes)
    domain_file = f"{name}_domain.npz"
    domain.save(folder / domain_file)
    created = utc_now()
    metric_split = f"{fit.folds}-fold cross-validation on the training items (out-of-fold predictions)"
    manifest = {
        "name": name, "version": str(version), "file": f"{name}.onnx", "task": f"{kind}-{fit.task}", "kind": kind,
        "encoder": info.name, "encoder_version": info.version,
        "inputs": [{"name": "embedding", "shape": ["batch", info.dim], "dtype": "float32"}],
        "outputs": outputs, "license": "the user's own data and labels; made on this workstation",
        "preprocessing": {"embedding": f"{info.name} {info.version}"},
        "files": {"domain": {"file": domain_file, "sha256": sha256_of(folder / domain_file)}},
        "conformal": fit.conformal.to_dict(),
        "applicability_domain": {"metric": domain.metric, "k": domain.k, "quantile": domain.quantile,
                                 "threshold": round(domain.threshold, 6),
                                 "rule": ("1 - Tanimoto of the embedding's Morgan bits to the nearest training molecule"
                                          if domain.metric == "tanimoto" else "mean distance to the k nearest training embeddings")
                                         + " <= threshold (the quantile of the training items' leave-one-out distances)"},
        "head": fit.head, "head_candidates": fit.candidates,
        "training_data": {"file": data_name, "n": n, "label_counts": fit.label_counts},
        "metrics": {"split": metric_split, **fit.cv, "ci95": fit.cv_ci95, "reliability": fit.reliability},
        "created": created, "origin": "adapted",
        "intended_use": f"Made on this workstation on {created[:10]} from {n} labelled items"
                        f"{' of ' + data_name if data_name else ''}. It answers for items like those; "
                        f"an item outside its applicability domain is marked. Not a medical device.",
    }
    if fit.classes is not None:
        manifest["labels"] = fit.classes
    write_manifest(manifest_path, manifest)
    atomic_write_text(folder / f"{name}.md", model_card(manifest))
    return folder / f"{name}.onnx", str(version)


def model_card(manifest: dict[str, Any]) -> str:
    metrics = manifest["metrics"]
    lines = [f"# {manifest['name']} (version {manifest['version']})", "",
             f"A {manifest['task']} head on the embeddings of **{manifest['encoder']}** "
             f"({manifest['encoder_version']}), made on this workstation on {manifest['created']}.", "",
             "## Intended use", "", manifest["intended_use"], "",
             "## Data", "", f"- items: {manifest['training_data']['n']}"
             + (f" from `{manifest['training_data']['file']}`" if manifest["training_data"]["file"] else "")]
    if manifest["training_data"].get("label_counts"):
        lines += [f"- {label}: {count}" for label, count in manifest["training_data"]["label_counts"].items()]
    lines += ["", f"## Metrics ({metrics['split']})", "", "| metric | value | 95 % CI |", "|---|---|---|"]
    for key, value in metrics.items():
        if key in ("split", "ci95", "reliability"):
            continue
        low, high = metrics["ci95"].get(key, [None, None])
        lines.append(f"| {key} | {value} | {low}–{high} |")
    lines += ["", f"Head chosen by cross-validation: **{manifest['head']}** (candidates, lower is better: "
              + ", ".join(f"{k} {v}" for k, v in manifest["head_candidates"].items()) + ")."]
    if metrics.get("reliability"):
        lines += ["", "## Reliability (out-of-fold, top label)", "", "| confidence bin | mean confidence | accuracy | items |",
                  "|---|---|---|---|"]
        lines += [f"| {r['low']}–{r['high']} | {r['confidence']} | {r['accuracy']} | {r['count']} |" for r in metrics["reliability"]]
    conformal = manifest["conformal"]
    lines += ["", "## Uncertainty and scope", "",
              f"- {'prediction sets' if conformal['kind'] == 'classification' else 'prediction intervals'} at "
              f"{conformal['coverage']:.0%} coverage, split-conformal on {conformal['n_calibration']} out-of-fold predictions",
              f"- applicability domain: {manifest['applicability_domain']['rule']}", "",
              "## When not to use", "",
              "- on items unlike the training items (the domain check marks them; the answer is then a guess)",
              "- as a diagnosis: the metrics above are cross-validated on the user's own items, not an external test",
              ""]
    return "\n".join(lines)


def export_model(name: str, out: Path | str, registry=None) -> Path:
    """One file holding the model, its manifest, card and side files, to give a colleague."""
    registry = registry or load_registry()
    manifest = registry.verify(name)
    files = [manifest.manifest_path, manifest.model_path]
    card = manifest.manifest_path.with_suffix(".md")
    if card.is_file():
        files.append(card)
    files += [manifest.side_file(key) for key in manifest.extra.get("files", {})]
    out = Path(out)
    if out.suffix != EXPORT_SUFFIX:
        out = out.with_name(out.name + EXPORT_SUFFIX)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, path.name)
    atomic_write_bytes(out, buffer.getvalue())
    return out


def import_model(path: Path | str, replace: bool = False, folder: Path | None = None, registry=None) -> ModelManifest:
    """Install an exported model into the user's folder after checking the manifest (schema),
    every file's sha256 and the name (no shipped name; an installed one only with ``replace``)."""
    path = Path(path)
    folder = Path(folder) if folder is not None else user_models_dir()
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise UnreadableFileError(f"not an exported model ({type(exc).__name__})") from exc
    with archive:
        infos = archive.infolist()
        if sum(i.file_size for i in infos) > MAX_IMPORT_BYTES:
            raise UnreadableFileError("the exported model is larger than 200 MB unpacked")
        names = [i.filename for i in infos]
        if any("/" in n or "\\" in n or n.startswith(".") for n in names):
            raise UnreadableFileError("the exported model contains paths, not just files")
        manifests = [n for n in names if n.endswith(".json")]
        contents = {n: archive.read(n) for n in names}
    data = None
    for candidate in manifests:
        try:
            parsed = json.loads(contents[candidate])
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(parsed, dict) and "task" in parsed:
            data = parsed
            break
    if data is None:
        raise UnreadableFileError("the exported model has no manifest")
    problems = validate_manifest(data)
    if problems:
        raise UnreadableFileError("its manifest is not valid: " + "; ".join(problems))
    needed = {data["file"]: data["sha256"]}
    needed.update({e["file"]: e["sha256"] for e in data.get("files", {}).values()})
    import hashlib

    for file, digest in needed.items():
        if file not in contents:
            raise UnreadableFileError(f"the exported model lacks {file}")
        if hashlib.sha256(contents[file]).hexdigest() != digest:
            raise UnreadableFileError(f"{file} does not match its manifest (damaged or changed)")
    registry = registry or load_registry()
    name = data["name"]
    check_new_name(name, registry)
    installed = registry.manifests.get(name)
    if installed is not None and not replace:
        raise UserFacingError(f"a model named {name!r} (version {installed.version}) is installed already; "
                              "replace it or remove it first")
    folder.mkdir(parents=True, exist_ok=True)
    manifest_name = f"{name}.json"
    for file in needed:
        atomic_write_bytes(folder / file, contents[file])
    card = f"{Path(data['file']).stem}.md"
    if card in contents:
        atomic_write_bytes(folder / card, contents[card])
    atomic_write_text(folder / manifest_name, json.dumps(data, indent=2) + "\n")  # last: the model appears whole
    return ModelManifest.from_dict(data, folder / manifest_name, "user")
