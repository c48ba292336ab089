"""`healthfm notes annotate` (CLI.md) and the notes checks of `healthfm self-test`."""

from __future__ import annotations

from pathlib import Path

from healthfm_desktop.batch.output import progress, report_bad_input
from healthfm_desktop.core.errors import UnreadableFileError, UserFacingError


def annotate(args) -> int:
    from healthfm_desktop.core.records.export import check_destination, export_notes
    from healthfm_desktop.core.records.notes_io import BadRecord, read_notes
    from healthfm_desktop.core.records.pipeline import build_pipeline
    from healthfm_desktop.core.records.terminology import read_terms_file

    user_terms: list[tuple[str, str]] = []
    if args.terms:
        try:
            user_terms = read_terms_file(args.terms)
        except UnreadableFileError as exc:
            raise UserFacingError(f"{args.terms}: {exc}") from None

    out = Path(args.out)
    try:
        check_destination(args.format, out)
    except UnreadableFileError as exc:
        raise UserFacingError(f"{out}: {exc}") from None

    pipeline = build_pipeline(user_terms)
    failures = 0
    written = 0

    def good_notes():
        nonlocal failures
        for item in read_notes(args.paths):
            if isinstance(item, BadRecord):
                failures += 1
                report_bad_input(item.where, item.reason)
                continue
            yield item.id, item.text

    for _note in progress(export_notes(pipeline.annotate_many(good_notes()), args.format, out), label="annotating"):
        written += 1
    if written == 0 and failures == 0:
        raise UserFacingError("no notes were given")
    return 1 if failures else 0
