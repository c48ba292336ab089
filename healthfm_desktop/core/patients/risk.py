"""In-hospital mortality risk of ICU stays with the shipped ``icu_mortality`` model: scores for
many stays at once, the risk as it was known at 12/24/36/48 h, and per-patient explanations.

Explanations are occlusion contributions: for each variable, the change in the model's log-odds
when every feature computed from that variable is replaced by the training median (the graph
imputes NaN with it). Positive values raise the risk. They are exact for what the model does,
whatever its form, and cost one batch of ~45 rows per patient."""

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
from healthfm_desktop.core.patients.variables import BY_NAME, ICU_TYPES, VARIABLE_INDEX

MODEL_NAME = "icu_mortality"
_BATCH = 4096
_SOURCES = tuple(dict.fromkeys(FEATURE_SOURCES))
_SOURCE_COLUMNS = {s: np.array([i for i, f in enumerate(FEATURE_SOURCES) if f == s]) for s in _SOURCES}


@dataclass(frozen=True)
class Contribution:
    """How much one variable moves this patient's log-odds of death, and what it showed."""

    source: str
    log_odds: float
    summary: str

    @property
    def direction(self) -> str:
        return "raises" if self.log_odds > 0 else "lowers"


@dataclass
class RiskAssessment:
    patient_id: str
    risk: float
    trajectory: list[tuple[int, float]] = field(default_factory=list)  # (hours, risk)
    contributions: list[Contribution] = field(default_factory=list)
    model: str = MODEL_NAME


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

    def trajectory(self, record: PatientRecord) -> list[tuple[int, float]]:
        rows = np.vstack([cohort_features([record], hours * 60) for hours in TRAJECTORY_HOURS])
        by_window = self.session.run(["risk_by_horizon"], {"features": rows})[0]
        return [(hours, float(by_window[i, i])) for i, hours in enumerate(TRAJECTORY_HOURS)]

    def explain(self, record: PatientRecord, top: int = 6) -> list[Contribution]:
        features = cohort_features([record])[0]
        rows = np.repeat(features[None, :], len(_SOURCES) + 1, axis=0)
        for row, source in enumerate(_SOURCES, start=1):
            rows[row, _SOURCE_COLUMNS[source]] = np.nan
        logits = self._run(rows, "logit")
        deltas = logits[0] - logits[1:]
        order = np.argsort(-np.abs(deltas), kind="stable")
        return [
            Contribution(_SOURCES[i], float(deltas[i]), describe_source(record, _SOURCES[i]))
            for i in order[:top]
            if abs(deltas[i]) > 1e-6
        ]

    def assess(self, record: PatientRecord, top: int = 6) -> RiskAssessment:
        trajectory = self.trajectory(record)
        risk = float(self.score([record])[0])
        return RiskAssessment(record.patient_id, risk, trajectory, self.explain(record, top), self.label)


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
