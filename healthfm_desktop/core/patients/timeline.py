"""What the patient timeline shows, independent of how it is drawn: the small-multiple panels
(which variables share a plot, in which group), the series of a stay per panel with its excluded
points, and clinical notes linked to a stay by patient id and time."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import numpy as np

from healthfm_desktop.core.patients.cleaning import describe_exclusion
from healthfm_desktop.core.patients.record import PatientRecord
from healthfm_desktop.core.patients.variables import BY_NAME, FLUID, LAB, RESPIRATORY, VARIABLES, VITAL


@dataclass(frozen=True)
class Panel:
    title: str
    group: str
    variables: tuple[str, ...]
    unit: str
    reference: tuple[float, float] | None  # shaded band
    style: str = "line"  # "line" or "bars" (amounts per interval, e.g. urine)


def _panel(title: str, group: str, *names: str, reference_of: str | None = None, style: str = "line") -> Panel:
    spec = BY_NAME[reference_of or names[0]]
    unit = spec.unit.split(" (")[0] if spec.unit.startswith(("score", "flag", "fraction", "pH")) else spec.unit
    return Panel(title, group, names, unit, spec.reference, style)


PANELS: tuple[Panel, ...] = (
    _panel("Heart rate", VITAL, "HR"),
    _panel("Arterial BP (line)", VITAL, "SysABP", "MAP", "DiasABP", reference_of="MAP"),
    _panel("Cuff BP", VITAL, "NISysABP", "NIMAP", "NIDiasABP", reference_of="NIMAP"),
    _panel("Temperature", VITAL, "Temp"),
    _panel("Respiratory rate", VITAL, "RespRate"),
    _panel("GCS", VITAL, "GCS"),
    *(_panel(v.name, v.group, v.name) for v in VARIABLES if v.group == RESPIRATORY),
    *(_panel(v.name, LAB, v.name) for v in VARIABLES if v.group == LAB),
    _panel("Urine output", FLUID, "Urine", style="bars"),
    _panel("Weight", FLUID, "Weight"),
)
assert {n for p in PANELS for n in p.variables} == {v.name for v in VARIABLES}, "every variable has a panel"


@dataclass
class PanelSeries:
    """One variable of one panel: kept points (drawn as a line) and excluded points (marked)."""

    variable: str
    hours: np.ndarray
    values: np.ndarray
    excluded_hours: np.ndarray
    excluded_values: np.ndarray
    excluded_reasons: list[str]


def panel_series(record: PatientRecord, panel: Panel) -> list[PanelSeries]:
    out = []
    for name in panel.variables:
        minutes, values = record.series(name)
        excluded = record.excluded_points(name)
        if minutes.size == 0 and not excluded:
            continue
        out.append(
            PanelSeries(
                name,
                minutes / 60.0,
                values,
                np.array([t for t, _, _ in excluded], dtype=float) / 60.0,
                np.array([v for _, v, _ in excluded], dtype=float),
                [r for _, _, r in excluded],
            )
        )
    return out


def panels_for(record: PatientRecord) -> list[Panel]:
    """Panels that have at least one point (kept or excluded) for this stay, in display order."""
    present = set(record.variables_present())
    return [p for p in PANELS if present.intersection(p.variables)]


# --------------------------------------------------------------------------- linked notes
@dataclass(frozen=True)
class LinkedNote:
    """A clinical note that names an ICU stay (patient id) and, if known, its time on the stay."""

    patient_id: str
    title: str
    text: str
    minutes: int | None = None


_ID_LINE = re.compile(r"^\s*(?:patient[ _-]?id|record[ _-]?id|mrn)\s*[:=#]\s*([A-Za-z0-9_.-]{1,64})\s*$", re.I | re.M)
_TIME_LINE = re.compile(r"^\s*(?:icu[ _-]?time|time)\s*[:=]\s*(\d{1,4}):([0-5]\d)\s*$", re.I | re.M)


def link_note(title: str, text: str) -> list[LinkedNote]:
    """Notes that say which stay they belong to: a JSON Lines record with ``patient_id`` (and
    ``minutes`` or ``time`` HH:MM), or a text with a ``Patient ID: 132539`` line (and
    ``ICU time: 12:30``). Everything else links to no stay."""
    notes: list[LinkedNote] = []
    stripped = text.lstrip()
    if stripped.startswith("{"):
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("patient_id") is not None and isinstance(record.get("text"), str):
                minutes = record.get("minutes")
                if not isinstance(minutes, int) and isinstance(record.get("time"), str):
                    match = re.fullmatch(r"(\d{1,4}):([0-5]\d)", record["time"].strip())
                    minutes = int(match[1]) * 60 + int(match[2]) if match else None
                notes.append(LinkedNote(str(record["patient_id"]), str(record.get("id", title)), record["text"],
                                        minutes if isinstance(minutes, int) and minutes >= 0 else None))
        return notes
    match = _ID_LINE.search(text)
    if match:
        time_match = _TIME_LINE.search(text)
        minutes = int(time_match[1]) * 60 + int(time_match[2]) if time_match else None
        notes.append(LinkedNote(match[1], title, text, minutes))
    return notes


@dataclass
class NoteIndex:
    """Linked notes by patient id."""

    by_patient: dict[str, list[LinkedNote]] = field(default_factory=dict)

    def add(self, notes: list[LinkedNote]) -> set[str]:
        touched = set()
        for note in notes:
            bucket = self.by_patient.setdefault(note.patient_id, [])
            if note not in bucket:
                bucket.append(note)
                touched.add(note.patient_id)
        return touched

    def notes_for(self, patient_id: str) -> list[LinkedNote]:
        return list(self.by_patient.get(patient_id, []))


def exclusion_summary(record: PatientRecord) -> list[tuple[str, int]]:
    """(rule description, count) of the stay's excluded points, most frequent first."""
    codes, counts = np.unique(record.excluded[record.excluded != 0], return_counts=True)
    return sorted(((describe_exclusion(c), int(n)) for c, n in zip(codes, counts)), key=lambda x: -x[1])


#: PhysioNet 2012's ICUType codes
ICU_TYPES = {1: "Coronary care unit", 2: "Cardiac surgery recovery unit", 3: "Medical ICU", 4: "Surgical ICU"}


def stay_summary(record: PatientRecord) -> str:
    """The header a clinician reads first: age, sex and ICU type (then height and weight when
    known); "unknown" where the stay does not say."""
    descriptors = record.descriptors

    def known(name: str) -> float | None:
        value = descriptors.get(name, float("nan"))
        return None if value is None or value != value else float(value)

    age, gender, icu, height, weight = (known(n) for n in ("Age", "Gender", "ICUType", "Height", "Weight"))
    parts = [f"Age {age:.0f}" if age is not None else "Age unknown",
             {0.0: "female", 1.0: "male"}.get(gender, "sex unknown"),
             ICU_TYPES.get(int(icu), "ICU type unknown") if icu is not None else "ICU type unknown"]
    if height is not None:
        parts.append(f"{height:.0f} cm")
    if weight is not None:
        parts.append(f"{weight:.1f} kg")
    return " · ".join(parts)
