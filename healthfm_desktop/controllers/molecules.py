"""Molecules workspace controller: starts the work on workers (import, prediction, searches,
library indexing, analogues, export) and passes the session model's events on as signals.
The state lives in core's MoleculeSession; the chemistry in core."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import Signal

from healthfm_desktop.controllers.app import open_settings
from healthfm_desktop.controllers.base import WorkspaceController
from healthfm_desktop.controllers.workers import AppWidePool, Progress
from healthfm_desktop.core.chemistry.session import HITS, MoleculeRow, MoleculeSession
from healthfm_desktop.core.errors import UserFacingError
from healthfm_desktop.core.routing import MOLECULES

log = logging.getLogger(__name__)

_DEPICTION_CACHE = 2000
_PROGRESS_EVERY_S = 0.1  # the least time between two progress updates of a blocking job
HIT_LIMIT_SETTING = "molecules/hit_limit"

__all__ = ["MoleculeRow", "MoleculesController", "SUBSTRUCTURE_WORKERS"]


def _import_rows(path: Path, smiles_column: str | None, standardise: bool, tautomer: bool, scheduler: str = ""):
    """Generator job over core's import: Progress between steps, returns (path, rows). With a
    scheduler (Settings > Compute) a large file is described on that Dask cluster."""
    from healthfm_desktop.core.chemistry.table import import_rows
    from healthfm_desktop.core.cluster import compute_client

    with compute_client(scheduler) as client:
        steps = import_rows(path, smiles_column, standardise, tautomer, client)
        while True:
            try:
                fraction, message = next(steps)
            except StopIteration as stop:
                return path, stop.value
            yield Progress(fraction, message)


def _predict_rows(rows: list[MoleculeRow], scheduler: str = ""):
    """(row, prediction) pairs, and where they ran (None: here; else the cluster's state)."""
    from healthfm_desktop.core.chemistry.predictors import predict_mols
    from healthfm_desktop.core.cluster import chunked, cluster_state, compute_client, describe_state, map_ordered

    valid = [r for r in rows if r.mol is not None]
    results = []
    with compute_client(scheduler) as client:
        where = describe_state(cluster_state(client)) if client is not None else None
        chunks = list(chunked([r.mol for r in valid], 128))
        for predictions in map_ordered(predict_mols, chunks, 3, client=client, label="predict"):
            results.extend(predictions)
            yield Progress(len(results) / max(len(valid), 1), f"predicted {len(results)} of {len(valid)}"
                           + (f" on {where}" if where else ""))
    return list(zip(valid, results)), where


def _drain(steps, report, message: str):
    """Run a core generator of fractions to its return value, reporting each fraction."""
    while True:
        try:
            fraction = next(steps)
        except StopIteration as stop:
            return stop.value
        report(Progress(fraction, message))


# substructure workers (a fork server importing RDKit, then one process per core): the searches
# over an index opened now match their candidates on every core
SUBSTRUCTURE_WORKERS = AppWidePool("substructure workers", "healthfm_desktop.core.chemistry.search_index",
                                   lambda search_index: search_index._pool is None,
                                   start="warm_substructure_workers", stop="shutdown_substructure_workers")


def _analogues(seed, known: set[str], count: int, source: str, min_similarity: float):
    from healthfm_desktop.core.chemistry.analogues import generate_analogues_steps
    from healthfm_desktop.core.chemistry.table import describe_row

    yield Progress(0.0, "generating analogues…")
    steps = generate_analogues_steps(seed, count=count, known=known, source=source, min_similarity=min_similarity)
    while True:
        try:
            fraction, message = next(steps)
        except StopIteration as stop:
            analogues, report = stop.value
            break
        yield Progress(fraction, message)  # also where a cancel takes effect
    rows = []
    for i, analogue in enumerate(analogues, start=1):
        rows.append(describe_row(MoleculeRow(
            id=f"{analogue.origin}-{i}", smiles=analogue.smiles, source=analogue.smiles, mol=analogue.mol,
            score=analogue.score, predictions=analogue.predictions, in_domain=analogue.in_domain,
            fields={"origin": analogue.origin, "similarity to seed": f"{analogue.similarity:.2f}",
                    "route": " → ".join(analogue.route)})))
    return rows, report


def _molecule_files(paths: list[Path]) -> list[Path]:
    """Files as given; a folder stands for the molecule files in it (recursively)."""
    from healthfm_desktop.core.routing import MOLECULES, route_file

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(p for p in sorted(path.rglob("*")) if p.is_file() and route_file(p)[0] == MOLECULES)
        else:
            files.append(path)
    return files


class MoleculesController(WorkspaceController):
    name = MOLECULES
    title = "Molecules"

    files_opened = Signal(list)
    rows_changed = Signal()  # the shown rows were replaced, extended, removed or reordered
    rows_updated = Signal()  # values (predictions) of shown rows changed
    view_changed = Signal()  # filters, table search, table/hit list
    index_changed = Signal(object)  # IndexState of the library index in use
    column_choice_needed = Signal(object, list)  # path, candidate columns

    def __init__(self, parent=None, index_cache=None):
        super().__init__(parent)
        self.session = MoleculeSession()
        self.session.events.rows_changed.connect(self.rows_changed.emit)
        self.session.events.rows_updated.connect(self.rows_updated.emit)
        self.session.events.view_changed.connect(self.view_changed.emit)
        self.session.events.index_changed.connect(self.index_changed.emit)
        self.standardise = True
        self.canonical_tautomer = False
        self._index_cache = index_cache
        self._depictions: OrderedDict = OrderedDict()
        self._opened = None  # (folder, LibraryIndex) of the library index searched last
        self._cancel_flags: set[threading.Event] = set()  # seen by the searches between steps
        self._settings = open_settings()
        try:
            self.session.hit_limit = max(0, int(self._settings.value(HIT_LIMIT_SETTING, self.session.hit_limit)))
        except (TypeError, ValueError):
            pass
        SUBSTRUCTURE_WORKERS.stop_when_the_app_quits()
        from healthfm_desktop.controllers.adaptation import WorkspaceAdaptation

        self.adaptation = WorkspaceAdaptation("molecules", "molecule", self.adaptation_items,
                                              column_values=self.column_labels, parent=self)

    @property
    def rows(self) -> list[MoleculeRow]:
        """The rows of the view in front (the table or the hit list), as views index them."""
        return self.session.shown

    def adaptation_items(self, ids: list[str] | None):
        """Items (id, RDKit molecule) for labelling, training, running and similarity: every
        readable row of the table, or those with ``ids``."""
        from healthfm_desktop.core.foundation.datasets import Items

        items = Items("molecule")
        wanted = None if ids is None else set(ids)
        for row in self.session.rows:
            if wanted is None or row.id in wanted:
                if row.mol is not None:
                    items.add(row.id, row.mol, None)
                elif wanted is not None:
                    items.errors.append((row.id, row.error or "not a readable structure"))
        return items

    def column_labels(self, column: str) -> dict[str, str]:
        """Each row's value in the file's column ``column`` (for "labels from a column")."""
        values = {row.id: str(row.fields.get(column, "")).strip() for row in self.session.rows}
        return {key: value for key, value in values.items() if value}

    # ---- import -------------------------------------------------------------------------
    def open_paths(self, paths: list[Path], smiles_column: str | None = None) -> None:
        paths = _molecule_files([Path(p) for p in paths])
        self.files_opened.emit(paths)
        for path in paths:
            self._import(path, smiles_column)

    def _import(self, path: Path, smiles_column: str | None) -> None:
        from healthfm_desktop.core.chemistry.reading import AmbiguousSmilesColumnError

        def on_error(text: str, path=path) -> None:
            self.message.emit("error", f"{path.name}: {text}")

        scheduler = self.compute_scheduler()

        def run(path=path):
            try:
                return (yield from _import_rows(path, smiles_column, self.standardise, self.canonical_tautomer,
                                                scheduler))
            except AmbiguousSmilesColumnError as exc:
                return path, exc.candidates

        self.start_job(run, on_result=self._imported, on_error=on_error)

    def _imported(self, result) -> None:
        path, rows = result
        if rows and isinstance(rows[0], str):
            self.column_choice_needed.emit(path, rows)
            return
        self.session.add_rows(rows)
        bad = sum(1 for r in rows if r.error)
        duplicates = sum(len(g) - 1 for g in self.session.duplicate_groups().values())
        self.message.emit("info", f"{path.name}: {len(rows)} records, {bad} unreadable (kept, marked)"
                                  + (f"; {duplicates} duplicate structure(s) in the table (marked)" if duplicates else ""))

    # ---- depiction and editing ----------------------------------------------------------
    def depiction(self, row: int, width: int = 160, height: int = 80, highlight: bool = False) -> bytes | None:
        rows = self.session.shown
        if not 0 <= row < len(rows) or rows[row].mol is None:
            return None
        item = rows[row]
        key = (item.key, width, height, highlight)
        if key in self._depictions:
            self._depictions.move_to_end(key)
            return self._depictions[key]
        from healthfm_desktop.core.chemistry.depiction import depict_png

        atoms = sorted({a for matches in item.alert_atoms.values() for m in matches for a in m}) if highlight else None
        png = depict_png(item.mol, width, height, atoms)
        self._depictions[key] = png
        if len(self._depictions) > _DEPICTION_CACHE:
            self._depictions.popitem(last=False)
        return png

    def check_smiles(self, text: str, width: int = 260, height: int = 180) -> tuple[bool, str, bytes | None]:
        """(valid, message, depiction) for the SMILES editor."""
        from healthfm_desktop.core.chemistry.depiction import depict_png
        from healthfm_desktop.core.chemistry.reading import parse_smiles

        mol, error = parse_smiles(text)
        if mol is None:
            return False, error or "invalid SMILES", None
        from rdkit.Chem import Descriptors

        return True, f"valid: {mol.GetNumHeavyAtoms()} heavy atoms, MW {Descriptors.MolWt(mol):.1f}", depict_png(mol, width, height)

    def add_smiles(self, text: str, ident: str | None = None) -> None:
        from healthfm_desktop.core.chemistry.table import row_from_smiles

        self.session.add_rows([row_from_smiles(text, ident or f"new-{len(self.session.rows) + 1}")])

    # ---- filters, views, duplicates -----------------------------------------------------
    def set_filters(self, **changes) -> None:
        self.session.set_filters(**changes)

    def show_all(self) -> None:
        self.session.show_all()

    def show_hit_list(self) -> None:
        self.session.show_hit_list()

    def add_hits_to_table(self) -> None:
        added = self.session.add_hits_to_table()
        self.message.emit("info", f"{added} hits added to the table (structures already in it left out)")

    def merge_duplicates(self) -> None:
        merged = self.session.merge_duplicates()
        self.message.emit("info", f"merged {merged} duplicate row(s) into the first row of their structure"
                          if merged else "no duplicate structures in the table")

    def set_hit_limit(self, limit: int) -> None:
        self.session.hit_limit = max(0, int(limit))
        self._settings.setValue(HIT_LIMIT_SETTING, self.session.hit_limit)

    def compute_scheduler(self) -> str:
        """The Compute setting: "" for this computer, else the Dask scheduler address."""
        from healthfm_desktop.controllers.app import compute_scheduler

        return compute_scheduler(self._settings)

    # ---- models -------------------------------------------------------------------------
    def predict(self, rows: list[int] | None = None) -> None:
        shown = self.session.shown
        chosen = [shown[i] for i in (rows if rows is not None else range(len(shown)))]

        def done(result) -> None:
            pairs, where = result
            for row, prediction in pairs:
                row.predictions = prediction.values
                row.in_domain = prediction.in_domain
                row.neighbours = prediction.neighbours
                row.intervals, row.prediction_sets = prediction.intervals, prediction.prediction_sets
                row.domain_reasons = prediction.reasons
            withheld = sum(not all(prediction.in_domain.values()) for _, prediction in pairs)
            note = (f"; {withheld} outside a model's domain: withheld (Run anyway shows them, marked)"
                    if withheld and not self.session.show_withheld else "")
            self.message.emit("info", f"predicted {len(pairs)} molecules" + (f" on {where}" if where else "") + note)
            self.session.rows_updated()

        self.start_job(_predict_rows, chosen, self.compute_scheduler(), on_result=done)

    def set_show_withheld(self, show: bool) -> None:
        """Show (marked) or withhold the predictions outside their model's domain."""
        self.session.set_show_withheld(show)

    # ---- search -------------------------------------------------------------------------
    def cancel_jobs(self) -> None:
        for flag in self._cancel_flags:
            flag.set()
        super().cancel_jobs()

    def _start_search(self, run, done) -> None:
        """Start a search job with its own cancel flag (set by cancel_jobs)."""
        cancel = threading.Event()
        self._cancel_flags.add(cancel)
        job = self.start_job(run, cancel, on_result=done)
        job.finished.connect(lambda: self._cancel_flags.discard(cancel))

    def _reporter(self):
        """A progress callback for a blocking job: emits at most every _PROGRESS_EVERY_S."""
        last = [0.0]

        def report(progress: Progress) -> None:
            now = time.perf_counter()
            if now - last[0] >= _PROGRESS_EVERY_S:
                last[0] = now
                self.progress.emit(progress)  # queued to the UI thread

        return report

    def search(self, query: str, mode: str = "similar", library: Path | None = None,
               threshold: float | None = None, rows: list[int] | None = None) -> None:
        """Search the table (all of it, or the shown ``rows`` when the user narrows it): the hits
        become a filter on the table, best first. Or search a library file or index folder: the
        file is indexed once (progress, cancel) and the index reused; the hits are shown beside
        the table. At most the session's hit limit (0: all)."""
        from healthfm_desktop.core.chemistry.workspace_search import SearchCancelled

        limit = self.session.hit_limit or None
        report = self._reporter()
        what = f"{'similar to' if mode == 'similar' else 'containing'} {query}"
        if library is None:
            from healthfm_desktop.core.chemistry.workspace_search import search_rows

            table = self.session.rows if self.session.view != HITS else []
            searched = [table[i] for i in rows] if rows is not None else list(table)

            def run(cancel):
                try:
                    return _drain(search_rows(searched, query, mode, threshold, limit, cancel.is_set), report,
                                  f"searching {len(searched)} rows…")
                except SearchCancelled:
                    return None

            def done(scored) -> None:
                if scored is None:
                    return
                self.session.apply_table_search(what, scored, len(searched))
                self.message.emit("info", f"{len(scored)} hits among {len(searched)} rows")

            self._start_search(run, done)
            return

        from healthfm_desktop.core.chemistry.workspace_search import IndexCache, open_library, search_library

        library = Path(library)
        if mode != "similar":  # the substructure workers start alongside the search
            SUBSTRUCTURE_WORKERS.start()
        from healthfm_desktop.core.cluster import cluster_state, compute_client, describe_state

        cache = self._index_cache or IndexCache(_default_index_root())
        opened = self._opened
        scheduler = self.compute_scheduler()

        def run(cancel):
            try:
                def rate(step) -> None:
                    report(Progress(step.fraction, step.message()))

                index, state = open_library(library, cache, rate, cancel.is_set, opened)
                with compute_client(scheduler) as client:
                    where = describe_state(cluster_state(client)) if client is not None else None
                    report(Progress(None, f"searching {index.size:,} molecules" + (f" on {where}…" if where else "…")))
                    hits = _drain(search_library(index, query, mode, threshold, limit, cancel.is_set, report, client),
                                  report, "describing the hits…")
                return index, state, hits, where
            except SearchCancelled:
                return None

        def done(result) -> None:
            if result is None:
                return
            index, state, hits, where = result
            self._opened = (index.folder, index)
            self.session.set_index(state)
            self.session.show_hits(f"hits {what} in {library.name}", hits)
            self.message.emit("info", f"{len(hits)} hits in {state.describe()}" + (f", searched on {where}" if where else ""))

        self._start_search(run, done)

    # ---- analogue generation ------------------------------------------------------------
    def generate(self, row: int, count: int = 50, source: str = "both", min_similarity: float = 0.0) -> None:
        """Analogues of one molecule from ``source`` ("both", "model", "mutation"), new to the
        table, at least ``min_similarity`` (Tanimoto) to it, ranked; shown beside the table."""
        seed = self.session.shown[row]
        if seed.mol is None:
            self.message.emit("error", "this record could not be read, so it has no analogues")
            return
        known = {r.smiles for r in self.session.rows if r.mol is not None}

        def done(result) -> None:
            rows, report = result
            self.session.show_hits(f"analogues of {seed.id}", rows)
            notes = "".join(f"; {note}" for note in report.notes)
            if report.model_samples:
                notes = f"; SMILES model: {report.model_valid} of {report.model_samples} samples valid" + notes
            self.message.emit("info", f"{len(rows)} analogues of {seed.id} (validity {report.validity:.0%}, "
                                      f"novel {report.novelty:.0%} of unique proposals){notes}")

        self.start_job(_analogues, seed.mol, known, count, source, min_similarity, on_result=done)

    # ---- export -------------------------------------------------------------------------
    def export(self, path: Path, rows: list[int] | None = None) -> None:
        """Write the shown ``rows`` (all shown rows when None) to CSV or SD on a worker."""
        from healthfm_desktop.core.chemistry.table import export_rows

        shown = self.session.shown
        chosen = [shown[i] for i in (rows if rows is not None else range(len(shown)))]
        path = Path(path)

        def done(count: int) -> None:
            self.message.emit("info", f"exported {count} molecules to {path}")

        self.start_job(export_rows, path, chosen, self.session.show_withheld, on_result=done)


def _default_index_root() -> Path:
    from healthfm_desktop.core.paths import user_cache_dir

    return user_cache_dir() / "molecule-indexes"
