"""Molecules workspace controller: holds the compound table, imports files on a worker
(properties, alerts, optional standardisation), depicts, predicts with applicability domain,
searches a library or the table, exports CSV/SDF. Views get plain rows and PNG bytes."""

from __future__ import annotations

import csv
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import Signal

from healthfm_desktop.controllers.base import WorkspaceController
from healthfm_desktop.controllers.workers import AppWidePool, Progress
from healthfm_desktop.core.errors import UserFacingError
from healthfm_desktop.core.routing import MOLECULES

log = logging.getLogger(__name__)

_DEPICTION_CACHE = 2000
_PROGRESS_EVERY = 200


@dataclass
class MoleculeRow:
    """One row of the grid. ``mol`` is RDKit's molecule (kept in the controller layer, never
    read by views), ``original`` the input SMILES/title when standardisation changed it."""

    id: str
    smiles: str
    source: str
    mol: object | None = None
    error: str | None = None
    original: str | None = None
    properties: dict = field(default_factory=dict)
    alert_atoms: dict = field(default_factory=dict)
    predictions: dict = field(default_factory=dict)
    in_domain: dict = field(default_factory=dict)
    neighbours: dict = field(default_factory=dict)
    score: float | None = None
    fields: dict = field(default_factory=dict)


_PARALLEL_FROM = 2000  # records: below this, starting worker processes costs more than it saves


def _import_rows(path: Path, smiles_column: str | None, standardise: bool, tautomer: bool):
    """Generator job: read, optionally standardise, describe; yields Progress, returns rows.
    Large files are described on worker processes (RDKit holds the GIL)."""
    from rdkit import Chem

    from healthfm_desktop.core.chemistry.properties import describe_mol, describe_smiles_parallel
    from healthfm_desktop.core.chemistry.reading import read_molecules
    from healthfm_desktop.core.chemistry.standardize import standardize

    rows: list[MoleculeRow] = []
    size = max(path.stat().st_size, 1)
    consumed = 0
    for record in read_molecules(path, smiles_column=smiles_column):
        consumed += len(record.source) + 1
        row = MoleculeRow(id=record.id, smiles=record.smiles, source=record.source, fields=dict(record.fields))
        if record.mol is None:
            row.error = record.error
        else:
            mol = record.mol
            if standardise:
                try:
                    mol = standardize(mol, canonical_tautomer=tautomer)
                except ValueError as exc:
                    row.error = str(exc)
                    mol = None
            if mol is not None:
                row.mol = mol
                row.smiles = Chem.MolToSmiles(mol)
                if row.smiles != record.smiles:
                    row.original = record.smiles
        rows.append(row)
        if len(rows) % _PROGRESS_EVERY == 0:
            yield Progress(min(consumed / size, 0.99) * 0.3, f"{path.name}: read {len(rows)} molecules")
    valid = [r for r in rows if r.mol is not None]
    if len(valid) < _PARALLEL_FROM:
        for i, row in enumerate(valid):
            props = describe_mol(row.mol, with_alert_atoms=True)
            row.alert_atoms = props.pop("alert_atoms")
            row.properties = props
            if i % _PROGRESS_EVERY == 0:
                yield Progress(0.3 + 0.7 * i / len(valid), f"{path.name}: described {i} of {len(valid)}")
        return path, rows
    position = 0
    for done, described in describe_smiles_parallel([r.smiles for r in valid]):
        for props in described:
            row = valid[position]
            position += 1
            if "error" in props:
                row.error = props["error"]
                row.mol = None
                continue
            # alert atoms are numbered as in the molecule parsed from the SMILES: depict that one
            row.mol = Chem.MolFromSmiles(row.smiles)
            row.alert_atoms = props.pop("alert_atoms")
            row.properties = {k: v for k, v in props.items() if k not in ("id", "smiles")}
        yield Progress(0.3 + 0.7 * done / len(valid), f"{path.name}: described {done} of {len(valid)}")
    return path, rows


def _predict_rows(rows: list[MoleculeRow]):
    from healthfm_desktop.core.chemistry.predictors import predict_mols

    valid = [r for r in rows if r.mol is not None]
    results = []
    for start in range(0, len(valid), 128):
        chunk = valid[start : start + 128]
        results.extend(predict_mols([r.mol for r in chunk], neighbours=3))
        yield Progress((start + len(chunk)) / max(len(valid), 1), f"predicted {start + len(chunk)} of {len(valid)}")
    return list(zip(valid, results))


def _search(library: Path | None, rows: list[MoleculeRow], query_text: str, mode: str, threshold: float | None,
            top: int | None, opened=None):
    """(hit rows, the LibraryIndex searched when ``library`` is an index folder, else None).
    ``opened``: that index as an earlier search opened it (its atom types already loaded)."""
    from rdkit import Chem

    from healthfm_desktop.core.chemistry.properties import describe_mol
    from healthfm_desktop.core.chemistry.search_index import (
        LibraryIndex, build_index, is_index, parse_query_smiles, substructure_query,
    )

    query = parse_query_smiles(query_text) if mode == "similar" else substructure_query(query_text)
    yield Progress(None, "searching…")
    kept = None
    if library is None:
        hits = _table_hits(rows, query, mode, threshold, top)
    else:
        if is_index(library):
            index = kept = opened if opened is not None else LibraryIndex.open(library)
        else:
            import tempfile

            index = build_index([library], tempfile.mkdtemp(prefix="healthfm-index-"), workers=1)
        found = index.similar(query, threshold=threshold, top=top) if mode == "similar" else index.substructure(query, top=top)
        hits = [(hit.id, hit.smiles, hit.score) for hit in found]
    out = []
    for ident, smiles, score in hits:
        mol = Chem.MolFromSmiles(smiles)
        row = MoleculeRow(id=ident, smiles=Chem.MolToSmiles(mol), source=smiles, mol=mol, score=score)
        props = describe_mol(mol, with_alert_atoms=True)
        row.alert_atoms = props.pop("alert_atoms")
        row.properties = props
        out.append(row)
    return out, kept


def _table_hits(rows: list[MoleculeRow], query, mode: str, threshold: float | None, top: int | None):
    """(id, SMILES, score) of the table's hits, as an index of the table would give them - each
    row's molecule rebuilt from its SMILES by RDKit; substructure: HasSubstructMatch, in table
    order; similarity: BulkTanimotoSimilarity on Morgan radius-2 2048-bit fingerprints, best
    first, ties in table order - without writing and indexing the table for every search."""
    from rdkit import Chem, DataStructs

    from healthfm_desktop.core.chemistry.fingerprints import morgan_generator

    valid = [(r, Chem.MolFromSmiles(r.smiles)) for r in rows if r.mol is not None]
    valid = [(r, mol) for r, mol in valid if mol is not None]
    if mode != "similar":
        found = [(r.id, r.smiles, 1.0) for r, mol in valid if mol.HasSubstructMatch(query)]
        return found[:top] if top else found
    if threshold is None:
        threshold = 0.0 if top else 0.7
    if not 0.0 <= threshold <= 1.0:
        raise UserFacingError("the similarity threshold must lie between 0 and 1")
    generator = morgan_generator()
    scores = DataStructs.BulkTanimotoSimilarity(generator.GetFingerprint(query),
                                                [generator.GetFingerprint(mol) for _, mol in valid])
    ranked = sorted((i for i, score in enumerate(scores) if score >= threshold), key=lambda i: (-scores[i], i))
    if top:
        ranked = ranked[:top]
    return [(valid[i][0].id, valid[i][0].smiles, scores[i]) for i in ranked]


def _index_stamp(folder: Path) -> tuple | None:
    """What tells an index folder rebuilt since it was opened (its index.json rewritten); None
    when ``folder`` holds no index (search_index.is_index reads the same file)."""
    try:
        stat = (folder / "index.json").stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


# substructure workers (a fork server importing RDKit, then one process per core): the searches
# over an index opened now match their candidates on every core
SUBSTRUCTURE_WORKERS = AppWidePool("substructure workers", "healthfm_desktop.core.chemistry.search_index",
                                   lambda search_index: search_index._pool is None,
                                   start="warm_substructure_workers", stop="shutdown_substructure_workers")


def _analogues(seed, known: set[str], count: int, source: str, min_similarity: float):
    from healthfm_desktop.core.chemistry.analogues import generate_analogues_steps
    from healthfm_desktop.core.chemistry.properties import describe_mol

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
        row = MoleculeRow(id=f"{analogue.origin}-{i}", smiles=analogue.smiles, source=analogue.smiles, mol=analogue.mol,
                          score=analogue.score, predictions=analogue.predictions, in_domain=analogue.in_domain,
                          fields={"origin": analogue.origin, "similarity to seed": f"{analogue.similarity:.2f}",
                                  "route": " → ".join(analogue.route)})
        props = describe_mol(analogue.mol, with_alert_atoms=True)
        row.alert_atoms = props.pop("alert_atoms")
        row.properties = props
        rows.append(row)
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
    rows_changed = Signal()  # the whole table was replaced or extended
    rows_updated = Signal()  # values (predictions) of existing rows changed
    column_choice_needed = Signal(object, list)  # path, candidate columns

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list[MoleculeRow] = []
        self.standardise = True
        self.canonical_tautomer = False
        self.showing_search = False
        self._depictions: OrderedDict = OrderedDict()
        self._index = None  # (folder, stamp, LibraryIndex) of the library index searched last
        SUBSTRUCTURE_WORKERS.stop_when_the_app_quits()

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

        def run(path=path):
            try:
                return (yield from _import_rows(path, smiles_column, self.standardise, self.canonical_tautomer))
            except AmbiguousSmilesColumnError as exc:
                return path, exc.candidates

        self.start_job(run, on_result=self._imported, on_error=on_error)

    def _imported(self, result) -> None:
        path, rows = result
        if rows and isinstance(rows[0], str):
            self.column_choice_needed.emit(path, rows)
            return
        if self.showing_search:
            self.rows = []
            self.showing_search = False
        self.rows.extend(rows)
        bad = sum(1 for r in rows if r.error)
        self.message.emit("info", f"{path.name}: {len(rows)} records, {bad} unreadable (kept, marked)")
        self.rows_changed.emit()

    # ---- depiction and editing ----------------------------------------------------------
    def depiction(self, row: int, width: int = 160, height: int = 80, highlight: bool = False) -> bytes | None:
        if not 0 <= row < len(self.rows) or self.rows[row].mol is None:
            return None
        item = self.rows[row]
        key = (id(item), width, height, highlight)
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
        from rdkit import Chem

        from healthfm_desktop.core.chemistry.properties import describe_mol
        from healthfm_desktop.core.chemistry.reading import parse_smiles

        mol, error = parse_smiles(text)
        if mol is None:
            raise UserFacingError(f"invalid SMILES: {error}")
        row = MoleculeRow(id=ident or f"new-{len(self.rows) + 1}", smiles=Chem.MolToSmiles(mol), source=text, mol=mol)
        props = describe_mol(mol, with_alert_atoms=True)
        row.alert_atoms = props.pop("alert_atoms")
        row.properties = props
        self.rows.append(row)
        self.rows_changed.emit()

    # ---- models -------------------------------------------------------------------------
    def predict(self, rows: list[int] | None = None) -> None:
        chosen = [self.rows[i] for i in (rows if rows is not None else range(len(self.rows)))]

        def done(pairs) -> None:
            for row, prediction in pairs:
                row.predictions = prediction.values
                row.in_domain = prediction.in_domain
                row.neighbours = prediction.neighbours
            self.message.emit("info", f"predicted {len(pairs)} molecules")
            self.rows_updated.emit()

        self.start_job(_predict_rows, chosen, on_result=done)

    # ---- search -------------------------------------------------------------------------
    def search(self, query: str, mode: str = "similar", library: Path | None = None,
               threshold: float | None = None, top: int | None = 100) -> None:
        """Search a library file/index (or the current table when ``library`` is None); the hits
        replace the table, best first, with their score."""

        library = Path(library) if library else None
        opened = None
        stamp = _index_stamp(library) if library is not None else None  # None: not an index folder
        if stamp is not None:
            if self._index is not None and self._index[:2] == (library, stamp):
                opened = self._index[2]
            else:  # an index opened for searching: its worker processes start alongside the search
                SUBSTRUCTURE_WORKERS.start()

        def done(result) -> None:
            rows, index = result
            if index is not None:
                self._index = (library, stamp, index)
            self.rows = rows
            self.showing_search = True
            self._depictions.clear()
            self.message.emit("info", f"{len(rows)} hits")
            self.rows_changed.emit()

        self.start_job(_search, library, list(self.rows), query, mode, threshold, top, opened, on_result=done)

    # ---- analogue generation ------------------------------------------------------------
    def generate(self, row: int, count: int = 50, source: str = "both", min_similarity: float = 0.0) -> None:
        """Analogues of one molecule from ``source`` ("both", "model", "mutation"), new to the
        table, at least ``min_similarity`` (Tanimoto) to it, ranked; they replace the table."""
        seed = self.rows[row]
        if seed.mol is None:
            self.message.emit("error", "this record could not be read, so it has no analogues")
            return
        known = {r.smiles for r in self.rows if r.mol is not None}

        def done(result) -> None:
            rows, report = result
            self.rows = rows
            self.showing_search = True
            self._depictions.clear()
            notes = "".join(f"; {note}" for note in report.notes)
            if report.model_samples:
                notes = f"; SMILES model: {report.model_valid} of {report.model_samples} samples valid" + notes
            self.message.emit("info", f"{len(rows)} analogues of {seed.id} (validity {report.validity:.0%}, "
                                      f"novel {report.novelty:.0%} of unique proposals){notes}")
            self.rows_changed.emit()

        self.start_job(_analogues, seed.mol, known, count, source, min_similarity, on_result=done)

    # ---- export -------------------------------------------------------------------------
    def export(self, path: Path, rows: list[int] | None = None) -> int:
        from rdkit import Chem

        from healthfm_desktop.core.storage.atomic import atomic_write_bytes

        path = Path(path)
        chosen = [self.rows[i] for i in (rows if rows is not None else range(len(self.rows)))]
        if path.suffix.lower() in (".sdf", ".sd"):
            import io

            buffer = io.StringIO()
            writer = Chem.SDWriter(buffer)
            count = 0
            for row in chosen:
                if row.mol is None:
                    continue
                mol = Chem.Mol(row.mol)
                mol.SetProp("_Name", row.id)
                for key, value in self._flat(row).items():
                    if key not in ("id", "smiles"):
                        mol.SetProp(key, str(value))
                writer.write(mol)
                count += 1
            writer.close()
            atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
            return count
        import io

        buffer = io.StringIO()
        flat = [self._flat(r) for r in chosen]
        columns = list(dict.fromkeys(k for f in flat for k in f))
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(flat)
        atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
        return len(flat)

    @staticmethod
    def _flat(row: MoleculeRow) -> dict:
        flat = {"id": row.id, "smiles": row.smiles}
        if row.original:
            flat["original_smiles"] = row.original
        for key, value in row.properties.items():
            flat[key] = ";".join(value) if isinstance(value, list) else value
        for key, value in row.predictions.items():
            flat[key] = value
            flat[f"{key} in_domain"] = row.in_domain.get(key)
        if row.score is not None:
            flat["score"] = row.score
        if row.error:
            flat["error"] = row.error
        return flat
