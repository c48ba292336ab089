"""`healthfm notes annotate` (CLI.md) and the notes checks of `healthfm self-test`."""

from __future__ import annotations

from pathlib import Path

from healthfm_desktop.batch.output import progress, report_bad_input
from healthfm_desktop.core.errors import UnreadableFileError, UserFacingError


_CLUSTER_CHUNK = 64  # notes per cluster task


def _annotated_on_cluster(notes, user_terms, scheduler: str):
    from healthfm_desktop.core.cluster import chunked, map_ordered
    from healthfm_desktop.core.records.pipeline import annotate_chunk

    for chunk in map_ordered(annotate_chunk, chunked(notes, _CLUSTER_CHUNK), tuple(map(tuple, user_terms)),
                             scheduler=scheduler, label="annotate"):
        yield from chunk


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

    if getattr(args, "scheduler", None):
        annotated = _annotated_on_cluster(good_notes(), user_terms, args.scheduler)
    else:
        annotated = progress(build_pipeline(user_terms).annotate_many(good_notes()), label="annotating")
    for _note in export_notes(annotated, args.format, out):
        written += 1
    if written == 0 and failures == 0:
        raise UserFacingError("no notes were given")
    return 1 if failures else 0
