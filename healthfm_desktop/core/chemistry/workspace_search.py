"""The searches of the Molecules workspace: over the table's rows, or over a library through a
search index built once per library file and reused while the file is unchanged; progress
(count, rate, time left) is reported and a cancel flag checked between small steps."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from healthfm_desktop.core.chemistry.session import IndexState, MoleculeRow
from healthfm_desktop.core.errors import UserFacingError
from healthfm_desktop.core.events import Progress

#: molecules fingerprinted between two checks of the cancel flag (~0.1-0.2 s of work)
BUILD_STEP = 100


class SearchCancelled(Exception):
    """The user cancelled: the work stopped at its next step, nothing partial is kept."""


@dataclass(frozen=True)
class Rate:
    """Progress of counted work: ``done`` of ``total`` (None when unknown) after ``seconds``."""

    what: str
    done: int
    total: int | None
    seconds: float

    @property
    def fraction(self) -> float | None:
        return min(self.done / self.total, 1.0) if self.total else None

    @property
    def per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def message(self) -> str:
        rate = self.per_second
        text = f"{self.what} {self.done:,}" + (f" of about {self.total:,}" if self.total else "") + " molecules"
        if rate > 0:
            text += f" · {rate:,.0f}/s"
            if self.total and self.total > self.done:
                text += f" · about {_duration((self.total - self.done) / rate)} left"
        return text


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def estimate_records(path: Path) -> int | None:
    """Records in a library file, counted cheaply (lines, or SD record ends); None for folders."""
    if not path.is_file():
        return None
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    sd = ".sd" in "".join(path.suffixes).lower()
    count = 0
    with opener(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            count += chunk.count(b"$$$$") if sd else chunk.count(b"\n")
    if not sd and path.name.lower().removesuffix(".gz").endswith((".csv", ".tsv", ".tab")):
        count -= 1  # the header
    return max(count, 0)


# ---- the table -----------------------------------------------------------------------------
def search_rows(rows: list[MoleculeRow], query_text: str, mode: str, threshold: float | None,
                limit: int | None, cancelled: Callable[[], bool] = lambda: False):
    """Generator: yields fractions done; returns [(row key, score)], best first (ties in table
    order). Each row's molecule is rebuilt from its SMILES as an index of the table would;
    substructure: RDKit's HasSubstructMatch (score 1.0); similarity: BulkTanimotoSimilarity on
    Morgan radius-2 2048-bit fingerprints, at least ``threshold``. ``limit`` 0/None: all hits."""
    from rdkit import Chem, DataStructs

    from healthfm_desktop.core.chemistry.fingerprints import morgan_generator
    from healthfm_desktop.core.chemistry.search_index import parse_query_smiles, substructure_query

    query = parse_query_smiles(query_text) if mode == "similar" else substructure_query(query_text)
    if mode == "similar":
        if threshold is None:
            threshold = 0.0 if limit else 0.7
        if not 0.0 <= threshold <= 1.0:
            raise UserFacingError("the similarity threshold must lie between 0 and 1")
        generator = morgan_generator()
        query_fp = generator.GetFingerprint(query)
    found: list[tuple[int, float]] = []
    keys, fps = [], []
    for i, row in enumerate(rows):
        if i % 500 == 0:
            if cancelled():
                raise SearchCancelled()
            yield i / max(len(rows), 1)
        mol = Chem.MolFromSmiles(row.smiles) if row.mol is not None else None
        if mol is None:
            continue
        if mode == "similar":
            keys.append(row.key)
            fps.append(generator.GetFingerprint(mol))
        elif mol.HasSubstructMatch(query):
            found.append((row.key, 1.0))
    if mode == "similar":
        scores = DataStructs.BulkTanimotoSimilarity(query_fp, fps)
        ranked = sorted((i for i, s in enumerate(scores) if s >= threshold), key=lambda i: (-scores[i], i))
        found = [(keys[i], scores[i]) for i in ranked]
    return found[:limit] if limit else found


# ---- libraries -----------------------------------------------------------------------------
class IndexCache:
    """Indexes of library files under ``root``, one folder per file, each with the file's size
    and modification time when it was indexed: a changed file is indexed again."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def folder_for(self, library: Path) -> Path:
        digest = hashlib.sha256(str(library.resolve()).encode("utf-8")).hexdigest()[:20]
        return self.root / digest

    @staticmethod
    def _stamp(library: Path) -> dict:
        stat = library.stat()
        return {"library": str(library.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}

    def lookup(self, library: Path) -> Path | None:
        folder = self.folder_for(library)
        try:
            kept = json.loads((folder / "library.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return folder if kept == self._stamp(library) else None

    def build(self, library: Path, progress: Callable[[Rate], None], cancelled: Callable[[], bool],
              on_bad: Callable[[Path, str], None] = lambda p, r: None):
        """Index ``library`` into its folder (replacing an out-of-date one); raise SearchCancelled
        when ``cancelled()`` turns true, leaving nothing behind. Returns (index, seconds)."""
        from healthfm_desktop.core.chemistry.search_index import IndexBuildCancelled, build_index

        stamp = self._stamp(library)
        total = estimate_records(library)
        self.root.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=".building-", dir=self.root))
        start = time.perf_counter()

        def step(done: int) -> None:
            if cancelled():
                raise SearchCancelled()
            progress(Rate("indexed", done, total, time.perf_counter() - start))

        try:
            progress(Rate("indexed", 0, total, 0.0))
            try:  # on every core (the shared process pool), a small chunk between two cancel checks
                build_index([library], partial, on_bad=on_bad, progress=step, chunk=BUILD_STEP, cancel=cancelled)
            except IndexBuildCancelled as exc:
                raise SearchCancelled() from exc
            if cancelled():
                raise SearchCancelled()
            (partial / "library.json").write_text(json.dumps(stamp) + "\n", encoding="utf-8")
            folder = self.folder_for(library)
            if folder.exists():
                shutil.rmtree(folder)
            partial.rename(folder)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        from healthfm_desktop.core.chemistry.search_index import LibraryIndex

        return LibraryIndex.open(folder), time.perf_counter() - start


def open_library(library: Path, cache: IndexCache, progress: Callable[[Rate], None],
                 cancelled: Callable[[], bool], opened=None):
    """(LibraryIndex, IndexState) for a library file or an index folder: an index folder is
    opened, a file's index reused from ``cache`` when the file is unchanged, else built.
    ``opened``: (folder, LibraryIndex) opened earlier in this session, reused when it matches."""
    from healthfm_desktop.core.chemistry.search_index import LibraryIndex, is_index
    from healthfm_desktop.core.chemistry.sharded_index import ShardedIndex, is_sharded_index

    library = Path(library)
    if is_sharded_index(library):
        index = ShardedIndex.open(library)
        return index, IndexState(library.name, str(library), index.size, reused=False)
    if is_index(library):
        folder, name = library, library.name
    elif library.is_dir():
        raise UserFacingError(f"{library.name} is a folder but not an index built by `healthfm molecules index`")
    elif not library.is_file():
        raise UserFacingError(f"{library}: no such file")
    else:
        folder, name = cache.lookup(library), library.name
    if folder is not None:
        # reused: an index kept for this file, or this index folder as this session opened it
        reused = not is_index(library)
        if opened is not None and opened[0] == folder:
            index, reused = opened[1], True
        else:
            try:
                index = LibraryIndex.open(folder)
            except UserFacingError:
                if is_index(library):
                    raise
                index = None  # an index of an older format: build it again
        if index is not None:
            return index, IndexState(name, str(folder), index.size, reused=reused)
    index, seconds = cache.build(library, progress, cancelled)
    return index, IndexState(name, str(index.folder), index.size, reused=False, build_seconds=seconds)


def search_library(index, query_text: str, mode: str, threshold: float | None, limit: int | None,
                   cancelled: Callable[[], bool] = lambda: False,
                   progress: Callable[[Progress], None] = lambda step: None, client=None):
    """Generator: yields fractions while the hits are described; returns them as rows (best
    first). A substructure search reports how far it matched the screen's candidates
    (``progress``) and stops at ``cancelled()``. A sharded index is searched shard by shard;
    with a Dask ``client`` (the Compute setting) any index is searched by that cluster's
    workers (cluster.py), with the same hits."""
    from rdkit import Chem

    from healthfm_desktop.core.chemistry.search_index import parse_query_smiles, substructure_query
    from healthfm_desktop.core.chemistry.sharded_index import ShardedIndex
    from healthfm_desktop.core.chemistry.table import describe_row

    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise UserFacingError("the similarity threshold must lie between 0 and 1")
    top = limit or None
    if client is not None or isinstance(index, ShardedIndex):
        kind = "similar" if mode == "similar" else "substructure"
        hits = ShardedIndex.of(index).search(kind, query_text, threshold, top, client=client)
    elif mode == "similar":
        hits = index.similar(parse_query_smiles(query_text), threshold=threshold, top=top)
    else:
        query = substructure_query(query_text)
        if not index.has_substructure_data:  # the index build left them to the first substructure search
            from healthfm_desktop.core.chemistry.search_index import IndexBuildCancelled

            def building(fraction: float) -> None:
                progress(Progress(fraction, f"preparing substructure search over {index.size:,} molecules "
                                            f"(once per library): {fraction:.0%}"))

            try:
                index.build_substructure(progress=building, cancel=cancelled)
            except IndexBuildCancelled as exc:
                raise SearchCancelled() from exc

        def step(fraction: float) -> None:
            if cancelled():
                raise SearchCancelled()
            progress(Progress(fraction, f"matching the candidates the screen left of {index.size:,} molecules: "
                                        f"{fraction:.0%}"))

        hits = index.substructure(query, top=top, progress=step)
    rows = []
    for i, hit in enumerate(hits):
        if i % 200 == 0:
            if cancelled():
                raise SearchCancelled()
            yield i / max(len(hits), 1)
        mol = Chem.MolFromSmiles(hit.smiles)
        if mol is None:
            continue
        rows.append(describe_row(MoleculeRow(id=hit.id, smiles=Chem.MolToSmiles(mol), source=hit.smiles, mol=mol,
                                             score=hit.score)))
    return rows
