"""`healthfm molecules describe | predict | index | search` (CLI.md), and the molecule checks of
`healthfm self-test`."""

from __future__ import annotations

import csv
import math
import sys
import tempfile
from pathlib import Path

from healthfm_desktop.batch.output import ProgressLine, emit_json, report_bad_input
from healthfm_desktop.core.errors import UserFacingError

# small files are described in-process: starting worker processes costs more than it saves
_PARALLEL_FROM_BYTES = 256 * 1024
_PREDICT_BATCH = 256
_CLUSTER_CHUNK = 5000  # records per cluster task: ~1-2 s of describing, so the ~ms a task costs is noise


def describe_chunk(records: list) -> list[dict]:
    """One cluster task of `molecules describe --scheduler`: the rows of a chunk of records."""
    from healthfm_desktop.core.chemistry.properties import describe_records

    return list(describe_records(records, workers=1))


def _described(path: Path, scheduler: str | None, budget_s: float | None = None):
    from healthfm_desktop.core.chemistry.properties import RECORD_BUDGET_S, describe_records
    from healthfm_desktop.core.chemistry.reading import read_molecules
    from healthfm_desktop.core.cluster import chunked, map_ordered

    records = read_molecules(path, parse=False)
    if scheduler:
        for rows in map_ordered(describe_chunk, chunked(records, _CLUSTER_CHUNK), scheduler=scheduler,
                                label="describe"):
            yield from rows
        return
    workers = None if path.stat().st_size >= _PARALLEL_FROM_BYTES else 1
    # SMILES are parsed once, on the worker processes that describe them; a record past its
    # time budget there is stopped (small files stay in-process, bounded by the size limits)
    yield from describe_records(records, workers=workers, budget_s=budget_s or RECORD_BUDGET_S)


def _describe_rows(path: Path, bad: list[int], scheduler: str | None = None, budget_s: float | None = None):
    for row in _described(path, scheduler, budget_s):
        if "error" in row:
            bad[0] += 1
            report_bad_input(path, f"record {row['id']}: {row['error']}")
        yield row


def describe(args) -> int:
    from healthfm_desktop.core.chemistry.properties import DESCRIBE_COLUMNS
    from healthfm_desktop.core.storage.atomic import atomic_text_writer

    path = Path(args.file)
    bad = [0]
    scheduler, budget_s = getattr(args, "scheduler", None), getattr(args, "time_budget", None)
    try:
        if args.json:
            for row in _describe_rows(path, bad, scheduler, budget_s):
                if "error" in row:
                    emit_json({"id": row["id"], "smiles": row["smiles"], "error": row["error"]})
                else:
                    emit_json({k: row[k] for k in DESCRIBE_COLUMNS})
        else:
            out = Path(args.out)
            with atomic_text_writer(out) as handle:  # the CSV appears whole, or not at all
                writer = csv.writer(handle)
                writer.writerow([*DESCRIBE_COLUMNS, "error"])
                count = 0
                for row in _describe_rows(path, bad, scheduler, budget_s):
                    count += 1
                    if "error" in row:
                        writer.writerow([row["id"], row["smiles"], *[""] * (len(DESCRIBE_COLUMNS) - 2), row["error"]])
                    else:
                        values = [row[k] for k in DESCRIBE_COLUMNS]
                        values[-1] = ";".join(row["alerts"])
                        writer.writerow([*values, ""])
            print(f"described {count} records ({bad[0]} unreadable) into {out}", file=sys.stderr)
    except UserFacingError as exc:
        report_bad_input(path, exc)
        return 1
    except OSError as exc:
        report_bad_input(path, exc.strerror or exc)
        return 1
    return 1 if bad[0] else 0


def answers(prediction, force: bool) -> dict:
    """A record's answers as `molecules predict` gives them (core's ``shown_answers`` rule)."""
    from healthfm_desktop.core.chemistry.answers import shown_answers

    shown = shown_answers(prediction.values, prediction.in_domain, prediction.intervals, prediction.prediction_sets, force)
    return {"predictions": shown["predictions"], "in_domain": prediction.in_domain, "intervals": shown["intervals"],
            "prediction_sets": shown["prediction_sets"], "forced": force and not all(prediction.in_domain.values())}


def predict_chunk(records: list, force: bool = False) -> list[dict]:
    """The output rows of a chunk of records (a local run and a cluster task alike): SMILES read
    with ``parse=False`` are parsed here, models run in batches of ``_PREDICT_BATCH``."""
    from healthfm_desktop.core.chemistry.predictors import predict_mols
    from healthfm_desktop.core.chemistry.reading import parse_smiles

    rows: list[dict] = []
    batch: list = []

    def flush():
        for record, prediction in zip(batch, predict_mols([r.mol for r in batch])):
            rows.append({"id": record.id, "smiles": record.smiles, **answers(prediction, force)})
        batch.clear()

    for record in records:
        if record.unparsed:
            record.mol, record.error = parse_smiles(record.source)
        if record.mol is None:
            flush()
            rows.append({"id": record.id, "smiles": record.smiles, "error": record.error})
            continue
        batch.append(record)
        if len(batch) >= _PREDICT_BATCH:
            flush()
    flush()
    return rows


def predict(args) -> int:
    from healthfm_desktop.core.chemistry.reading import read_molecules
    from healthfm_desktop.core.cluster import chunked, map_ordered

    path = Path(args.file)
    bad = 0
    try:
        chunks = chunked(read_molecules(path, parse=False), _CLUSTER_CHUNK)
        for rows in map_ordered(predict_chunk, chunks, args.force, scheduler=getattr(args, "scheduler", None),
                                label="predict"):
            for row in rows:
                if "error" in row:
                    bad += 1
                    report_bad_input(path, f"record {row['id']}: {row['error']}")
                    if args.json:
                        emit_json(row)
                elif args.json:
                    emit_json(row)
                else:
                    values = " ".join(f"{k}={v:.3f}" if v is not None else f"{k}=withheld(out of domain)"
                                      for k, v in row["predictions"].items())
                    print(f"{row['id']}\t{row['smiles']}\t{values}")
    except UserFacingError as exc:
        report_bad_input(path, exc)
        return 1
    return 1 if bad else 0


def _index_sharded(args, on_bad) -> tuple[int, int]:
    """`molecules index --scheduler`: one shard per cluster task, written by the workers into
    the output folder (shared with them), the manifest written last by this client."""
    from healthfm_desktop.core.chemistry.search_index import library_files
    from healthfm_desktop.core.chemistry.sharded_index import build_shard, library_shards, write_manifest
    from healthfm_desktop.core.cluster import map_ordered

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    sources = [str(f) for f in library_files(args.libraries)]
    shards = []
    numbered = enumerate(library_shards(args.libraries, on_bad))
    for shard in map_ordered(build_shard, numbered, str(out), sources, scheduler=args.scheduler, label="index"):
        for path, reason in shard["bad"]:
            on_bad(path, reason)
        shards.append(shard)
    meta = write_manifest(out, shards, sources)
    return meta["size"], len(sources)


def index(args) -> int:
    from healthfm_desktop.core.chemistry.search_index import build_index

    bad = [0]
    line = ProgressLine("indexing", unit="molecules")

    def on_bad(path, reason):
        bad[0] += 1
        line.close()  # the report on a line of its own; the progress goes on below it
        report_bad_input(path, reason)

    try:
        if getattr(args, "scheduler", None):
            size, sources = _index_sharded(args, on_bad)
        else:
            line(0)
            try:
                built = build_index(args.libraries, args.out, on_bad=on_bad, progress=line)
            finally:
                line.close()
            size, sources = built.size, len(built.meta["sources"])
    except UserFacingError as exc:
        report_bad_input(args.out if "no library" in str(exc) else ", ".join(args.libraries), exc)
        return 1
    except OSError as exc:
        report_bad_input(args.out, exc.strerror or exc)
        return 1
    print(f"indexed {size} molecules from {sources} file(s) into {args.out}"
          f" ({bad[0]} unreadable record(s) skipped)")
    return 1 if bad[0] and size == 0 else 0


def _search_on_shards(library: Path, args, scheduler: str | None):
    """A sharded index (here, or with ``scheduler`` on the cluster), or with ``scheduler`` a
    one-machine index (one task) or a library file (one task per chunk of records)."""
    from healthfm_desktop.core.chemistry.search_index import is_index
    from healthfm_desktop.core.chemistry.sharded_index import (
        ShardedIndex, is_sharded_index, library_shards, merge_hits, records_hits, shard_hits,
    )
    from healthfm_desktop.core.cluster import map_ordered

    kind = "similar" if args.similar is not None else "substructure"
    text = args.similar if args.similar is not None else args.substructure
    if is_sharded_index(library):
        return ShardedIndex.open(library).search(kind, text, args.threshold, args.top, scheduler=scheduler)
    if is_index(library):
        hits = map_ordered(shard_hits, [str(library.resolve())], kind, text, args.threshold, args.top,
                           scheduler=scheduler, label="search")
        return next(iter(hits))
    if library.is_dir():
        raise UserFacingError("is a folder but not an index built by `molecules index`")
    parts, first_row = [], 0
    chunks = library_shards([library], lambda path, reason: None)
    for size, hits in map_ordered(records_hits, chunks, kind, text, args.threshold, args.top,
                                  scheduler=scheduler, label="search"):
        parts.append((first_row, hits))
        first_row += size
    return merge_hits(kind, parts, args.top)


def _search_hits(library: Path, args):
    from healthfm_desktop.core.chemistry.reading import read_molecules
    from healthfm_desktop.core.chemistry.search_index import (
        Hit, LibraryIndex, build_index, is_index, parse_query_smiles, substructure_query,
    )
    from healthfm_desktop.core.chemistry.sharded_index import is_sharded_index

    if args.top is not None and args.top <= 0:
        raise UserFacingError("--top must be a positive number")
    if args.threshold is not None and not (0.0 <= args.threshold <= 1.0 and math.isfinite(args.threshold)):
        raise UserFacingError("--threshold must lie between 0 and 1")
    if args.similar is not None:
        query = parse_query_smiles(args.similar)
    else:
        query = substructure_query(args.substructure)
    scheduler = getattr(args, "scheduler", None)
    if is_sharded_index(library) or scheduler:
        return _search_on_shards(library, args, scheduler)
    if is_index(library):
        idx = LibraryIndex.open(library)
        if args.similar is not None:
            return idx.similar(query, threshold=args.threshold, top=args.top)
        if not idx.has_substructure_data:  # the first substructure search of this index builds them
            line = ProgressLine("preparing substructure search (once per index)", idx.size, "molecules")
            line(0)  # at once: the first chunk of molecules takes seconds
            try:
                idx.build_substructure(progress=lambda fraction: line(round(fraction * idx.size)))
            finally:
                line.close()
        return idx.substructure(query, top=args.top)
    if library.is_dir():
        raise UserFacingError("is a folder but not an index built by `molecules index`")
    if args.substructure is not None:
        # a file searched directly: every record is parsed anyway, so match it at once
        hits = []
        for row, record in enumerate(r for r in read_molecules(library) if r.mol is not None):
            if record.mol.HasSubstructMatch(query):
                hits.append(Hit(row, record.id, record.smiles if "\n" in record.source else record.source, 1.0))
                if args.top and len(hits) >= args.top:
                    break
        return hits
    with tempfile.TemporaryDirectory(prefix="healthfm-index-") as tmp:
        size = library.stat().st_size
        idx = build_index([library], tmp, workers=None if size >= _PARALLEL_FROM_BYTES else 1)
        return idx.similar(query, threshold=args.threshold, top=args.top)


def search(args) -> int:
    library = Path(args.library)
    try:
        hits = _search_hits(library, args)
    except UserFacingError as exc:
        report_bad_input(library, exc)
        return 1
    for hit in hits:
        if args.json:
            emit_json({"id": hit.id, "smiles": hit.smiles, "score": hit.score})
        else:
            print(f"{hit.id}\t{hit.smiles}\t{hit.score:.4f}")
    return 0
