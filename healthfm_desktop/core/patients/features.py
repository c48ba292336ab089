"""Risk features of an ICU stay: for each of the 37 variables, summary statistics of its kept
(not excluded) values within the first ``horizon`` minutes, plus the admission descriptors.
The training script and the app both call ``cohort_features``, so the model sees the same
numbers in both. Missing statistics are NaN; the model imputes them (its ONNX graph holds the
training medians), so this module has no learned parameters."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from healthfm_desktop.core.patients.cleaning import KEPT
from healthfm_desktop.core.patients.record import PatientRecord
from healthfm_desktop.core.patients.variables import VARIABLE_INDEX, VARIABLE_NAMES

FEATURE_VERSION = 1
HORIZON_MINUTES = 48 * 60
# The risk is also shown as it was known at these hours; the model is calibrated at each one,
# because a 12 h window has fewer counts and extremes than the 48 h window it was trained on.
TRAJECTORY_HOURS = (12, 24, 36, 48)
STATS = ("count", "first", "last", "min", "max", "mean", "std")
_N_VARIABLES = len(VARIABLE_NAMES)
_N_STATS = len(STATS)
DESCRIPTOR_FEATURES = ("Age", "Gender", "Height", "Weight", "ICUType=1", "ICUType=2", "ICUType=3", "ICUType=4")
EXTRA_FEATURES = ("Urine:total", "all:count")

FEATURE_NAMES: tuple[str, ...] = (
    DESCRIPTOR_FEATURES
    + tuple(f"{name}:{stat}" for name in VARIABLE_NAMES for stat in STATS)
    + EXTRA_FEATURES
)
N_FEATURES = len(FEATURE_NAMES)
_SERIES_OFFSET = len(DESCRIPTOR_FEATURES)
_EXTRA_OFFSET = _SERIES_OFFSET + _N_VARIABLES * _N_STATS


def feature_source(feature: str) -> str:
    """The variable (or descriptor) a feature is computed from: "HR:mean" -> "HR",
    "ICUType=3" -> "ICUType", "all:count" -> "Observations"."""
    if feature == "all:count":
        return "Observations"
    return feature.split(":")[0].split("=")[0]


FEATURE_SOURCES: tuple[str, ...] = tuple(feature_source(f) for f in FEATURE_NAMES)


def cohort_features(records: Sequence[PatientRecord], horizon_minutes: int = HORIZON_MINUTES) -> np.ndarray:
    """Feature matrix [len(records), N_FEATURES], float32, NaN where a statistic is missing."""
    n = len(records)
    out = np.full((n, N_FEATURES), np.nan, dtype=np.float64)
    if n == 0:
        return out.astype(np.float32)
    for row, record in enumerate(records):
        d = record.descriptors
        out[row, 0:4] = [d.get("Age", np.nan), d.get("Gender", np.nan), d.get("Height", np.nan), d.get("Weight", np.nan)]
        icu = d.get("ICUType", np.nan)
        if icu == icu:  # known ICU type: one-hot; unknown: all four NaN
            out[row, 4:8] = [float(icu == k) for k in (1, 2, 3, 4)]

    sizes = np.fromiter((r.time.size for r in records), dtype=np.int64, count=n)
    patient = np.repeat(np.arange(n), sizes)
    if sizes.sum():
        time = np.concatenate([r.time for r in records])
        variable = np.concatenate([r.variable for r in records]).astype(np.int64)
        value = np.concatenate([r.value for r in records])
        excluded = np.concatenate([r.excluded for r in records])
        keep = (excluded == KEPT) & (time <= horizon_minutes)
        patient, time, variable, value = patient[keep], time[keep], variable[keep], value[keep]
    else:
        time = variable = value = np.empty(0)

    series = np.full((n, _N_VARIABLES, _N_STATS), np.nan)
    series[:, :, 0] = 0.0  # count: zero, not missing, when a variable was never measured
    if value.size:
        order = np.lexsort((time, variable, patient))
        patient, variable, value = patient[order], variable[order], value[order]
        key = patient * _N_VARIABLES + variable
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        ends = np.r_[starts[1:], key.size]
        counts = (ends - starts).astype(np.float64)
        sums = np.add.reduceat(value, starts)
        means = sums / counts
        squares = np.add.reduceat((value - np.repeat(means, ends - starts)) ** 2, starts)
        p, v = patient[starts], variable[starts]
        series[p, v, 0] = counts
        series[p, v, 1] = value[starts]
        series[p, v, 2] = value[ends - 1]
        series[p, v, 3] = np.minimum.reduceat(value, starts)
        series[p, v, 4] = np.maximum.reduceat(value, starts)
        series[p, v, 5] = means
        series[p, v, 6] = np.sqrt(squares / counts)
        urine = v == VARIABLE_INDEX["Urine"]
        out[:, _EXTRA_OFFSET] = 0.0
        out[p[urine], _EXTRA_OFFSET] = sums[urine]
        out[:, _EXTRA_OFFSET + 1] = np.bincount(patient, minlength=n)
    else:
        out[:, _EXTRA_OFFSET] = 0.0
        out[:, _EXTRA_OFFSET + 1] = 0.0
    out[:, _SERIES_OFFSET:_EXTRA_OFFSET] = series.reshape(n, -1)
    return out.astype(np.float32)


def record_features(record: PatientRecord, horizon_minutes: int = HORIZON_MINUTES) -> np.ndarray:
    return cohort_features([record], horizon_minutes)[0]
