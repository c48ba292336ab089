"""Read molecules from SMILES, CSV/TSV, SDF and MOL files (gzipped or not). Every input record
becomes a ``MoleculeRecord``; a record RDKit cannot read is kept, marked with RDKit's own
message, and the file goes on."""

from __future__ import annotations

import csv
import gzip
import io
import logging
import re
import threading
from contextlib import contextmanager
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rdkit import Chem, rdBase

from healthfm_desktop.core.errors import UnreadableFileError, UserFacingError

SDF_SUFFIXES = {".sdf", ".sd"}
MOL_SUFFIXES = {".mol", ".mdl"}
SMILES_SUFFIXES = {".smi", ".smiles", ".ism", ".can", ".txt"}
TABLE_SUFFIXES = {".csv", ".tsv", ".tab"}
SUPPORTED_SUFFIXES = SDF_SUFFIXES | MOL_SUFFIXES | SMILES_SUFFIXES | TABLE_SUFFIXES

# Column names that say "this column holds SMILES", most specific first.
SMILES_COLUMN_NAMES = ("smiles", "canonical_smiles", "isomeric_smiles", "smiles_string", "smile", "structure", "mol")
ID_COLUMN_NAMES = ("id", "chembl_id", "molecule_chembl_id", "compound_id", "mol_id", "zinc_id", "cid")
_CONTENT_SAMPLE = 50
_CONTENT_MIN_FRACTION = 0.8
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_TIMESTAMP = re.compile(r"^\[\d\d:\d\d:\d\d\]\s*")
csv.field_size_limit(10_000_000)


class AmbiguousSmilesColumnError(UserFacingError):
    """Several columns of a table could hold the SMILES; the user must choose one."""

    def __init__(self, path: Path, candidates: list[str]):
        self.path = path
        self.candidates = candidates
        super().__init__(
            f"several columns could hold the SMILES ({', '.join(candidates)}); choose one "
            "(or name it 'smiles')"
        )


@dataclass
class MoleculeRecord:
    """One input record. ``mol`` is None when RDKit could not read it; ``error`` says why.

    ``source`` is the text the record came from (a SMILES, or a molblock for SDF/MOL),
    ``fields`` the other columns or SD properties, ``index`` the 1-based record number."""

    index: int
    id: str
    source: str
    mol: Chem.Mol | None = None
    error: str | None = None
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.mol is not None

    @property
    def unparsed(self) -> bool:
        """Read with ``parse=False``: a SMILES not parsed yet (neither mol nor error)."""
        return self.mol is None and self.error is None

    @property
    def smiles(self) -> str:
        """Canonical SMILES of the parsed molecule, or the input text when it did not parse."""
        if self.mol is not None:
            return Chem.MolToSmiles(self.mol)
        if "\n" in self.source:
            return ""
        return self.source


_NOISE = re.compile(
    r"^(\*+|-+|Post-condition Violation|Pre-condition Violation|Invariant Violation|Violation occurred.*"
    r"|Failed Expression.*|Stacktrace:|\s*\d+# .*|moving to the beginning.*)$"
)


class _CaptureHandler(logging.Handler):
    """Routes RDKit's log lines (errors and warnings alike: a FileParseException's text goes to
    the warning log) to the capture open on the current thread, if any."""

    local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        sink = getattr(self.local, "sink", None)
        if sink is not None:
            sink.append(record.getMessage())


_HANDLER = _CaptureHandler()


def _not_captured(record: logging.LogRecord) -> bool:
    return getattr(_CaptureHandler.local, "sink", None) is None


def _route_rdkit_log() -> None:
    logger = logging.getLogger("rdkit")
    if _HANDLER not in logger.handlers:
        rdBase.LogToPythonLogger()
        # RDKit's chatter about one bad record belongs in that record's error, not on stderr:
        # its own stderr handler stays silent while a capture is open on the thread
        for handler in logger.handlers:
            handler.addFilter(_not_captured)
        logger.addHandler(_HANDLER)


_route_rdkit_log()


class LogCapture:
    def __init__(self) -> None:
        self.lines: list[str] = []

    @property
    def messages(self) -> str:
        return "\n".join(self.lines)


@contextmanager
def capture_rdkit_log():
    """Collect what RDKit logs on this thread while the block runs."""
    capture = LogCapture()
    previous = getattr(_CaptureHandler.local, "sink", None)
    _CaptureHandler.local.sink = capture.lines
    try:
        yield capture
    finally:
        _CaptureHandler.local.sink = previous


def rdkit_reason(messages: str, fallback: str) -> str:
    """The most telling line of RDKit's log for one record, without timestamps."""
    lines = [_TIMESTAMP.sub("", line).strip() for line in messages.splitlines()]
    lines = [line.removeprefix("ERROR: ").strip() for line in lines if line]
    lines = [line for line in lines if line and not _NOISE.match(line)]
    # "Could not sanitize molecule ending on line N" says where, the line after it says why
    specific = [line for line in lines if not line.startswith("Could not sanitize")]
    chosen = specific or lines
    return chosen[0] if chosen else fallback


# Per-record limits. The shipped models and descriptors are made for small molecules (the
# largest training molecule has under 150 heavy atoms); a 5,000-atom chain stopped `predict` for
# minutes and a 10,000-atom macrocycle took 3 GB in `describe`. Records beyond these get an error.
MAX_RECORD_ATOMS = 1000
MAX_RECORD_RINGS = 100
_MAX_SMILES_CHARS = 8 * MAX_RECORD_ATOMS  # longer text cannot be under the atom limit worth parsing
_MAX_BLOCK_ATOMS = 3 * MAX_RECORD_ATOMS  # declared atoms of a molblock, explicit hydrogens included
_V3000_COUNTS = re.compile(r"^M  V30 COUNTS (\d+) (\d+)", re.MULTILINE)


def _too_big(mol: Chem.Mol) -> str | None:
    atoms = mol.GetNumHeavyAtoms()
    if atoms > MAX_RECORD_ATOMS:
        return f"too large: {atoms} heavy atoms (limit {MAX_RECORD_ATOMS} for one molecule)"
    rings = mol.GetRingInfo().NumRings()
    if rings > MAX_RECORD_RINGS:
        return f"too large: {rings} rings (limit {MAX_RECORD_RINGS} for one molecule)"
    return None


def declared_block_atoms(block: str) -> int | None:
    """The atom count a molblock's counts line declares (V2000 or V3000), read before parsing."""
    found = _V3000_COUNTS.search(block)
    if found:
        return int(found.group(1))
    lines = block.splitlines()
    if len(lines) >= 4 and "V3000" not in lines[3] and lines[3][:3].strip().isdigit():
        return int(lines[3][:3])  # V2000: the atom count is the counts line's first 3 columns
    return None


def parse_smiles(text: str) -> tuple[Chem.Mol | None, str | None]:
    """RDKit's MolFromSmiles with its log captured: (mol, None) or (None, reason)."""
    text = text.strip()
    if not text:
        return None, "empty SMILES"
    if not text.isascii():
        # SMILES are ASCII; RDKit's log bridge also fails (SystemError) on the truncated
        # multi-byte characters it echoes back
        return None, "not a SMILES: contains non-ASCII characters"
    if any(c.isspace() for c in text):
        # RDKit stops at the first blank and reads the rest as a name: "CC\tCC" became ethane
        kind = "a tab" if "\t" in text else "a line break" if "\n" in text or "\r" in text else "a space"
        return None, f"not one SMILES: {kind} inside it ({text[:40]!r})"
    if len(text) > _MAX_SMILES_CHARS:
        return None, f"too large: a SMILES of {len(text)} characters (limit {_MAX_SMILES_CHARS}; {MAX_RECORD_ATOMS} atoms)"
    with capture_rdkit_log() as capture:
        mol = Chem.MolFromSmiles(text)
    if mol is None:
        return None, rdkit_reason(capture.messages, "RDKit could not parse the SMILES")
    if mol.GetNumAtoms() == 0:
        return None, "the SMILES has no atoms"
    problem = _too_big(mol)
    if problem is not None:
        return None, problem
    return mol, None


def parse_smarts(text: str) -> Chem.Mol:
    """A substructure query from SMARTS (SMILES are valid SMARTS); raises a UserFacingError."""
    text = (text or "").strip()
    if not text:
        raise UserFacingError("empty substructure query")
    if not text.isascii():
        raise UserFacingError("invalid SMARTS: contains non-ASCII characters")
    with capture_rdkit_log() as capture:
        query = Chem.MolFromSmarts(text)
    if query is None or query.GetNumAtoms() == 0:
        raise UserFacingError(f"invalid SMARTS {text!r}: {rdkit_reason(capture.messages, 'RDKit could not parse it')}")
    return query


def parse_molblock(block: str) -> tuple[Chem.Mol | None, str | None]:
    if not block.strip():
        return None, "empty record (no molecule before $$$$)"
    declared = declared_block_atoms(block)
    if declared is not None and declared > _MAX_BLOCK_ATOMS:
        return None, f"too large: the record declares {declared} atoms (limit {MAX_RECORD_ATOMS} heavy atoms for one molecule)"
    with capture_rdkit_log() as capture:
        try:
            mol = Chem.MolFromMolBlock(block)
        except Exception as exc:  # RDKit raises for a few malformed blocks instead of logging
            return None, rdkit_reason(str(exc) + "\n" + capture.messages, "RDKit could not read the molblock")
    if mol is None:
        return None, rdkit_reason(capture.messages, "RDKit could not read the molblock")
    problem = _too_big(mol)
    if problem is not None:
        return None, problem
    return mol, None


def _open_text(path: Path) -> io.TextIOBase:
    try:
        raw = open(path, "rb")
    except OSError as exc:
        raise UnreadableFileError(f"cannot open: {exc.strerror or exc}") from exc
    head = raw.read(2)
    raw.seek(0)
    stream = gzip.GzipFile(fileobj=raw) if head == b"\x1f\x8b" else raw
    return io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")


def _base_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def detect_format(path: Path) -> str:
    """'sdf', 'mol', 'smiles' or 'table' from the name, else from the first lines."""
    suffix = _base_suffix(path)
    if suffix in SDF_SUFFIXES:
        return "sdf"
    if suffix in MOL_SUFFIXES:
        return "mol"
    if suffix in TABLE_SUFFIXES:
        return "table"
    if suffix in SMILES_SUFFIXES:
        return "smiles"
    try:
        with _open_text(path) as handle:
            head = handle.read(8192)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise UnreadableFileError(f"cannot read: {exc}") from exc
    if "M  END" in head or "$$$$" in head:
        return "sdf"
    first = head.splitlines()[0] if head.strip() else ""
    if "," in first or "\t" in first:
        return "table"
    if first:
        return "smiles"
    raise UnreadableFileError("not a molecule file (SMILES, CSV/TSV, SDF or MOL)")


def read_molecules(path: str | Path, smiles_column: str | None = None, parse: bool = True) -> Iterator[MoleculeRecord]:
    """Yield every record of a molecule file. Raises UnreadableFileError for a file that is
    not a molecule file at all and AmbiguousSmilesColumnError for a table with several
    plausible SMILES columns (pass ``smiles_column`` then).

    ``parse=False`` leaves SMILES (of SMILES files and tables) unparsed (``record.unparsed``),
    for callers that parse them on worker processes; SDF/MOL records are always parsed."""
    path = Path(path)
    if path.is_dir():
        raise UnreadableFileError("is a folder, not a molecule file")
    kind = detect_format(path)
    readers = {"sdf": _read_sdf, "mol": _read_mol, "smiles": lambda p: _read_smiles_file(p, parse)}
    count = 0
    try:
        records = _read_table(path, smiles_column, parse) if kind == "table" else readers[kind](path)
        for record in records:
            count += 1
            yield record
        if count == 0:
            raise UnreadableFileError("no molecule records in this file")
    except (EOFError, gzip.BadGzipFile, OSError, UnicodeError) as exc:
        raise UnreadableFileError(f"cannot read ({type(exc).__name__}): {exc}") from exc


def _sd_blocks(handle: io.TextIOBase) -> Iterator[str]:
    lines: list[str] = []
    for line in handle:
        if line.rstrip("\r\n").strip() == "$$$$":
            yield "".join(lines)
            lines = []
            continue
        else:
            lines.append(line)
    if any(line.strip() for line in lines):
        yield "".join(lines)


def _sd_properties(block: str) -> dict[str, str]:
    """SD data items of one record, read by RDKit (for records RDKit can read)."""
    supplier = Chem.SDMolSupplier()
    supplier.SetData(block + "$$$$\n", sanitize=False, removeHs=False, strictParsing=False)
    with capture_rdkit_log():
        mol = next(iter(supplier), None)
    if mol is None:
        return {}
    return {k: str(v) for k, v in mol.GetPropsAsDict(includePrivate=False, includeComputed=False).items()}


def _record_from_block(index: int, block: str, fields: dict[str, str] | None = None) -> MoleculeRecord:
    title = block.splitlines()[0].strip() if block.strip() else ""
    mol, error = parse_molblock(block)
    if fields is None:
        fields = _sd_properties(block) if mol is not None else {}
    if mol is not None:
        for key, value in fields.items():
            mol.SetProp(key, value)
    return MoleculeRecord(index=index, id=title or str(index), source=block, mol=mol, error=error, fields=fields)


def _read_sdf(path: Path) -> Iterator[MoleculeRecord]:
    with _open_text(path) as handle:
        for index, block in enumerate(_sd_blocks(handle), start=1):
            yield _record_from_block(index, block)


def _read_mol(path: Path) -> Iterator[MoleculeRecord]:
    with _open_text(path) as handle:
        text = handle.read()
    if "$$$$" in text:
        # a .mol holding several records is an SD file under another name
        for index, block in enumerate(_sd_blocks(io.StringIO(text)), start=1):
            yield _record_from_block(index, block)
        return
    if not text.strip():
        raise UnreadableFileError("empty file")
    yield _record_from_block(1, text, fields={})


def _parsed(text: str, parse: bool) -> tuple[Chem.Mol | None, str | None]:
    return parse_smiles(text) if parse else (None, None)


def _read_smiles_file(path: Path, parse: bool = True) -> Iterator[MoleculeRecord]:
    """One SMILES a line, optionally followed by whitespace and a name; '#' lines are comments;
    a first line whose first word is 'smiles' is a header."""
    with _open_text(path) as handle:
        index = 0
        for line_number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            parts = text.split(None, 1)
            if line_number == 1 and parts[0].lower() in SMILES_COLUMN_NAMES:
                continue
            index += 1
            name = parts[1].strip() if len(parts) > 1 else ""
            mol, error = _parsed(parts[0], parse)
            yield MoleculeRecord(index=index, id=name or str(index), source=parts[0], mol=mol, error=error)


def _sniff_delimiter(path: Path, sample: str) -> str:
    if _base_suffix(path) in (".tsv", ".tab"):
        return "\t"
    first = sample.splitlines()[0] if sample else ""
    counts = {d: first.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _looks_like_smiles(value: str) -> bool:
    value = value.strip()
    if not value or " " in value or _NUMBER.match(value) or len(value) > 1000:
        return False
    with capture_rdkit_log():
        mol = Chem.MolFromSmiles(value)
    return mol is not None and mol.GetNumAtoms() > 0


def detect_smiles_column(header: list[str], rows: list[list[str]]) -> tuple[str | None, list[str]]:
    """(column, candidates). A column named like SMILES wins; otherwise the columns whose
    sampled values parse as SMILES. ``column`` is None when there is none or more than one."""
    lowered = [h.strip().lower() for h in header]
    for name in SMILES_COLUMN_NAMES:
        matches = [header[i] for i, h in enumerate(lowered) if h == name]
        if len(matches) == 1:
            return matches[0], matches
        if len(matches) > 1:
            return None, matches
    named = [header[i] for i, h in enumerate(lowered) if "smiles" in h]
    if len(named) == 1:
        return named[0], named
    if len(named) > 1:
        return None, named
    candidates = []
    for i, name in enumerate(header):
        values = [row[i] for row in rows[:_CONTENT_SAMPLE] if i < len(row) and row[i].strip()]
        if values and sum(_looks_like_smiles(v) for v in values) / len(values) >= _CONTENT_MIN_FRACTION:
            candidates.append(name)
    return (candidates[0] if len(candidates) == 1 else None), candidates


def read_table_header(path: str | Path) -> tuple[list[str], list[list[str]]]:
    """Header and the first rows of a CSV/TSV (for choosing the SMILES column)."""
    path = Path(path)
    with _open_text(path) as handle:
        sample = handle.read(65536)
    delimiter = _sniff_delimiter(path, sample)
    reader = csv.reader(io.StringIO(sample), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise UnreadableFileError("empty table (no header line)") from None
    except csv.Error as exc:
        raise UnreadableFileError(f"not a readable CSV/TSV: {exc}") from exc
    rows = []
    try:
        for row in reader:
            rows.append(row)
            if len(rows) >= _CONTENT_SAMPLE:
                break
    except csv.Error:
        pass
    return header, rows


def _read_table(path: Path, smiles_column: str | None, parse: bool = True) -> Iterator[MoleculeRecord]:
    header, rows = read_table_header(path)
    if not any(h.strip() for h in header):
        raise UnreadableFileError("the table has no header line")
    if smiles_column is None:
        smiles_column, candidates = detect_smiles_column(header, rows)
        if smiles_column is None:
            if candidates:
                raise AmbiguousSmilesColumnError(path, candidates)
            raise UnreadableFileError("no column of this table holds SMILES (name one 'smiles')")
    if smiles_column not in header:
        raise UserFacingError(f"the table has no column {smiles_column!r}")
    smiles_at = header.index(smiles_column)
    lowered = [h.strip().lower() for h in header]
    id_at = next((lowered.index(n) for n in ID_COLUMN_NAMES if n in lowered), None)
    with _open_text(path) as handle:
        delimiter = _sniff_delimiter(path, handle.read(65536))
        handle.seek(0)
        reader = csv.reader(handle, delimiter=delimiter)
        try:
            next(reader)
            index = 0
            for row in reader:
                if not row or not any(cell.strip() for cell in row):
                    continue
                index += 1
                text = row[smiles_at].strip() if smiles_at < len(row) else ""
                fields = {header[i]: row[i] for i in range(min(len(header), len(row))) if i != smiles_at}
                ident = row[id_at].strip() if id_at is not None and id_at < len(row) else ""
                mol, error = _parsed(text, parse)
                yield MoleculeRecord(index=index, id=ident or str(index), source=text, mol=mol, error=error, fields=fields)
        except csv.Error as exc:
            raise UnreadableFileError(f"malformed CSV/TSV: {exc}") from exc
