"""Rules that exclude physiologically impossible values (sensor off the patient, typing slips)
from the timeline's lines and from the risk features. An excluded point is kept in the record
with the rule that excluded it, so the user sees it marked, never silently dropped.

The rules, applied to values already converted to the canonical unit (see variables.py):

1. ``zero``: a blood pressure (SysABP, DiasABP, MAP and the NI* cuff values) or a heart rate
   of exactly 0: a disconnected transducer or cuff, not cardiac arrest (which ends the record).
2. ``negative``: a negative value of any variable (all are amounts, rates or pressures).
3. ``cold``: a temperature below 25 °C: the probe is not on the patient (no survivable stay).
4. ``ph``: a pH outside 6.5-8.0; the source has values above 14 that look like pH x 100.
5. ``light``: a weight below 20 kg (an adult ICU: typing slips or pounds/grams confusion).
6. ``range``: a value outside the wide limits below that no living adult reaches
   (e.g. heart rate above 300, temperature above 45 °C, FiO2 above 1, SaO2 or HCT above 100 %,
   GCS outside 3-15).
"""

from __future__ import annotations

import numpy as np

from healthfm_desktop.core.patients.variables import VARIABLE_INDEX, VARIABLE_NAMES

KEPT = 0
RULES: dict[int, tuple[str, str]] = {
    1: ("zero", "zero blood pressure or heart rate (sensor disconnected)"),
    2: ("negative", "negative value"),
    3: ("cold", "temperature below 25 °C (probe not on the patient)"),
    4: ("ph", "pH outside 6.5-8.0 (impossible; often pH x 100)"),
    5: ("light", "weight below 20 kg"),
    6: ("range", "outside the physiologically possible range"),
}

_ZERO_IMPOSSIBLE = ("HR", "SysABP", "DiasABP", "MAP", "NISysABP", "NIDiasABP", "NIMAP")

# Wide, physiological limits (canonical units); anything beyond is excluded by rule 6.
POSSIBLE_RANGE: dict[str, tuple[float, float]] = {
    "HR": (0, 300),
    "SysABP": (0, 300), "DiasABP": (0, 250), "MAP": (0, 300),
    "NISysABP": (0, 300), "NIDiasABP": (0, 250), "NIMAP": (0, 300),
    "Temp": (25, 45),
    "RespRate": (0, 100),
    "GCS": (3, 15),
    "FiO2": (0.15, 1.0),
    "MechVent": (0, 1),
    "PaO2": (0, 800), "PaCO2": (0, 250),
    "pH": (6.5, 8.0),
    "SaO2": (0, 100), "HCT": (0, 100),
    "Albumin": (0, 10), "ALP": (0, 10000), "ALT": (0, 20000), "AST": (0, 40000),
    "Bilirubin": (0, 100), "BUN": (0, 300), "Cholesterol": (0, 1500), "Creatinine": (0, 40),
    "Glucose": (0, 5000), "HCO3": (0, 80), "K": (0, 20), "Lactate": (0, 50), "Mg": (0, 20),
    "Na": (80, 200), "Platelets": (0, 3000), "WBC": (0, 1000),
    "TroponinI": (0, 1000), "TroponinT": (0, 1000),
    "Urine": (0, 15000), "Weight": (20, 500),
}

_LOW = np.full(len(VARIABLE_NAMES), -np.inf)
_HIGH = np.full(len(VARIABLE_NAMES), np.inf)
for _name, (_low, _high) in POSSIBLE_RANGE.items():
    _LOW[VARIABLE_INDEX[_name]] = _low
    _HIGH[VARIABLE_INDEX[_name]] = _high
_ZERO_MASK = np.zeros(len(VARIABLE_NAMES), dtype=bool)
_ZERO_MASK[[VARIABLE_INDEX[n] for n in _ZERO_IMPOSSIBLE]] = True


def exclusion_codes(variable: np.ndarray, value: np.ndarray) -> np.ndarray:
    """One code per observation: 0 = kept, else the number of the first rule that excludes it."""
    variable = np.asarray(variable, dtype=np.intp)
    value = np.asarray(value, dtype=np.float64)
    codes = np.zeros(value.shape, dtype=np.int8)

    def mark(mask: np.ndarray, code: int) -> None:
        codes[(codes == KEPT) & mask] = code

    mark(_ZERO_MASK[variable] & (value == 0), 1)
    mark(value < 0, 2)
    mark((variable == VARIABLE_INDEX["Temp"]) & (value < 25), 3)
    mark((variable == VARIABLE_INDEX["pH"]) & ((value < 6.5) | (value > 8.0)), 4)
    mark((variable == VARIABLE_INDEX["Weight"]) & (value < 20), 5)
    mark((value < _LOW[variable]) | (value > _HIGH[variable]) | ~np.isfinite(value), 6)
    return codes


def describe_exclusion(code: int) -> str:
    return RULES[int(code)][1] if int(code) in RULES else ""
