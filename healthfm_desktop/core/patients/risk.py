"""In-hospital mortality risk of ICU stays with the shipped ``icu_mortality`` model: scores for
many stays at once, the risk as it was known at 12/24/36/48 h, and per-patient explanations.

Explanations are occlusion contributions: for each variable, the change in the predicted risk,
in percentage points, when every feature computed from that variable is replaced by the training
median (the graph imputes NaN with it). Positive values raise the risk. They are exact for what
the model does, whatever its form, and cost one batch of ~45 rows per patient.

A stay with too little data gets no number: ``risk`` None and a ``reason`` (fewer kept
observations or variables in the first 48 h than 99.5 % of the training stays had)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from healthfm_desktop.core.errors import ModelError
from healthfm_desktop.core.inference.registry import load_registry
from healthfm_desktop.core.patients.features import (
    FEATURE_NAMES,
    FEATURE_SOURCES,
    FEATURE_VERSION,
    HORIZON_MINUTES,
    TRAJECTORY_HOURS,
    cohort_features,
)
from healthfm_desktop.core.patients.record import PatientRecord
from healthfm_desktop.core.patients.cleaning import KEPT
from healthfm_desktop.core.patients.variables import BY_NAME, ICU_TYPES, VARIABLE_INDEX, VARIABLE_NAMES

MODEL_NAME = "icu_mortality"
_BATCH = 4096
_SOURCES = tuple(dict.fromkeys(FEATURE_SOURCES))
_SOURCE_COLUMNS = {s: np.array([i for i, f in enumerate(FEATURE_SOURCES) if f == s]) for s in _SOURCES}
# The 0.5 % quantiles of the training stays (PhysioNet 2012 sets a-c, 9,600 stays) in the first
# 48 h: kept observations 30, distinct variables 10. Below either the model has seen almost no
# stay like it, so it gives no number.
MIN_OBSERVATIONS = 30
MIN_VARIABLES = 10
# Measured in more than 97 % of the training stays: listed when a stay lacks them.
CORE_VARIABLES = ("HR", "GCS", "Temp", "Creatinine", "BUN", "HCT", "Platelets", "HCO3", "Na", "WBC", "K",
                  "Glucose", "Mg", "Urine")
NOT_ENOUGH_DATA = "not enough data to score"


@dataclass(frozen=True)
class InputCheck:
    """What a stay gives the model: whether it is enough to score, what is missing, what was
    excluded as physiologically impossible."""

    enough: bool
    reason: str | None
    missing: list[str]
    out_of_range: list[str]  # "HR: 2 values excluded (...)"


def check_inputs(record: PatientRecord) -> InputCheck:
    window = record.time <= HORIZON_MINUTES
    kept = window & (record.excluded == KEPT)
    observations = int(np.count_nonzero(kept))
    present = {VARIABLE_NAMES[i] for i in np.unique(record.variable[kept])}
    missing = [name for name in CORE_VARIABLES if name not in present]
    if math.isnan(record.descriptors.get("Age", math.nan)):
        missing.insert(0, "Age")
    out_of_range = []
    for index in np.unique(record.variable[window & (record.excluded != KEPT)]):
        name = VARIABLE_NAMES[index]
        points = record.excluded_points(name)
        out_of_range.append(f"{name}: {len(points)} value(s) excluded ({points[0][2]})")
    reason = None
    if observations < MIN_OBSERVATIONS or len(present) < MIN_VARIABLES:
        reason = (f"{NOT_ENOUGH_DATA}: {observations} usable observation(s) of {len(present)} variable(s) in the "
                  f"first 48 h; the model needs at least {MIN_OBSERVATIONS} observations of {MIN_VARIABLES} variables")
    return InputCheck(reason is None, reason, missing, out_of_range)


@dataclass(frozen=True)
class Contribution:
    """How much one variable moves this patient's risk of death (percentage points), and what it showed."""

    source: str
    points: float  # risk with the variable as it is minus risk with a typical value, x 100
    summary: str

    @property
    def direction(self) -> str:
        return "raises" if self.points > 0 else "lowers"


@dataclass
class RiskAssessment:
    patient_id: str
    risk: float | None  # None: not enough data to score (see ``reason``)
    trajectory: list[tuple[int, float]] = field(default_factory=list)  # (hours, risk)
    contributions: list[Contribution] = field(default_factory=list)
    model: str = MODEL_NAME
    reason: str | None = None
    inputs: InputCheck | None = None


class RiskModel:
    """The shipped model, checked (sha256, feature layout) once and reused."""

    def __init__(self, threads: int = 0):
        session, manifest, choice = load_registry().session(MODEL_NAME, threads=threads)
        names = manifest.preprocessing.get("feature_names")
        hours = manifest.preprocessing.get("trajectory_hours")
        if (manifest.preprocessing.get("feature_version") != FEATURE_VERSION or names != list(FEATURE_NAMES)
                or hours != list(TRAJECTORY_HOURS)):
            raise ModelError(
                f"model {MODEL_NAME!r} was trained on another feature layout than this app computes; reinstall the app"
            )
        self.session = session
        self.manifest = manifest
        self.provider = choice.active
        self.threshold = float(manifest.preprocessing.get("event1_threshold", 0.5))

    @property
    def label(self) -> str:
        return self.manifest.name

    def _run(self, features: np.ndarray, output: str, column: int = 0) -> np.ndarray:
        features = np.ascontiguousarray(features, dtype=np.float32)
        parts = [
            self.session.run([output], {"features": features[i : i + _BATCH]})[0][:, column]
            for i in range(0, len(features), _BATCH)
        ]
        return np.concatenate(parts).astype(np.float64) if parts else np.empty(0)

    def risk_of_features(self, features: np.ndarray, hours: int = HORIZON_MINUTES // 60) -> np.ndarray:
        """Risk from features computed on the first ``hours`` (one of TRAJECTORY_HOURS): each
        window has its own calibration in the graph."""
        if hours == HORIZON_MINUTES // 60:
            return self._run(features, "risk")
        return self._run(features, "risk_by_horizon", TRAJECTORY_HOURS.index(hours))

    def score(self, records: Sequence[PatientRecord], hours: int = HORIZON_MINUTES // 60) -> np.ndarray:
        """Risk of death for each stay, from its first ``hours`` (12, 24, 36 or 48)."""
        if hours not in TRAJECTORY_HOURS:
            raise ValueError(f"the model is calibrated for {TRAJECTORY_HOURS} h windows, not {hours} h")
        return self.risk_of_features(cohort_features(records, hours * 60), hours)

    def score_or_withhold(self, records: Sequence[PatientRecord]) -> list[tuple[float | None, str | None]]:
        """(risk, None) for each stay with enough data, (None, reason) for the others."""
        checks = [check_inputs(r) for r in records]
        scorable = [r for r, c in zip(records, checks) if c.enough]
        risks = iter(self.score(scorable).tolist() if scorable else [])
        return [(float(next(risks)), None) if c.enough else (None, c.reason) for c in checks]

    def trajectory(self, record: PatientRecord) -> list[tuple[int, float]]:
        rows = np.vstack([cohort_features([record], hours * 60) for hours in TRAJECTORY_HOURS])
        by_window = self.session.run(["risk_by_horizon"], {"features": rows})[0]
        return [(hours, float(by_window[i, i])) for i, hours in enumerate(TRAJECTORY_HOURS)]

    def explain(self, record: PatientRecord, top: int = 6) -> list[Contribution]:
        features = cohort_features([record])[0]
        rows = np.repeat(features[None, :], len(_SOURCES) + 1, axis=0)
        for row, source in enumerate(_SOURCES, start=1):
            rows[row, _SOURCE_COLUMNS[source]] = np.nan
        risks = self._run(rows, "risk")
        deltas = (risks[0] - risks[1:]) * 100.0
        order = np.argsort(-np.abs(deltas), kind="stable")
        return [
            Contribution(_SOURCES[i], float(deltas[i]), describe_source(record, _SOURCES[i]))
            for i in order[:top]
            if abs(deltas[i]) > 1e-4
        ]

    def assess(self, record: PatientRecord, top: int = 6) -> RiskAssessment:
        inputs = check_inputs(record)
        if not inputs.enough:
            return RiskAssessment(record.patient_id, None, model=self.label, reason=inputs.reason, inputs=inputs)
        trajectory = self.trajectory(record)
        risk = float(self.score([record])[0])
        return RiskAssessment(record.patient_id, risk, trajectory, self.explain(record, top), self.label, inputs=inputs)


def _format(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def describe_source(record: PatientRecord, source: str) -> str:
    """What the patient's data showed for one explanation source, in a few words."""
    d = record.descriptors
    if source == "Age":
        return f"age {d['Age']:.0f}" if not math.isnan(d["Age"]) else "age unknown"
    if source == "Gender":
        return {0.0: "female", 1.0: "male"}.get(d["Gender"], "sex unknown")
    if source == "Height":
        return f"height {d['Height']:.0f} cm" if not math.isnan(d["Height"]) else "height unknown"
    if source == "ICUType":
        return ICU_TYPES.get(int(d["ICUType"]), "ICU type unknown") if not math.isnan(d["ICUType"]) else "ICU type unknown"
    if source == "Observations":
        return f"{record.n_observations - record.n_excluded} observations"
    if source not in VARIABLE_INDEX:
        return source
    times, values = record.series(source)
    values = values[times <= HORIZON_MINUTES]
    unit = BY_NAME[source].unit
    unit = "" if unit.startswith(("score", "flag", "pH", "fraction")) else f" {unit}"
    if values.size == 0:
        return f"{source} not measured"
    if source == "Urine":
        return f"urine {values.sum():.0f} mL in {values.size} entries"
    if values.size == 1:
        return f"{source} {_format(values[0])}{unit}"
    return f"{source} last {_format(values[-1])}, range {_format(values.min())}-{_format(values.max())}{unit} ({values.size} values)"
