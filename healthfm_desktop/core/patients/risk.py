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
    cohort_features,
)
from healthfm_desktop.core.patients.record import PatientRecord
from healthfm_desktop.core.patients.variables import BY_NAME, ICU_TYPES, VARIABLE_INDEX

MODEL_NAME = "icu_mortality"
TRAJECTORY_HOURS = (12, 24, 36, 48)
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
        if manifest.preprocessing.get("feature_version") != FEATURE_VERSION or names != list(FEATURE_NAMES):
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

    def _run(self, features: np.ndarray, output: str) -> np.ndarray:
        features = np.ascontiguousarray(features, dtype=np.float32)
        parts = [
            self.session.run([output], {"features": features[i : i + _BATCH]})[0][:, 0]
            for i in range(0, len(features), _BATCH)
        ]
        return np.concatenate(parts).astype(np.float64) if parts else np.empty(0)

    def risk_of_features(self, features: np.ndarray) -> np.ndarray:
        return self._run(features, "risk")

    def score(self, records: Sequence[PatientRecord], horizon_minutes: int = HORIZON_MINUTES) -> np.ndarray:
        """Risk of death for each stay, from its first ``horizon_minutes``."""
        return self.risk_of_features(cohort_features(records, horizon_minutes))

    def trajectory(self, record: PatientRecord) -> list[tuple[int, float]]:
        rows = np.vstack([cohort_features([record], hours * 60) for hours in TRAJECTORY_HOURS])
        return list(zip(TRAJECTORY_HOURS, self.risk_of_features(rows).tolist()))

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
        return RiskAssessment(record.patient_id, trajectory[-1][1], trajectory, self.explain(record, top), self.label)


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
