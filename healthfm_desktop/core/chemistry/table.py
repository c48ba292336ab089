"""Rows of the Molecules workspace's table: read from files (standardised, described, with the
file's ids, names and tags kept), described one by one, and exported to CSV or SD files."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

from healthfm_desktop.core.chemistry.session import MoleculeRow
from healthfm_desktop.core.errors import UserFacingError

_PARALLEL_FROM = 2000  # records: below this, starting worker processes costs more than it saves
_PROGRESS_EVERY = 200


def describe_row(row: MoleculeRow) -> MoleculeRow:
    """Fill ``row``'s properties and alert atoms from its molecule (RDKit's descriptors)."""
    from healthfm_desktop.core.chemistry.properties import describe_mol

    props = describe_mol(row.mol, with_alert_atoms=True)
    row.alert_atoms = props.pop("alert_atoms")
    row.properties = props
    return row


def row_from_smiles(text: str, ident: str) -> MoleculeRow:
    """A described row for a typed SMILES; UserFacingError when RDKit cannot read it."""
    from rdkit import Chem

    from healthfm_desktop.core.chemistry.reading import parse_smiles

    mol, error = parse_smiles(text)
    if mol is None:
        raise UserFacingError(f"invalid SMILES: {error}")
    return describe_row(MoleculeRow(id=ident, smiles=Chem.MolToSmiles(mol), source=text, mol=mol))


def import_rows(path: Path, smiles_column: str | None, standardise: bool, tautomer: bool, client=None):
    """Generator: yields (fraction, message); returns the rows of ``path``, unreadable records
    kept and marked. Large files are described on worker processes (RDKit holds the GIL), or on
    the Dask cluster of ``client`` (Settings > Compute) when one is given."""
    from rdkit import Chem

    from healthfm_desktop.core.chemistry.properties import describe_smiles_on_cluster, describe_smiles_parallel
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
            yield min(consumed / size, 0.99) * 0.3, f"{path.name}: read {len(rows)} molecules"
    valid = [r for r in rows if r.mol is not None]
    if len(valid) < _PARALLEL_FROM:
        for i, row in enumerate(valid):
            describe_row(row)
            if i % _PROGRESS_EVERY == 0:
                yield 0.3 + 0.7 * i / len(valid), f"{path.name}: described {i} of {len(valid)}"
        return rows
    position = 0
    smiles = [r.smiles for r in valid]
    where = "" if client is None else " on the Dask cluster"
    described_chunks = describe_smiles_parallel(smiles) if client is None else describe_smiles_on_cluster(smiles, client)
    for done, described in described_chunks:
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
        yield 0.3 + 0.7 * done / len(valid), f"{path.name}: described {done} of {len(valid)}{where}"
    return rows


# ---- export --------------------------------------------------------------------------------
def _write_csv(rows: list[MoleculeRow], show_withheld: bool = False) -> tuple[bytes, int]:
    flat = [row.flat(show_withheld) for row in rows]
    columns = list(dict.fromkeys(name for values in flat for name in values))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(flat)
    return buffer.getvalue().encode("utf-8"), len(flat)


def _write_sdf(rows: list[MoleculeRow], show_withheld: bool = False) -> tuple[bytes, int]:
    """One record per readable row: the id as the title, every other value as an SD tag (the
    file's own tags among them)."""
    from rdkit import Chem

    buffer = io.StringIO()
    writer = Chem.SDWriter(buffer)
    count = 0
    for row in rows:
        if row.mol is None:
            continue
        mol = Chem.Mol(row.mol)
        for name in list(mol.GetPropNames()):
            mol.ClearProp(name)
        mol.SetProp("_Name", row.id)
        for name, value in row.flat(show_withheld).items():
            if name not in ("id", "smiles") and value is not None:
                mol.SetProp(name, str(value))
        writer.write(mol)
        count += 1
    writer.close()
    return buffer.getvalue().encode("utf-8"), count


#: the one registry of table exporters: file suffix -> writer of (bytes, rows written)
EXPORTERS: dict[str, Callable[[list[MoleculeRow], bool], tuple[bytes, int]]] = {
    ".csv": _write_csv, ".sdf": _write_sdf, ".sd": _write_sdf,
}


def export_rows(path: Path, rows: list[MoleculeRow], show_withheld: bool = False) -> int:
    """Write ``rows`` to ``path`` (format by suffix) atomically; the number of rows written.
    Predictions outside their model's domain are left empty unless ``show_withheld``."""
    from healthfm_desktop.core.storage.atomic import atomic_write_bytes

    path = Path(path)
    writer = EXPORTERS.get(path.suffix.lower())
    if writer is None:
        raise UserFacingError(f"cannot export to {path.suffix or 'a file without suffix'}: choose .csv or .sdf")
    data, count = writer(rows, show_withheld)
    atomic_write_bytes(path, data)
    return count
