"""`healthfm notes annotate` (CLI.md) and the notes checks of `healthfm self-test`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from healthfm_desktop.batch.output import progress, report_bad_input
from healthfm_desktop.core.errors import UnreadableFileError, UserFacingError


def _unique_stem(stem: str, used: set[str]) -> str:
    candidate, n = stem, 1
    while candidate.lower() in used:
        n += 1
        candidate = f"{stem}_{n}"
    used.add(candidate.lower())
    return candidate


def annotate(args) -> int:
    from healthfm_desktop.core.records.export import note_to_jsonl_line, safe_file_stem, write_brat_files, write_fhir_file
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
    if args.format == "jsonl":
        if out.is_dir():
            raise UserFacingError(f"{out}: is a folder; --format jsonl writes one file")
        out.parent.mkdir(parents=True, exist_ok=True)
    else:
        if out.exists() and not out.is_dir():
            raise UserFacingError(f"{out}: is a file; --format {args.format} writes a folder")
        out.mkdir(parents=True, exist_ok=True)

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

    used: set[str] = set()
    handle = None
    tmp_name = None
    if args.format == "jsonl":
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
        handle = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
    try:
        for note in progress(pipeline.annotate_many(good_notes()), label="annotating"):
            if args.format == "jsonl":
                handle.write(note_to_jsonl_line(note))
            elif args.format == "brat":
                write_brat_files(note, out, _unique_stem(safe_file_stem(note.id), used))
            else:
                write_fhir_file(note, out, _unique_stem(safe_file_stem(note.id), used))
            written += 1
        if handle is not None:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            handle = None
            os.replace(tmp_name, out)
            tmp_name = None
    finally:
        if handle is not None:
            handle.close()
        if tmp_name and os.path.exists(tmp_name):
            os.unlink(tmp_name)
    if written == 0 and failures == 0:
        raise UserFacingError("no notes were given")
    return 1 if failures else 0
