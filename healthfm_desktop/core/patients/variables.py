"""The catalogue of ICU variables a patient record may carry (the 37 time series of the
PhysioNet/CinC Challenge 2012 plus the admission descriptors): canonical unit, the other unit
spellings we accept with their conversion, LOINC code for FHIR, adult reference range for the
timeline, and which panel of the timeline shows it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

VITAL, RESPIRATORY, LAB, FLUID = "vitals", "respiratory", "labs", "fluids"
GROUPS = (VITAL, RESPIRATORY, LAB, FLUID)


@dataclass(frozen=True)
class Variable:
    name: str
    unit: str
    description: str
    group: str
    loinc: str | None = None
    reference: tuple[float, float] | None = None  # usual adult range, shaded on the timeline
    # other spellings of a unit -> (factor, offset) so that canonical = value * factor + offset
    units: dict[str, tuple[float, float]] = field(default_factory=dict)


def _same(*spellings: str) -> dict[str, tuple[float, float]]:
    return {s: (1.0, 0.0) for s in spellings}


_MMHG = _same("mmhg", "mm[hg]", "mm hg")
_BPM = _same("bpm", "/min", "beats/min", "{beats}/min", "1/min", "breaths/min", "{breaths}/min")
_COUNT = {**_same("cells/nl", "10*3/ul", "10^3/ul", "k/ul", "10*9/l", "10^9/l", "x10e3/ul", "thou/ul")}
_IU = _same("iu/l", "u/l", "[iu]/l")
_MEQ = _same("meq/l", "mmol/l")
_POUND = 0.45359237

VARIABLES: tuple[Variable, ...] = (
    # vitals
    Variable("HR", "bpm", "Heart rate", VITAL, "8867-4", (60, 100), _BPM),
    Variable("SysABP", "mmHg", "Invasive systolic arterial blood pressure", VITAL, "76215-3", (90, 140), _MMHG),
    Variable("DiasABP", "mmHg", "Invasive diastolic arterial blood pressure", VITAL, "76213-8", (60, 90), _MMHG),
    Variable("MAP", "mmHg", "Invasive mean arterial blood pressure", VITAL, "76214-6", (70, 105), _MMHG),
    Variable("NISysABP", "mmHg", "Non-invasive systolic arterial blood pressure", VITAL, "8480-6", (90, 140), _MMHG),
    Variable("NIDiasABP", "mmHg", "Non-invasive diastolic arterial blood pressure", VITAL, "8462-4", (60, 90), _MMHG),
    Variable("NIMAP", "mmHg", "Non-invasive mean arterial blood pressure", VITAL, "8478-0", (70, 105), _MMHG),
    Variable(
        "Temp", "degC", "Temperature", VITAL, "8310-5", (36.1, 37.8),
        {**_same("degc", "cel", "°c", "c", "celsius"), **{u: (5 / 9, -32 * 5 / 9) for u in ("degf", "[degf]", "°f", "f", "fahrenheit")}},
    ),
    Variable("RespRate", "bpm", "Respiration rate", VITAL, "9279-1", (12, 20), _BPM),
    Variable("GCS", "score (3-15)", "Glasgow Coma Score", VITAL, "9269-2", (15, 15), _same("score (3-15)", "{score}", "score", "1")),
    # respiratory
    Variable(
        "FiO2", "fraction (0-1)", "Fractional inspired O2", RESPIRATORY, "3150-0", (0.21, 0.4),
        {**_same("fraction (0-1)", "fraction", "1", "{fraction}", "ratio"), "%": (0.01, 0.0)},
    ),
    Variable("MechVent", "flag (0/1)", "Mechanical ventilation (1 = on)", RESPIRATORY, None, None, _same("flag (0/1)", "flag", "1", "{flag}")),
    Variable("PaO2", "mmHg", "Partial pressure of arterial O2", RESPIRATORY, "2703-7", (75, 100), {**_MMHG, "kpa": (7.50062, 0.0)}),
    Variable("PaCO2", "mmHg", "Partial pressure of arterial CO2", RESPIRATORY, "2019-8", (35, 45), {**_MMHG, "kpa": (7.50062, 0.0)}),
    Variable("pH", "pH (0-14)", "Arterial pH", RESPIRATORY, "2744-1", (7.35, 7.45), _same("ph (0-14)", "ph", "[ph]", "1")),
    Variable("SaO2", "%", "O2 saturation in hemoglobin", RESPIRATORY, "2708-6", (95, 100), _same("%")),
    # labs
    Variable("Albumin", "g/dL", "Albumin", LAB, "1751-7", (3.5, 5.0), {**_same("g/dl"), "g/l": (0.1, 0.0)}),
    Variable("ALP", "IU/L", "Alkaline phosphatase", LAB, "6768-6", (44, 147), _IU),
    Variable("ALT", "IU/L", "Alanine transaminase", LAB, "1742-6", (7, 56), _IU),
    Variable("AST", "IU/L", "Aspartate transaminase", LAB, "1920-8", (10, 40), _IU),
    Variable("Bilirubin", "mg/dL", "Bilirubin", LAB, "1975-2", (0.1, 1.2), {**_same("mg/dl"), "umol/l": (1 / 17.104, 0.0)}),
    Variable("BUN", "mg/dL", "Blood urea nitrogen", LAB, "3094-0", (7, 20), {**_same("mg/dl"), "mmol/l": (2.8013, 0.0)}),
    Variable("Cholesterol", "mg/dL", "Cholesterol", LAB, "2093-3", (0, 200), {**_same("mg/dl"), "mmol/l": (38.67, 0.0)}),
    Variable("Creatinine", "mg/dL", "Serum creatinine", LAB, "2160-0", (0.6, 1.2), {**_same("mg/dl"), "umol/l": (1 / 88.42, 0.0)}),
    Variable("Glucose", "mg/dL", "Serum glucose", LAB, "2345-7", (70, 140), {**_same("mg/dl"), "mmol/l": (18.016, 0.0)}),
    Variable("HCO3", "mmol/L", "Serum bicarbonate", LAB, "1963-8", (22, 29), _MEQ),
    Variable("HCT", "%", "Hematocrit", LAB, "4544-3", (36, 50), _same("%")),
    Variable("K", "mEq/L", "Serum potassium", LAB, "2823-3", (3.5, 5.0), _MEQ),
    Variable("Lactate", "mmol/L", "Lactate", LAB, "2524-7", (0.5, 2.0), {**_MEQ, "mg/dl": (1 / 9.008, 0.0)}),
    # The challenge documents Mg in mmol/L but its values (median 2.0) are mg/dL-sized; the
    # reference range follows the values so the shading is not misleading.
    Variable("Mg", "mmol/L", "Serum magnesium", LAB, "19123-9", (1.7, 2.4), _same("mmol/l", "meq/l", "mg/dl")),
    Variable("Na", "mEq/L", "Serum sodium", LAB, "2951-2", (135, 145), _MEQ),
    Variable("Platelets", "cells/nL", "Platelets", LAB, "777-3", (150, 400), _COUNT),
    Variable("WBC", "cells/nL", "White blood cell count", LAB, "6690-2", (4, 11), _COUNT),
    Variable("TroponinI", "ug/L", "Troponin-I", LAB, "10839-9", (0, 0.04), {**_same("ug/l", "µg/l", "ng/ml"), "ng/l": (0.001, 0.0)}),
    Variable("TroponinT", "ug/L", "Troponin-T", LAB, "6598-7", (0, 0.01), {**_same("ug/l", "µg/l", "ng/ml"), "ng/l": (0.001, 0.0)}),
    # fluids
    Variable("Urine", "mL", "Urine output since the previous entry", FLUID, "9187-6", None, {**_same("ml", "cc"), "l": (1000.0, 0.0)}),
    Variable("Weight", "kg", "Weight", FLUID, "29463-7", None, {**_same("kg"), **{u: (_POUND, 0.0) for u in ("lb", "lbs", "[lb_av]")}, "g": (0.001, 0.0)}),
)

VARIABLE_NAMES: tuple[str, ...] = tuple(v.name for v in VARIABLES)
VARIABLE_INDEX: dict[str, int] = {name: i for i, name in enumerate(VARIABLE_NAMES)}
BY_NAME: dict[str, Variable] = {v.name: v for v in VARIABLES}
# Case-insensitive lookup for files that spell names differently (e.g. "hr", "PH").
_BY_FOLDED: dict[str, str] = {name.casefold(): name for name in VARIABLE_NAMES}


@dataclass(frozen=True)
class Descriptor:
    name: str
    unit: str
    loinc: str | None
    units: dict[str, tuple[float, float]]


DESCRIPTORS: tuple[Descriptor, ...] = (
    Descriptor("Age", "years", "30525-0", _same("years", "a", "yr", "y", "year")),
    Descriptor("Gender", "0 = female, 1 = male", None, _same("0 = female, 1 = male", "1", "flag")),
    Descriptor("Height", "cm", "8302-2", {**_same("cm"), **{u: (2.54, 0.0) for u in ("in", "[in_i]", "inch")}, "m": (100.0, 0.0)}),
    Descriptor("ICUType", "1-4", None, _same("1-4", "1", "code")),
    Descriptor("Weight", "kg", "29463-7", BY_NAME["Weight"].units),
)
DESCRIPTOR_NAMES: tuple[str, ...] = tuple(d.name for d in DESCRIPTORS)
DESCRIPTOR_BY_NAME = {d.name: d for d in DESCRIPTORS}
ICU_TYPES = {1: "Coronary Care Unit", 2: "Cardiac Surgery Recovery Unit", 3: "Medical ICU", 4: "Surgical ICU"}


def canonical_name(name: str) -> str | None:
    """The catalogue's spelling of a variable name, or None when it is not one of ours."""
    return _BY_FOLDED.get(name.strip().casefold())


def _fold_unit(unit: str) -> str:
    return " ".join(unit.strip().casefold().replace("µ", "u").replace("μ", "u").split())


def unit_conversion(variable: Variable | Descriptor, unit: str | None) -> tuple[float, float] | None:
    """(factor, offset) turning a value in ``unit`` into the canonical unit; None when the unit
    is not one we know for this variable. An empty unit means the canonical one."""
    if unit is None or not unit.strip():
        return (1.0, 0.0)
    folded = _fold_unit(unit)
    if folded == _fold_unit(variable.unit):
        return (1.0, 0.0)
    return variable.units.get(folded) or variable.units.get(folded.replace("µ", "u"))


def is_missing_descriptor(value: float) -> bool:
    """PhysioNet writes -1 for a descriptor it does not know."""
    return value == -1 or math.isnan(value)
