"""`healthfm data-quality PATH... [--json]`: the data-quality report of each input as its
workspace would import it (unreadable, out of range, duplicated, missing), one object per input."""

from __future__ import annotations

from pathlib import Path

from healthfm_desktop.batch.output import emit_json, report_bad_input
from healthfm_desktop.core.errors import UserFacingError


def report(args) -> int:
    from healthfm_desktop.core.data_quality import KINDS, report_for

    failed = 0
    for raw in args.paths:
        try:
            result = report_for(Path(raw))
        except UserFacingError as exc:
            failed += 1
            report_bad_input(raw, exc)
            continue
        if args.json:
            emit_json(result.to_json())
            continue
        print(f"{raw}: {result.workspace}: {result.summary()}")
        for kind in KINDS:
            for item, detail in result.found[kind]:
                print(f"  {kind.replace('_', ' ')}: {item}: {detail}")
            hidden = result.counts[kind] - len(result.found[kind])
            if hidden:
                print(f"  {kind.replace('_', ' ')}: {hidden} more not listed")
    return 1 if failed else 0
