"""`healthfm models list`, `adapt train`, `adapt predict` and `similar` (CLI.md, "Models and
adaptation"): the registry's view of every model, and adaptation of the shipped encoders to
the user's labels, over core/foundation."""

from __future__ import annotations

import sys
from functools import lru_cache

import numpy as np

from healthfm_desktop.batch.output import emit_json


def list_models(args) -> int:
    from healthfm_desktop.core.inference.registry import load_registry

    entries = load_registry().entries()
    for entry in entries:
        if args.json:
            emit_json(entry.to_json())
        else:
            state = "ok" if entry.valid else f"UNUSABLE: {entry.error}"
            print(f"{entry.name}\t{entry.version or '-'}\t{entry.task or '-'}\t{entry.source}\t{state}")
    for entry in entries:
        if not entry.valid:
            print(f"{entry.path}: {entry.error}", file=sys.stderr)
    return 0 if all(e.valid for e in entries) else 1


def _report_errors(errors) -> None:
    from healthfm_desktop.batch.output import report_bad_input

    for item_id, reason in errors:
        report_bad_input(item_id, reason)


def train(args) -> int:
    from pathlib import Path

    from healthfm_desktop.core.foundation.adaptation import train_adapted_model
    from healthfm_desktop.core.foundation.datasets import read_labelled
    from healthfm_desktop.core.foundation.model_files import check_new_name
    from healthfm_desktop.core.errors import UserFacingError

    check_new_name(args.name)
    try:
        items = read_labelled(args.kind, args.data, args.label_column)
    except UserFacingError as exc:
        raise UserFacingError(f"{args.data}: {exc}") from None
    _report_errors(items.errors)
    summary = train_adapted_model(args.kind, items, args.name, args.task, data_name=Path(args.data).name,
                                  progress=_progress_bar("adapt train"))
    if args.json:
        emit_json(summary.to_json())
    else:
        cv = ", ".join(f"{k} {v}" for k, v in summary.cv.items())
        print(f"{summary.name} v{summary.version}: {summary.task} on {summary.n} {summary.kind} items, "
              f"{summary.fit.head}; cross-validated {cv}; {summary.seconds:.1f} s -> {summary.path.parent}")
    return 1 if items.errors else 0


_CLUSTER_CHUNK = 64  # items per cluster task of `adapt predict --scheduler`: a multiple of the image encoder's batch


@lru_cache(maxsize=4)
def _worker_model(name: str, sha256: str):
    from healthfm_desktop.core.errors import ModelError
    from healthfm_desktop.core.foundation.adaptation import AdaptedModel
    from healthfm_desktop.core.inference.registry import load_registry

    manifest = load_registry().get(name)
    if manifest.sha256 != sha256:
        raise ModelError(f"model {name!r} on a Dask worker is not the client's (another sha256): share the user "
                         "model folder with the workers, or import the same model on each")
    return AdaptedModel.load(manifest)


def embed_chunk(payloads: list, name: str, sha256: str):
    """One cluster task of `adapt predict --scheduler`: the embeddings of a chunk of items, by
    the encoder of the worker's copy of the user model (checked to be the client's)."""
    return _worker_model(name, sha256).embed(payloads)


def withheld_outside_domain(result: dict, force: bool) -> dict:
    """CLI.md "Trust in every prediction": outside the model's embedding domain the answer
    (label and set, or value and interval) is null unless ``force``; ``forced`` marks it."""
    inside = result["in_domain"]
    if inside or force:
        return {**result, "forced": force and not inside}
    answer = ("label", "prediction_set") if "label" in result else ("value", "interval")
    return {**result, **{key: None for key in answer}, "forced": False}


def predict(args) -> int:
    from healthfm_desktop.core.foundation.adaptation import AdaptedModel
    from healthfm_desktop.core.foundation.datasets import read_unlabelled
    from healthfm_desktop.core.inference.registry import load_registry

    manifest = load_registry().get(args.name)
    model = AdaptedModel.load(manifest)
    items = read_unlabelled(manifest.kind, args.paths)
    if getattr(args, "scheduler", None):
        from healthfm_desktop.core.cluster import chunked, map_ordered

        # the encoder (the costly part) runs on the workers; the head here, on every embedding
        # at once as locally: the same ONNX batch, so the same probabilities to the last digit
        parts = list(map_ordered(embed_chunk, chunked(items.payloads, _CLUSTER_CHUNK), args.name, manifest.sha256,
                                 scheduler=args.scheduler, label="adapt-predict"))
        results = model.predict_embeddings(np.concatenate(parts)) if parts else []
    else:
        results = model.predict(items.payloads, progress=_progress_bar("adapt predict", per_item=True))
    for item_id, result in zip(items.ids, results):
        record = {"id": item_id, **withheld_outside_domain(result, args.force)}
        if args.json:
            emit_json(record)
        elif record.get("label", record.get("value")) is None:
            print(f"{item_id}: no answer (outside the domain of {args.name}; --force to run anyway)")
        elif "label" in record:
            print(f"{item_id}: {record['label']} (set {record['prediction_set']}, in domain {record['in_domain']})")
        else:
            print(f"{item_id}: {record['value']:.4g} [{record['interval'][0]:.4g}, {record['interval'][1]:.4g}] "
                  f"(in domain {record['in_domain']})")
    for item_id, reason in items.errors:
        if args.json:
            emit_json({"id": item_id, "error": reason})
    _report_errors(items.errors)
    return 1 if items.errors or not (items.ids or items.errors) else 0


def similar(args) -> int:
    from pathlib import Path

    from healthfm_desktop.core.errors import UserFacingError
    from healthfm_desktop.core.foundation.datasets import read_unlabelled
    from healthfm_desktop.core.foundation.similar import similar_records

    if args.top < 1:
        print("healthfm similar: --top must be at least 1", file=sys.stderr)
        return 2
    library = read_unlabelled(args.kind, args.library)
    _report_errors(library.errors)
    if args.kind == "molecule" and not Path(args.query).exists():
        from healthfm_desktop.core.chemistry.reading import parse_smiles

        mol, reason = parse_smiles(args.query)
        if mol is None:
            raise UserFacingError(f"{args.query}: not a readable SMILES ({reason})")
        query = [mol]
    else:
        found = read_unlabelled(args.kind, [args.query])
        if found.errors or len(found) != 1:
            reason = found.errors[0][1] if found.errors else f"holds {len(found)} items, not one"
            raise UserFacingError(f"{args.query}: {reason}")
        query = found.payloads
    for record in similar_records(args.kind, library, query[0], args.top):
        if args.json:
            emit_json(record)
        else:
            print(f"{record['id']}\t{record['score']:.4f}\t{record.get('label', '')}")
    return 1 if library.errors else 0


def _progress_bar(label: str, per_item: bool = False):
    """A one-line progress report on stderr when stderr is a terminal; None otherwise."""
    if not sys.stderr.isatty():
        return None
    if per_item:
        return lambda done, total: print(f"\r{label}: {done}/{total}", end="", file=sys.stderr, flush=True)
    return lambda fraction, step: print(f"\r{label}: {fraction:4.0%} {step[:50]:<50}", end="", file=sys.stderr, flush=True)
