"""Benchmarks of the Patients workspace, each against a baseline run in the same process.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_patients.py [--stays 2400]

Data: the first N set-c stays of models/training/data/patients (written to a temporary long CSV
with its patients.csv, as a user would hand them to `healthfm patients risk`).

- feature extraction: the vectorised ``cohort_features`` vs a plain-Python per-row loop
  computing the same statistics (checked equal);
- scoring: one batched ONNX run vs one run per stay (checked equal);
- end to end: `healthfm patients risk FILE --json` as a subprocess vs the 10 s budget;
- timeline: showing a 48 h stay in the reused timeline vs building a new timeline each time.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO / "models" / "training" / "data" / "patients"

from healthfm_desktop.core.patients.cleaning import KEPT  # noqa: E402
from healthfm_desktop.core.patients.features import FEATURE_NAMES, HORIZON_MINUTES, STATS, cohort_features  # noqa: E402
from healthfm_desktop.core.patients.importing import read_long_csv  # noqa: E402
from healthfm_desktop.core.patients.risk import RiskModel  # noqa: E402
from healthfm_desktop.core.patients.variables import VARIABLE_NAMES  # noqa: E402


def best_of(func, repeat: int = 3) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return min(times), result


def line(what: str, ours: float, baseline: float, name: str, unit: str = "s") -> None:
    scale = 1000 if unit == "ms" else 1
    print(f"{what}: {baseline / ours:.1f}x {name} ({ours * scale:.3g} {unit} vs {baseline * scale:.3g} {unit})")


def write_subset(folder: Path, n: int) -> Path:
    with open(DATA / "patients.csv", newline="", encoding="utf-8") as handle:
        patients = [row for row in csv.DictReader(handle) if row["source_set"] == "c"][:n]
    ids = {row["patient_id"] for row in patients}
    with open(folder / "patients.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(patients[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(patients)
    path = folder / "timeseries.csv"
    with gzip.open(DATA / "timeseries.csv.gz", "rt", encoding="utf-8") as source, open(path, "w", encoding="utf-8") as out:
        out.write(source.readline())
        for row in source:
            if row.split(",", 1)[0] in ids:
                out.write(row)
    return path


def features_plain_python(records) -> np.ndarray:
    """Baseline: the same statistics from a per-row Python loop over dicts of lists."""
    out = np.full((len(records), len(FEATURE_NAMES)), np.nan)
    column = {name: i for i, name in enumerate(FEATURE_NAMES)}
    for row, record in enumerate(records):
        d = record.descriptors
        for name in ("Age", "Gender", "Height", "Weight"):
            out[row, column[name]] = d[name]
        if not math.isnan(d["ICUType"]):
            for k in (1, 2, 3, 4):
                out[row, column[f"ICUType={k}"]] = float(d["ICUType"] == k)
        series: dict[str, list[float]] = {}
        total = 0
        for t, v, x, e in zip(record.time.tolist(), record.variable.tolist(), record.value.tolist(), record.excluded.tolist()):
            if e == KEPT and t <= HORIZON_MINUTES:
                series.setdefault(VARIABLE_NAMES[v], []).append(x)
                total += 1
        for name in VARIABLE_NAMES:
            values = series.get(name, [])
            out[row, column[f"{name}:count"]] = len(values)
            if values:
                mean = sum(values) / len(values)
                stats = {"first": values[0], "last": values[-1], "min": min(values), "max": max(values), "mean": mean,
                         "std": statistics.pstdev(values)}
                for stat in STATS[1:]:
                    out[row, column[f"{name}:{stat}"]] = stats[stat]
        out[row, column["Urine:total"]] = sum(series.get("Urine", []))
        out[row, column["all:count"]] = total
    return out.astype(np.float32)


def bench_timeline(records) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from healthfm_desktop.views.patient_view.timeline import PatientTimeline

    app = QApplication.instance() or QApplication([])
    stays = sorted(records, key=lambda r: -r.n_observations)[:5]
    timeline = PatientTimeline()
    timeline.resize(900, 800)
    timeline.show()
    for stay in stays:  # make every panel once, as a session does after the first stays
        timeline.show_record(stay)
    app.processEvents()

    def ours():
        for stay in stays:
            timeline.show_record(stay)
            app.processEvents()

    def rebuild():
        for stay in stays:
            fresh = PatientTimeline()
            fresh.resize(900, 800)
            fresh.show()
            fresh.show_record(stay)
            app.processEvents()
            fresh.close()
            fresh.deleteLater()

    ours_s, _ = best_of(ours)
    base_s, _ = best_of(rebuild)
    line(f"timeline of a 48 h stay ({statistics.mean(s.n_observations for s in stays):.0f} observations, drawn)",
         ours_s / len(stays), base_s / len(stays), "building a new timeline per stay", "ms")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stays", type=int, default=2400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_subset(Path(tmp), args.stays)
        read_s, cohort = best_of(lambda: read_long_csv(path), repeat=1)
        records = cohort.records
        print(f"# {len(records)} stays, {sum(r.n_observations for r in records)} rows; import took {read_s:.2f} s")

        ours_s, ours = best_of(lambda: cohort_features(records))
        base_s, base = best_of(lambda: features_plain_python(records), repeat=1)
        np.testing.assert_allclose(ours, base, rtol=1e-5, atol=1e-4, equal_nan=True)
        line(f"features of {len(records)} stays", ours_s, base_s, "plain-Python per-row loop")

        model = RiskModel()
        ours_s, batched = best_of(lambda: model.score(records))
        base_s, single = best_of(lambda: np.array([model.score([r])[0] for r in records]), repeat=1)
        np.testing.assert_allclose(batched, single, atol=1e-6)
        line(f"features + risk of {len(records)} stays", ours_s, base_s, "scoring one stay at a time")

        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "healthfm_desktop", "patients", "risk", str(path), "--json"],
                                capture_output=True, text=True, cwd=REPO)
        cli_s = time.perf_counter() - start
        assert result.returncode == 0 and len(result.stdout.splitlines()) == len(records), result.stderr[:500]
        line(f"`healthfm patients risk` on {len(records)} stays, end to end", cli_s, 10.0, "the 10 s budget")

    bench_timeline(records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
