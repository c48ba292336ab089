"""Adaptation: embed the user's labelled items with the shipped encoder of their kind, choose a
head (logistic / ridge / kNN) by cross-validation, report cross-validated metrics with 95 % CIs,
reliability data and label counts, and save the result as a versioned user model (ONNX head on
embeddings + manifest + card + conformal calibration + applicability domain). A controller
runs ``train_adapted_model`` on a worker and passes ``progress`` and ``cancelled`` through."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from healthfm_desktop.core.errors import ModelError, UserFacingError
from healthfm_desktop.core.foundation.datasets import Items
from healthfm_desktop.core.foundation.encoders import encoder_info, load_encoder
from healthfm_desktop.core.inference.conformal import ConformalClassifier, ConformalRegressor, conformal_from_dict
from healthfm_desktop.core.inference.domain import EmbeddingDomain

CLASSIFICATION, REGRESSION = "classification", "regression"
COVERAGE = 0.9
MIN_PER_CLASS = 3
# 5 folds for small label sets, 3 from 500 items on: the estimate stays stable there and the
# head search then fits within the minute issue 15 allows for 1,000 items on 2 cores
LARGE = 500
BOOTSTRAP = 1000
KNN_FROM = 100
Progress = Callable[[float, str], None]
Cancelled = Callable[[], bool]


@dataclass
class HeadFit:
    """What cross-validation chose and measured; ``estimator`` is refitted on every item."""

    task: str
    estimator: Any
    head: str
    classes: list[str] | None
    cv: dict[str, float]
    cv_ci95: dict[str, list[float]]
    candidates: dict[str, float]
    label_counts: dict[str, int] | None
    reliability: list[dict[str, float]] = field(default_factory=list)
    conformal: ConformalClassifier | ConformalRegressor | None = None
    folds: int = 0
    oof: np.ndarray | None = None  # out-of-fold probabilities (classification) or predictions


def _candidates(task: str, n: int, kind: str | None = None):
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MaxAbsScaler, StandardScaler

    found = {}
    if task == CLASSIFICATION:
        for c in (0.01, 0.1, 1.0):
            found[f"logistic C={c}"] = lambda c=c: make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))
        if kind == "text":
            # the text encoder's unit vectors as they are: standardising 384 dimensions on 20
            # items adds noise (NegEx dev part, 10 labels per class: AUC 0.887 -> 0.900)
            for c in (1.0, 10.0, 100.0):
                found[f"logistic unit C={c:g}"] = lambda c=c: make_pipeline(LogisticRegression(C=c, max_iter=2000))
        if kind == "molecule":
            # scaled by each feature's largest value: a Morgan count bit seen in 1 of 20
            # molecules is not blown up to unit variance (ClinTox dev scaffolds, 10 labels per
            # class: AUC 0.670 -> 0.692, RF on Morgan bits 0.649)
            for c in (0.1, 1.0, 10.0):
                found[f"logistic max-abs C={c:g}"] = lambda c=c: make_pipeline(MaxAbsScaler(), LogisticRegression(C=c, max_iter=2000))
        # text and molecules: no kNN below KNN_FROM items, where cross-validation picked it by chance
        for k in (5, 15):
            if k < n * 0.8 and (kind not in ("text", "molecule") or n >= KNN_FROM):
                found[f"kNN k={k}"] = lambda k=k: make_pipeline(StandardScaler(), KNeighborsClassifier(k))
    else:
        for alpha in (1.0, 10.0, 100.0, 1000.0):
            found[f"ridge alpha={alpha:g}"] = lambda a=alpha: make_pipeline(StandardScaler(), Ridge(alpha=a))
        for k in (5, 15):
            if k < n * 0.8:
                found[f"kNN k={k}"] = lambda k=k: make_pipeline(StandardScaler(), KNeighborsRegressor(k))
    return found


def fit_head(embeddings: np.ndarray, labels: list, task: str = CLASSIFICATION, seed: int = 0,
             progress: Progress | None = None, cancelled: Cancelled | None = None, kind: str | None = None) -> HeadFit:
    """Choose the head among ``kind``'s candidates by k-fold cross-validation (5 folds, 3 from LARGE items; log loss for classification, RMSE for
    regression), report its out-of-fold metrics with bootstrap 95 % CIs, calibrate conformal
    sets/intervals on the out-of-fold predictions (cross-conformal), refit on everything."""
    from sklearn.model_selection import KFold, StratifiedKFold

    x = np.asarray(embeddings, dtype=np.float32)
    n = len(x)
    if task == CLASSIFICATION:
        classes = sorted({str(v) for v in labels})
        if len(classes) < 2:
            raise UserFacingError("classification needs at least two different labels")
        y = np.array([classes.index(str(v)) for v in labels])
        counts = np.bincount(y, minlength=len(classes))
        if counts.min() < MIN_PER_CLASS:
            few = [c for c, k in zip(classes, counts) if k < MIN_PER_CLASS]
            raise UserFacingError(f"each label needs at least {MIN_PER_CLASS} items; too few for: {', '.join(few)}")
        folds = int(min(5 if n < LARGE else 3, counts.min()))
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    else:
        classes = None
        try:
            y = np.array([float(v) for v in labels], dtype=np.float64)
        except ValueError as exc:
            raise UserFacingError(f"regression labels must be numbers ({exc})") from None
        if not np.all(np.isfinite(y)):
            raise UserFacingError("regression labels must be finite numbers")
        if n < 10:
            raise UserFacingError("regression needs at least 10 labelled items")
        folds = 5 if n < LARGE else 3
        splitter = KFold(folds, shuffle=True, random_state=seed)
    splits = list(splitter.split(x, y))
    candidates = _candidates(task, n, kind)
    scores, oof_of = {}, {}
    for number, (name, make) in enumerate(candidates.items()):
        if cancelled is not None and cancelled():
            raise InterruptedError("cancelled")
        oof = np.zeros((n, len(classes))) if task == CLASSIFICATION else np.zeros(n)
        for train, test in splits:
            model = make().fit(x[train], y[train])
            if task == CLASSIFICATION:
                oof[np.ix_(test, model[-1].classes_)] = model.predict_proba(x[test])
            else:
                oof[test] = model.predict(x[test])
        oof_of[name] = oof
        if task == CLASSIFICATION:
            scores[name] = float(-np.mean(np.log(np.clip(oof[np.arange(n), y], 1e-12, 1.0))))
        else:
            scores[name] = float(np.sqrt(np.mean((oof - y) ** 2)))
        if progress is not None:
            progress((number + 1) / (len(candidates) + 1), f"cross-validating {name}")
    best = min(scores, key=scores.get)
    oof = oof_of[best]
    estimator = candidates[best]().fit(x, y)
    if task == CLASSIFICATION:
        cv, ci = _classification_metrics(y, oof, seed)
        fit = HeadFit(task, estimator, best, classes, cv, ci, _rounded(scores), dict(zip(classes, map(int, counts))),
                      reliability_bins(y, oof), ConformalClassifier.calibrate(oof, y, COVERAGE), folds, oof)
    else:
        cv, ci = _regression_metrics(y, oof, seed)
        fit = HeadFit(task, estimator, best, None, cv, ci, _rounded(scores), None, [],
                      ConformalRegressor.calibrate(oof, y, COVERAGE), folds, oof)
    if progress is not None:
        progress(1.0, f"chose {best}")
    return fit


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in values.items()}


def auc_score(positive: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) identity, ties averaged: what roc_auc_score gives,
    ~50x faster, which a 1,000-resample bootstrap needs (tests compare the two)."""
    from scipy.stats import rankdata

    positive = np.asarray(positive, dtype=bool)
    n1 = int(positive.sum())
    n0 = positive.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _classification_metrics(y: np.ndarray, probabilities: np.ndarray, seed: int):
    classes = probabilities.shape[1]

    def metrics(yy, pp):
        predicted = pp.argmax(1)
        present = np.unique(yy)
        recalls = [np.mean(predicted[yy == c] == c) for c in present]
        out = {"accuracy": float(np.mean(predicted == yy)), "balanced_accuracy": float(np.mean(recalls))}
        if len(present) == classes:
            out["auc"] = auc_score(yy == 1, pp[:, 1]) if classes == 2 else \
                float(np.mean([auc_score(yy == c, pp[:, c]) for c in range(classes)]))
        return out

    return _with_bootstrap(metrics, y, probabilities, seed)


def _regression_metrics(y: np.ndarray, predicted: np.ndarray, seed: int):
    def metrics(yy, pp):
        residual = yy - pp
        spread = float(np.sum((yy - yy.mean()) ** 2))
        return {"mae": float(np.mean(np.abs(residual))), "rmse": float(np.sqrt(np.mean(residual ** 2))),
                "r2": float(1 - np.sum(residual ** 2) / spread) if spread > 0 else float("nan")}

    return _with_bootstrap(metrics, y, predicted, seed)


def _with_bootstrap(metrics, y, predicted, seed):
    """Point values and 95 % percentile-bootstrap intervals over the items."""
    point = metrics(y, predicted)
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(BOOTSTRAP):
        pick = rng.integers(0, len(y), len(y))
        for key, value in metrics(y[pick], predicted[pick]).items():
            samples[key].append(value)
    ci = {k: [round(float(np.nanpercentile(v, 2.5)), 4), round(float(np.nanpercentile(v, 97.5)), 4)]
          for k, v in samples.items() if v}
    return {k: round(v, 4) for k, v in point.items()}, ci


def reliability_bins(y: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Reliability-plot data: per confidence bin (of the top label), mean confidence, accuracy, count."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high) if low > 0 else (confidence <= high)
        if inside.any():
            rows.append({"low": round(float(low), 2), "high": round(float(high), 2),
                         "confidence": round(float(confidence[inside].mean()), 4),
                         "accuracy": round(float(correct[inside].mean()), 4), "count": int(inside.sum())})
    return rows


@dataclass
class AdaptationSummary:
    """The `adapt train` summary object (CLI.md) plus where the model went."""

    name: str
    kind: str
    task: str
    n: int
    classes: list[str] | None
    cv: dict[str, float]
    seconds: float
    version: str
    path: Path
    fit: HeadFit = field(repr=False)
    errors: list[tuple[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "task": self.task, "n": self.n, "classes": self.classes,
                "cv": self.cv, "cv_ci95": self.fit.cv_ci95, "head": self.fit.head, "version": self.version,
                "seconds": round(self.seconds, 2)}


def train_adapted_model(kind: str, items: Items, name: str, task: str = CLASSIFICATION,
                        folder: Path | None = None, data_name: str | None = None,
                        progress: Progress | None = None, cancelled: Cancelled | None = None,
                        registry=None) -> AdaptationSummary:
    """Embed (0-60 %), cross-validate (60-95 %), save (95-100 %) model ``name`` in the user's
    model folder (or ``folder``). Raises UserFacingError for data that cannot train a head and
    InterruptedError when ``cancelled()`` turns true."""
    from healthfm_desktop.core.foundation.model_files import check_new_name, save_adapted_model

    started = time.perf_counter()
    if len(items) == 0:
        raise UserFacingError("no readable labelled items")
    check_new_name(name, registry)
    report = progress or (lambda fraction, step: None)
    encoder = load_encoder(kind, registry=registry)
    report(0.0, f"embedding {len(items)} items")
    embeddings = encoder.embed(items.payloads, progress=lambda done, total: report(0.6 * done / total, f"embedded {done} of {total}"),
                               cancelled=cancelled)
    fit = fit_head(embeddings, items.labels, task, progress=lambda f, step: report(0.6 + 0.35 * f, step),
                   cancelled=cancelled, kind=kind)
    if cancelled is not None and cancelled():
        raise InterruptedError("cancelled")
    report(0.95, "saving the model")
    info = encoder_info(kind, registry)
    if kind == "molecule":
        # the shipped molecular models' rule: the nearest training molecule by Tanimoto on the
        # Morgan bits the embedding starts with (cosine on standardised features let NaCl, water,
        # iron and C60 through as "in domain" of a ClinTox head)
        from healthfm_desktop.core.chemistry.featurize import MORGAN_SIZE

        domain = EmbeddingDomain.fit(embeddings, k=1, metric="tanimoto", fingerprint_bits=MORGAN_SIZE)
    else:
        domain = EmbeddingDomain.fit(embeddings, k=min(5, len(embeddings) - 1), metric="cosine")
    path, version = save_adapted_model(name, kind, info, fit, domain, len(items), data_name, folder, sample=embeddings[:8])
    report(1.0, "saved")
    return AdaptationSummary(name, kind, task, len(items), fit.classes, fit.cv, time.perf_counter() - started,
                             version, path, fit, list(items.errors))


def _version(text) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in str(text).split(".")[:3])
    except ValueError:
        return ()


def embedding_options(manifest) -> dict:
    """How to embed for a head made on an earlier version of its encoder. Text encoder 1.1.0
    reads a long note in 256-token windows; a head trained on 1.0.x embeddings saw only a note's
    first window, so it is fed that again (otherwise its long-note inputs would silently shift)."""
    made_on = _version(manifest.extra.get("encoder_version", ""))
    if manifest.kind == "text" and made_on and made_on < (1, 1):
        return {"max_windows": 1}
    return {}


class AdaptedModel:
    """A head on embeddings (adapted here or brought by the user) with its encoder, conformal
    calibration and applicability domain: ``predict(payloads)`` gives CLI.md's records."""

    def __init__(self, manifest, session, encoder, conformal, domain):
        self.manifest = manifest
        self.session = session
        self.encoder = encoder
        self.conformal = conformal
        self.domain = domain
        self.embed_options = embedding_options(manifest)

    def embed(self, payloads: list, progress=None, cancelled=None) -> np.ndarray:
        """The embeddings this head was made on: its encoder, read as the encoder's version it
        was trained with read them."""
        return self.encoder.embed(payloads, progress=progress, cancelled=cancelled, **self.embed_options)

    @classmethod
    def load(cls, manifest, registry=None) -> "AdaptedModel":
        from healthfm_desktop.core.inference.registry import load_registry
        from healthfm_desktop.core.inference.runtime import create_session

        registry = registry or load_registry()
        manifest = registry.verify(manifest.name) if not isinstance(manifest, str) else registry.verify(manifest)
        if not manifest.encoder:
            raise ModelError(f"model {manifest.name!r} is not a head on embeddings (its manifest names no encoder)")
        kind = manifest.kind
        expected = encoder_info(kind, registry)
        if manifest.encoder != expected.name or int(manifest.inputs[0]["shape"][-1]) != expected.dim:
            raise ModelError(f"model {manifest.name!r} was made on encoder {manifest.encoder!r}, which this "
                             f"installation does not have (it has {expected.name} {expected.version})")
        made_on = _version(manifest.extra.get("encoder_version", ""))
        if kind == "image" and made_on and made_on[:2] != _version(expected.version)[:2]:
            # a retrained image encoder's embedding space is another one (same size, other axes):
            # a head fitted on the old space would answer, wrongly, without any sign of it
            raise ModelError(f"model {manifest.name!r} was made on {expected.name} "
                             f"{manifest.extra['encoder_version']}; this installation has {expected.version}, "
                             f"whose embeddings differ: train it again on the same labels")
        session, _ = create_session(manifest.model_path, threads=1)
        calibration = manifest.extra.get("conformal")
        conformal = conformal_from_dict(calibration) if calibration else None
        domain = EmbeddingDomain.load(manifest.side_file("domain")) if "domain" in manifest.extra.get("files", {}) else None
        return cls(manifest, session, load_encoder(kind, registry=registry), conformal, domain)

    @property
    def task(self) -> str:
        return REGRESSION if self.manifest.task.endswith("regression") else CLASSIFICATION

    def predict_embeddings(self, embeddings: np.ndarray) -> list[dict[str, Any]]:
        if len(embeddings) == 0:
            return []
        feeds = {self.manifest.inputs[0]["name"]: np.asarray(embeddings, dtype=np.float32)}
        outputs = {o.name: v for o, v in zip(self.session.get_outputs(), self.session.run(None, feeds))}
        in_domain = self.domain.in_domain(embeddings) if self.domain is not None else np.ones(len(embeddings), bool)
        records = []
        if self.task == CLASSIFICATION:
            labels = list(self.manifest.labels)
            probabilities = np.asarray(outputs.get("probabilities", next(iter(outputs.values()))), dtype=np.float64)
            sets = self.conformal.prediction_sets(probabilities, labels) if self.conformal else [[labels[int(i)]] for i in probabilities.argmax(1)]
            for row, chosen, inside in zip(probabilities, sets, in_domain):
                records.append({"label": labels[int(row.argmax())],
                                "probabilities": {l: round(float(p), 6) for l, p in zip(labels, row)},
                                "prediction_set": chosen, "in_domain": bool(inside)})
        else:
            values = np.asarray(outputs.get("variable", next(iter(outputs.values())))).reshape(-1)
            intervals = self.conformal.intervals(values) if self.conformal else np.stack([values, values], 1)
            for value, (low, high), inside in zip(values, intervals, in_domain):
                records.append({"value": round(float(value), 6), "interval": [round(float(low), 6), round(float(high), 6)],
                                "in_domain": bool(inside)})
        return records

    def predict(self, payloads: list, progress=None, cancelled=None) -> list[dict[str, Any]]:
        return self.predict_embeddings(self.embed(payloads, progress=progress, cancelled=cancelled))


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def import_head_libraries() -> None:
    """Import what fitting and saving a head needs (scikit-learn, SciPy, skl2onnx: about 1,300
    modules) ahead of the first training: imported inside it, on a worker, they held the GIL
    long enough to stall the UI 260 ms (benchmarks/bench_adapt_stall.py)."""
    import scipy.stats  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.model_selection  # noqa: F401
    import sklearn.neighbors  # noqa: F401
    import sklearn.pipeline  # noqa: F401
    import sklearn.preprocessing  # noqa: F401
    import skl2onnx  # noqa: F401
    import skl2onnx.common.data_types  # noqa: F401
