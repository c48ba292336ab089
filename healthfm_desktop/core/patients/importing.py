"""Read ICU stays from the CSV files a user has (reading.py picks the reader for a file; FHIR
Bundles are read by fhir_bundle.py):

- the long CSV ``patient_id,time,variable,value[,unit]`` (time in minutes or HH:MM since ICU
  admission; plain or gzipped). Descriptors may come as rows named Age, Gender, Height,
  ICUType (and Weight at time 0), as in PhysioNet's record format, or from a ``patients.csv``
  (``patient_id,age,gender,height_cm,icu_type,weight_kg``) lying beside the file, as the
  challenge data is distributed; rows win over the table;
- PhysioNet/CinC 2012 record files (``Time,Parameter,Value`` with HH:MM; one stay per file), or
  a folder of them;

Units are checked against the variable catalogue and converted to the canonical unit. A row that
cannot be used is reported with its line number and the rest of the file is kept."""

from __future__ import annotations

import csv
import gzip
import io
import math
from pathlib import Path

from healthfm_desktop.core.errors import UnreadableFileError
from healthfm_desktop.core.patients.limits import MAX_ID_LENGTH, MAX_MINUTES
from healthfm_desktop.core.patients.record import CohortBuilder, PatientCohort
from healthfm_desktop.core.patients.variables import (
    BY_NAME,
    DESCRIPTOR_BY_NAME,
    VARIABLE_INDEX,
    canonical_name,
    unit_conversion,
)

LONG_CSV_COLUMNS = ("patient_id", "time", "variable", "value")
RECORD_HEADER = ("time", "parameter", "value")
PATIENT_TABLE_NAME = "patients.csv"
_PATIENT_TABLE_COLUMNS = {"age": "Age", "gender": "Gender", "height_cm": "Height", "icu_type": "ICUType", "weight_kg": "Weight"}
_DESCRIPTOR_ONLY = ("Age", "Gender", "Height", "ICUType")


def parse_minutes(text: str) -> int:
    """Minutes since admission from ``"125"``, ``"125.0"`` or ``"02:05"``; ValueError if neither."""
    text = text.strip()
    if ":" in text:
        hours, _, minutes = text.partition(":")
        if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2 and int(minutes) < 60):
            raise ValueError(f"time {text!r} is not HH:MM")
        total = int(hours) * 60 + int(minutes)
    else:
        number = float(text)
        if not math.isfinite(number) or number != int(number):
            raise ValueError(f"time {text!r} is not a whole number of minutes")
        total = int(number)
    if total < 0:
        raise ValueError(f"time {text!r} is before ICU admission")
    if total > MAX_MINUTES:
        raise ValueError(f"time {text!r} is more than a year after admission")
    return total


def parse_value(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"value {text!r} is not a finite number")
    return value


class ObservationRows:
    """Turns (patient, time, variable, value, unit) rows of any format into a cohort. Name and
    unit look-ups are cached: a file repeats the same few dozen pairs a million times."""

    def __init__(self) -> None:
        self.builder = CohortBuilder()
        self._kinds: dict[tuple[str, str], tuple[str, object, float, float] | str] = {}
        self._weight_seen: set[int] = set()

    def _resolve(self, name: str, unit: str) -> tuple[str, object, float, float] | str:
        key = (name, unit)
        cached = self._kinds.get(key)
        if cached is not None:
            return cached
        canonical = canonical_name(name)
        folded = name.strip().casefold()
        if folded == "recordid":
            resolved: tuple[str, object, float, float] | str = ("id", None, 1.0, 0.0)
        elif canonical is None and folded not in {d.casefold() for d in _DESCRIPTOR_ONLY}:
            resolved = f"unknown variable {name.strip()[:40]!r}"
        else:
            if canonical is None:
                descriptor = next(DESCRIPTOR_BY_NAME[d] for d in _DESCRIPTOR_ONLY if d.casefold() == folded)
                conversion = unit_conversion(descriptor, unit)
                kind, target, expected = "descriptor", descriptor.name, descriptor.unit
            else:
                conversion = unit_conversion(BY_NAME[canonical], unit)
                kind, target, expected = "observation", canonical, BY_NAME[canonical].unit
            if conversion is None:
                resolved = f"unit {unit.strip()[:20]!r} is not a unit for {target} (expected {expected})"
            else:
                resolved = (kind, target, conversion[0], conversion[1])
        self._kinds[key] = resolved
        return resolved

    def add(self, line: int, patient_id: str, time_text: str, name: str, value_text: str, unit: str = "") -> None:
        builder = self.builder
        patient_id = patient_id.strip()
        if not patient_id:
            builder.bad(line, "patient_id is empty")
            return
        if len(patient_id) > MAX_ID_LENGTH:
            builder.bad(line, f"patient_id is longer than {MAX_ID_LENGTH} characters")
            return
        resolved = self._resolve(name, unit)
        if isinstance(resolved, str):
            builder.bad(line, resolved)
            return
        kind, target, factor, offset = resolved
        try:
            minutes = int(time_text) if time_text.isdecimal() else parse_minutes(time_text)
            if minutes > MAX_MINUTES:
                raise ValueError(f"time {time_text!r} is more than a year after admission")
        except ValueError as exc:
            text = str(exc)
            builder.bad(line, text if text.startswith("time") else f"time {time_text.strip()[:20]!r} is not minutes or HH:MM")
            return
        try:
            raw = parse_value(value_text)
        except ValueError as exc:
            text = str(exc)
            builder.bad(line, text if text.startswith("value") else f"value {value_text.strip()[:20]!r} is not a number")
            return
        if kind == "id":
            if value_text.strip() != patient_id and not _same_number(raw, patient_id):
                builder.bad(line, f"RecordID {value_text.strip()[:20]} does not match patient_id {patient_id}")
            else:
                builder.patient_index(patient_id)
            return
        index = builder.patient_index(patient_id)
        if kind == "descriptor":
            if raw != -1:
                builder.set_descriptor(patient_id, target, raw * factor + offset)
            return
        # Weight at time 0 is also the admission descriptor (PhysioNet's convention); -1 there
        # means "unknown", not an observation.
        if target == "Weight" and minutes == 0 and index not in self._weight_seen:
            self._weight_seen.add(index)
            if raw == -1:
                return
            builder.set_descriptor(patient_id, "Weight", raw * factor + offset)
        builder.add(index, minutes, VARIABLE_INDEX[target], raw * factor + offset, line)

    def build(self, source: str) -> PatientCohort:
        return self.builder.build(source)


def _same_number(value: float, patient_id: str) -> bool:
    try:
        return float(patient_id) == value
    except ValueError:
        return False


def open_text(path: Path) -> io.TextIOBase:
    try:
        with open(path, "rb") as probe:
            magic = probe.read(2)
    except OSError as exc:
        raise UnreadableFileError(f"cannot open {path.name}: {exc.strerror or exc}") from exc
    try:
        raw = gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")
        return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise UnreadableFileError(f"cannot open {path.name}: {exc}") from exc


def _rows(reader, path: Path):
    """csv rows with their line numbers; decoding and gzip errors become a clear message."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, None, f"not valid CSV: {exc}"
            continue
        except UnicodeDecodeError:
            raise UnreadableFileError(f"{path.name} is not UTF-8 text (line {reader.line_num + 1})") from None
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise UnreadableFileError(f"{path.name} is damaged: {exc}") from None
        yield reader.line_num, row, None


def read_long_csv(path: str | Path, patient_table: str | Path | None = None) -> PatientCohort:
    """Read a long CSV; ``patient_table`` (default: a patients.csv beside it) adds descriptors
    and the stays it lists that have no rows."""
    path = Path(path)
    rows = ObservationRows()
    with open_text(path) as handle:
        reader = csv.reader(handle)
        header = None
        for line, row, problem in _rows(reader, path):
            if row is None or not any(cell.strip() for cell in row):
                continue
            header = [cell.strip().casefold() for cell in row]
            break
        if header is None:
            raise UnreadableFileError(f"{path.name} is empty")
        missing = [c for c in LONG_CSV_COLUMNS if c not in header]
        if missing:
            raise UnreadableFileError(
                f"{path.name} is not a patient CSV: the header lacks {', '.join(missing)} "
                f"(expected patient_id,time,variable,value[,unit])"
            )
        pid, time_col, var_col, value_col = (header.index(c) for c in LONG_CSV_COLUMNS)
        unit_col = header.index("unit") if "unit" in header else None
        _read_long_rows(reader, rows, path, width=len(header), columns=(pid, time_col, var_col, value_col, unit_col))
    table = Path(patient_table) if patient_table else path.parent / PATIENT_TABLE_NAME
    if table.is_file() and table.resolve() != path.resolve():
        _read_patient_table(table, rows.builder)
    return rows.build(str(path))


def _read_long_rows(reader, rows: ObservationRows, path: Path, width: int, columns: tuple) -> None:
    """The body of a long CSV. A plain observation row of a known patient, variable and unit
    (nearly all of a million rows) is appended directly; anything else goes through
    ``ObservationRows.add``, which checks and reports it, and teaches the fast path the new
    patient or (variable, unit) pair. Both paths compute the same numbers."""
    pid, time_col, var_col, value_col, unit_col = columns
    builder = rows.builder
    patient_of: dict[str, int] = {}
    observation_of: dict[tuple[str, str], tuple[int, float, float]] = {}
    append_patient, append_time = builder.patient.append, builder.time.append
    append_variable, append_value = builder.variable.append, builder.value.append
    append_line = builder.line.append
    weight = VARIABLE_INDEX["Weight"]

    def slow(line: int, row: list[str]) -> None:
        if len(row) != width:
            if any(cell.strip() for cell in row):
                builder.bad(line, f"{len(row)} fields, expected {width}")
            return
        unit = row[unit_col] if unit_col is not None else ""
        rows.add(line, row[pid], row[time_col], row[var_col], row[value_col], unit)
        index = builder._order.get(row[pid].strip())
        if index is not None:
            patient_of[row[pid]] = index
        resolved = rows._resolve(row[var_col], unit)
        if isinstance(resolved, tuple) and resolved[0] == "observation" and VARIABLE_INDEX[resolved[1]] != weight:
            observation_of[(row[var_col], unit)] = (VARIABLE_INDEX[resolved[1]], resolved[2], resolved[3])

    while True:
        try:
            for row in reader:
                if len(row) == width:
                    index = patient_of.get(row[pid])
                    target = observation_of.get((row[var_col], row[unit_col] if unit_col is not None else ""))
                    text = row[time_col]
                    if index is not None and target is not None and text.isdecimal():
                        try:
                            value = float(row[value_col])
                        except ValueError:
                            value = math.nan
                        minutes = int(text)
                        if value - value == 0 and minutes <= MAX_MINUTES:  # finite, in range
                            append_patient(index)
                            append_time(minutes)
                            append_variable(target[0])
                            append_value(value * target[1] + target[2])
                            append_line(reader.line_num)
                            continue
                slow(reader.line_num, row)
            return
        except csv.Error as exc:
            builder.bad(reader.line_num, f"not valid CSV: {exc}")
        except UnicodeDecodeError:
            raise UnreadableFileError(f"{path.name} is not UTF-8 text (line {reader.line_num + 1})") from None
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise UnreadableFileError(f"{path.name} is damaged: {exc}") from None


def _read_patient_table(path: Path, builder: CohortBuilder) -> None:
    """Descriptors from the challenge's patients.csv; silently skipped when it is not one."""
    try:
        with open_text(path) as handle:
            reader = csv.DictReader(handle)
            fields = {f.strip().casefold(): f for f in (reader.fieldnames or [])}
            if "patient_id" not in fields or not any(c in fields for c in _PATIENT_TABLE_COLUMNS):
                return
            for row in reader:
                patient_id = (row.get(fields["patient_id"]) or "").strip()
                if not patient_id or len(patient_id) > MAX_ID_LENGTH:
                    continue
                builder.patient_index(patient_id)
                for column, name in _PATIENT_TABLE_COLUMNS.items():
                    text = (row.get(fields.get(column, ""), "") or "").strip() if column in fields else ""
                    if not text or builder.has_descriptor(patient_id, name):
                        continue
                    try:
                        value = parse_value(text)
                    except ValueError:
                        continue
                    if value != -1:
                        builder.set_descriptor(patient_id, name, value)
    except (UnicodeDecodeError, csv.Error, OSError):
        return


def read_physionet_records(paths: list[Path]) -> PatientCohort:
    """One or more PhysioNet 2012 record files (``Time,Parameter,Value``), one stay each; the
    stay's id is its RecordID row, else the file name."""
    rows = ObservationRows()
    for path in paths:
        path = Path(path)
        start = len(rows.builder.bad_rows)
        with open_text(path) as handle:
            lines = _rows(csv.reader(handle), path)
            header = None
            for line, row, problem in lines:
                if row:
                    header = tuple(cell.strip().casefold() for cell in row[:3])
                    break
            if header != RECORD_HEADER:
                raise UnreadableFileError(f"{path.name} is not a PhysioNet record file (expected the header Time,Parameter,Value)")
            body = list(lines)
        patient_id = path.stem
        for line, row, problem in body:
            if row and len(row) >= 3 and row[1].strip().casefold() == "recordid":
                patient_id = row[2].strip() or patient_id
                break
        for line, row, problem in body:
            if row is None:
                rows.builder.bad(line, problem or "not valid CSV")
            elif not any(cell.strip() for cell in row):
                continue
            elif len(row) != 3:
                rows.builder.bad(line, f"{len(row)} fields, expected 3 (Time,Parameter,Value)")
            else:
                rows.add(line, patient_id, row[0], row[1], row[2])
        if len(paths) > 1:
            for i in range(start, len(rows.builder.bad_rows)):
                bad_row = rows.builder.bad_rows[i]
                rows.builder.bad_rows[i] = type(bad_row)(bad_row.line, bad_row.reason, str(path))
    return rows.build(str(paths[0]) if len(paths) == 1 else str(Path(paths[0]).parent))
