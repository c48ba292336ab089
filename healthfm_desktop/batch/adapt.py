"""`healthfm models list`, `adapt train`, `adapt predict` and `similar` (CLI.md, "Models and
adaptation"): the registry's view of every model, and adaptation of the shipped encoders to
the user's labels, over core/foundation."""

from __future__ import annotations

import sys

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
