"""A search index split into shards (one per cluster task), and searches that fan out to the
shards and merge their hits exactly as the one-machine index ranks them.

A sharded index is a folder: ``index.json`` (format ``healthfm-molecule-index-sharded``: the
shards, their sizes and first library rows) and one ordinary index folder per shard. Rows are
the library's rows: a shard's hit row plus the shard's first row. Similarity: each shard's top-k
(ties in its row order) holds every global top-k hit of that shard, so merging by (score desc,
row asc) and cutting at k is the global answer; substructure hits are in row order per shard."""

from __future__ import annotations

import heapq
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from healthfm_desktop.core.chemistry.search_index import (
    Hit, LibraryIndex, _library_records, build_index, library_files, parse_query_smiles, substructure_query,
)
from healthfm_desktop.core.errors import UnreadableFileError, UserFacingError
from healthfm_desktop.core.storage.atomic import atomic_write_text

SHARDED_FORMAT = "healthfm-molecule-index-sharded"
SHARD_SIZE = 100_000  # molecules per shard (one cluster task): ~1 min to build on one core


def is_sharded_index(path: str | Path) -> bool:
    try:
        meta = json.loads((Path(path) / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == SHARDED_FORMAT


def library_shards(paths: Iterable[str | Path], on_bad: Callable[[Path, str], None],
                   shard_size: int | None = None) -> Iterator[list[tuple[Path, str, str, int]]]:
    """The library's records (as one-machine ``build_index`` reads them) in shard-sized lists."""
    shard_size = shard_size or SHARD_SIZE
    files = library_files(paths)
    if not files:
        raise UnreadableFileError("no library files given")
    shard: list = []
    for record in _library_records(files, on_bad):
        shard.append(record)
        if len(shard) >= shard_size:
            yield shard
            shard = []
    if shard:
        yield shard


def build_shard(item: tuple[int, list], out: str, sources: list[str]) -> dict:
    """One cluster task: index the records of shard ``number`` into ``out/shard-NNNNN``.

    Built in a temporary folder beside it and renamed into place, so a task rerun after a lost
    worker replaces a half-written shard instead of adding to it. Returns the shard's name,
    size and the records that did not parse (``(file, reason)``, reported by the client)."""
    number, records = item
    out_path = Path(out)
    name = f"shard-{number:05d}"
    bad: list[tuple[str, str]] = []
    building = out_path / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        # what similarity needs, as the one-machine build writes: a shard's substructure data
        # are built (on the worker that searches it) and saved into it at its first
        # substructure search, so both builds do the same work
        built = build_index(sources, building, workers=1, records=records,
                            on_bad=lambda p, r: bad.append((str(p), r)))
        size = built.size
        del built  # the index's memory maps must close before the folder is renamed
        final = out_path / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(building, final)
    finally:
        if building.exists():
            shutil.rmtree(building, ignore_errors=True)
    return {"name": name, "size": size, "bad": bad}


def write_manifest(out: str | Path, shards: list[dict], sources: list[str]) -> dict:
    """Write ``index.json`` last (atomically): until then the folder is no index at all."""
    first_row = 0
    entries = []
    for shard in shards:
        entries.append({"name": shard["name"], "size": shard["size"], "first_row": first_row})
        first_row += shard["size"]
    meta = {"format": SHARDED_FORMAT, "size": first_row, "sources": sources, "shards": entries,
            "fingerprint": "Morgan radius 2, 2048 bits (RDKit GetMorganGenerator)"}
    atomic_write_text(Path(out) / "index.json", json.dumps(meta, indent=2) + "\n")
    return meta


def shard_hits(folder: str, kind: str, query_text: str, threshold: float | None, top: int | None) -> list[Hit]:
    """One shard's hits (its own rows), for a cluster task or a local loop alike."""
    index = LibraryIndex.open(folder)
    if kind == "similar":
        return index.similar(parse_query_smiles(query_text), threshold=threshold, top=top)
    return index.substructure(substructure_query(query_text), top=top)


def records_hits(records: list, kind: str, query_text: str, threshold: float | None,
                 top: int | None) -> tuple[int, list[Hit]]:
    """One cluster task of a search over a library file: index a chunk of records in a
    temporary folder and search it; ``(molecules indexed, hits)``."""
    with tempfile.TemporaryDirectory(prefix="healthfm-shard-") as tmp:
        sources = sorted({str(r[0]) for r in records})
        index = build_index(sources, tmp, workers=1, records=records, substructure=kind != "similar")
        size = index.size
        del index
        return size, shard_hits(tmp, kind, query_text, threshold, top)


def merge_hits(kind: str, parts: Iterable[tuple[int, list[Hit]]], top: int | None) -> list[Hit]:
    """Hits of every shard, given as ``(first row, hits)``, ranked as one index ranks them."""
    shifted = [[Hit(h.row + first, h.id, h.smiles, h.score) for h in hits] for first, hits in parts]
    if kind == "similar":
        merged = heapq.merge(*shifted, key=lambda h: (-h.score, h.row))
    else:
        merged = heapq.merge(*shifted, key=lambda h: h.row)
    hits = list(merged)
    return hits[:top] if top else hits


class ShardedIndex:
    """An opened sharded index: ``similar`` and ``substructure`` as LibraryIndex gives them,
    each shard searched here or, with ``map_ordered``'s ``scheduler``, on a cluster."""

    def __init__(self, folder: Path, meta: dict):
        self.folder = folder
        self.meta = meta
        self.shards = meta["shards"]
        self.size = int(meta["size"])

    @classmethod
    def of(cls, index) -> "ShardedIndex":
        """A sharded index as it is; a one-machine LibraryIndex as one shard (one cluster task)."""
        if isinstance(index, cls):
            return index
        folder = Path(index.folder)
        return cls(folder.parent, {"size": index.size, "shards": [{"name": folder.name, "size": index.size,
                                                                   "first_row": 0}]})

    @classmethod
    def open(cls, folder: str | Path) -> "ShardedIndex":
        folder = Path(folder)
        try:
            meta = json.loads((folder / "index.json").read_text(encoding="utf-8"))
            shards = meta["shards"]
            missing = [s["name"] for s in shards if not (folder / s["name"] / "index.json").is_file()]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UnreadableFileError(f"damaged sharded molecule index: {exc}") from exc
        if meta.get("format") != SHARDED_FORMAT:
            raise UnreadableFileError("not a sharded molecule search index")
        if missing:
            raise UnreadableFileError(f"damaged sharded molecule index: shard(s) {', '.join(missing[:5])} missing; "
                                      "rebuild it (the folder must be shared with every worker)")
        return cls(folder, meta)

    def search(self, kind: str, query_text: str, threshold: float | None = None, top: int | None = None,
               scheduler: str | None = None, client=None) -> list[Hit]:
        from healthfm_desktop.core.cluster import map_ordered

        if kind not in ("similar", "substructure"):
            raise UserFacingError(f"unknown search kind {kind!r}")
        folders = [str((self.folder / s["name"]).resolve()) for s in self.shards]
        per_shard = map_ordered(shard_hits, folders, kind, query_text, threshold, top,
                                scheduler=scheduler, client=client, label="search")
        return merge_hits(kind, zip((s["first_row"] for s in self.shards), per_shard), top)

    def similar(self, query_text: str, threshold: float | None = None, top: int | None = None, **cluster) -> list[Hit]:
        return self.search("similar", query_text, threshold, top, **cluster)

    def substructure(self, query_text: str, top: int | None = None, **cluster) -> list[Hit]:
        return self.search("substructure", query_text, None, top, **cluster)
