"""An ICU stay as the app holds it: admission descriptors plus time-stamped observations
(minutes since ICU admission, canonical units), each kept or excluded by a cleaning rule; and a
cohort of stays read from one file together with the rows that could not be read."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from healthfm_desktop.core.patients.cleaning import KEPT, describe_exclusion, exclusion_codes
from healthfm_desktop.core.patients.variables import DESCRIPTOR_NAMES, VARIABLE_INDEX, VARIABLE_NAMES

ADMISSION_WEIGHT_MINUTES = 0


@dataclass(frozen=True)
class BadRow:
    """A row of a file that could not be used, with its 1-based line number."""

    line: int
    reason: str
    path: str | None = None  # set when a cohort is read from several files
    where: str = "line"  # "entry" for the n-th entry of a FHIR Bundle

    def format(self, path: str) -> str:
        if self.where == "entry":
            return f"{self.path or path}: entry {self.line}: {self.reason}"
        return f"{self.path or path}:{self.line}: {self.reason}"


@dataclass
class PatientRecord:
    patient_id: str
    descriptors: dict[str, float]  # Age, Gender, Height, ICUType, Weight; NaN when unknown
    time: np.ndarray  # int32 minutes since ICU admission, sorted
    variable: np.ndarray  # int16 index into VARIABLE_NAMES
    value: np.ndarray  # float64, canonical unit
    excluded: np.ndarray  # int8 cleaning rule (0 = kept)

    @property
    def n_observations(self) -> int:
        return int(self.time.size)

    @property
    def n_excluded(self) -> int:
        return int(np.count_nonzero(self.excluded))

    def series(self, name: str, include_excluded: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(minutes, values) of one variable, kept points only unless asked otherwise."""
        mask = self.variable == VARIABLE_INDEX[name]
        if not include_excluded:
            mask &= self.excluded == KEPT
        return self.time[mask], self.value[mask]

    def excluded_points(self, name: str) -> list[tuple[int, float, str]]:
        mask = (self.variable == VARIABLE_INDEX[name]) & (self.excluded != KEPT)
        return [
            (int(t), float(v), describe_exclusion(c))
            for t, v, c in zip(self.time[mask], self.value[mask], self.excluded[mask])
        ]

    def variables_present(self) -> list[str]:
        return [VARIABLE_NAMES[i] for i in np.unique(self.variable)]

    def truncated(self, minutes: int) -> "PatientRecord":
        """The stay as it was known ``minutes`` after admission."""
        keep = self.time <= minutes
        return PatientRecord(
            self.patient_id, dict(self.descriptors), self.time[keep], self.variable[keep], self.value[keep], self.excluded[keep]
        )


@dataclass
class PatientCohort:
    """Stays read from one file, in the order first met, and the rows that were refused."""

    records: list[PatientRecord]
    bad_rows: list[BadRow] = field(default_factory=list)
    source: str = ""
    notes: list[str] = field(default_factory=list)  # things the user should know, not errors

    def __len__(self) -> int:
        return len(self.records)

    def by_id(self, patient_id: str) -> PatientRecord:
        for record in self.records:
            if record.patient_id == patient_id:
                return record
        raise KeyError(patient_id)


class CohortBuilder:
    """Collects observations row by row (any reader), then sorts, cleans and splits them into
    records. Rows are plain lists so that a million of them stay fast to append."""

    def __init__(self) -> None:
        self._order: dict[str, int] = {}
        self._descriptors: list[dict[str, float]] = []
        self.patient: list[int] = []
        self.time: list[int] = []
        self.variable: list[int] = []
        self.value: list[float] = []
        self.line: list[int] = []  # where each observation came from (0: not from a line)
        self.bad_rows: list[BadRow] = []

    def patient_index(self, patient_id: str) -> int:
        index = self._order.get(patient_id)
        if index is None:
            index = self._order[patient_id] = len(self._order)
            self._descriptors.append({name: math.nan for name in DESCRIPTOR_NAMES})
        return index

    def set_descriptor(self, patient_id: str, name: str, value: float) -> None:
        self._descriptors[self.patient_index(patient_id)][name] = value

    def has_descriptor(self, patient_id: str, name: str) -> bool:
        index = self._order.get(patient_id)
        return index is not None and not math.isnan(self._descriptors[index][name])

    def add(self, patient_index: int, minutes: int, variable_index: int, value: float, line: int = 0) -> None:
        self.patient.append(patient_index)
        self.time.append(minutes)
        self.variable.append(variable_index)
        self.value.append(value)
        self.line.append(line)

    def bad(self, line: int, reason: str, where: str = "line") -> None:
        self.bad_rows.append(BadRow(line, reason, None, where))

    def build(self, source: str = "") -> PatientCohort:
        patient = np.asarray(self.patient, dtype=np.int64)
        time = np.asarray(self.time, dtype=np.int32)
        variable = np.asarray(self.variable, dtype=np.int16)
        value = np.asarray(self.value, dtype=np.float64)
        line = np.asarray(self.line, dtype=np.int64)
        order = np.lexsort((line, value, variable, time, patient))
        patient, time, variable, value, line = patient[order], time[order], variable[order], value[order], line[order]
        # An exact repeat (same patient, time, variable, value) counts the same measurement twice
        # and shifts the stay's summary features (a risk of 0.0154 became 0.0099): keep the
        # first, report the others.
        repeat = np.zeros(len(patient), dtype=bool)
        if len(patient) > 1:
            repeat[1:] = ((patient[1:] == patient[:-1]) & (time[1:] == time[:-1]) & (variable[1:] == variable[:-1])
                          & (value[1:] == value[:-1]))
        if repeat.any():
            first_line = line.copy()
            for k in np.flatnonzero(repeat):  # runs of repeats point back to the run's first row
                first_line[k] = first_line[k - 1]
            for k in np.flatnonzero(repeat):
                where = f" of line {first_line[k]}" if first_line[k] else ""
                self.bad(int(line[k]), f"duplicate{where} (same patient, time, variable and value): ignored")
            keep = ~repeat
            patient, time, variable, value = patient[keep], time[keep], variable[keep], value[keep]
        excluded = exclusion_codes(variable, value)
        bounds = np.searchsorted(patient, np.arange(len(self._order) + 1))
        ids = list(self._order)
        records = []
        for index, patient_id in enumerate(ids):
            lo, hi = bounds[index], bounds[index + 1]
            descriptors = self._descriptors[index]
            _clean_descriptors(descriptors)
            records.append(PatientRecord(patient_id, descriptors, time[lo:hi], variable[lo:hi], value[lo:hi], excluded[lo:hi]))
        return PatientCohort(records, sorted(self.bad_rows, key=lambda b: (b.path or '', b.line)), source)


def _clean_descriptors(descriptors: dict[str, float]) -> None:
    """Descriptors outside what an adult ICU patient can have are treated as unknown."""
    limits = {"Age": (15, 120), "Gender": (0, 1), "Height": (100, 250), "ICUType": (1, 4), "Weight": (20, 500)}
    for name, (low, high) in limits.items():
        value = descriptors.get(name, math.nan)
        if not (low <= value <= high):
            descriptors[name] = math.nan
    if not math.isnan(descriptors["Gender"]) and descriptors["Gender"] not in (0, 1):
        descriptors["Gender"] = math.nan
    if not math.isnan(descriptors["ICUType"]) and descriptors["ICUType"] not in (1, 2, 3, 4):
        descriptors["ICUType"] = math.nan
