"""``healthfm patients risk FILE [--json]``: in-hospital mortality risk for every stay in a
patient file (long CSV ``patient_id,time,variable,value[,unit]``, plain or gzipped; a
``patients.csv`` beside it adds the admission descriptors; PhysioNet record files and FHIR
Bundles are read too).

Bad rows: each is reported on stderr as ``FILE:line: reason`` (the first 100, then a count),
the stay is scored from its other rows, and the command exits 1 at the end, as for a bad file in
any batch command: the scores are printed, but a script sees that the input was not clean.
Impossible values (zero blood pressure, pH > 14, ...) are not bad rows: they are excluded by the
documented cleaning rules and the command exits 0."""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

from healthfm_desktop.batch.output import emit_json, report_bad_input
from healthfm_desktop.core.errors import UserFacingError

MAX_BAD_ROWS_SHOWN = 100
EXIT_OK, EXIT_FAILED = 0, 1
_CLUSTER_CHUNK = 4096  # stays per cluster task (the risk model's batch size)


def risk(args) -> int:
    from healthfm_desktop.core.patients.reading import read_patient_file
    from healthfm_desktop.core.patients.risk import RiskModel

    path = Path(args.file)
    try:
        cohort = read_patient_file(path)
    except UserFacingError as exc:
        report_bad_input(args.file, exc)
        return EXIT_FAILED
    for bad in cohort.bad_rows[:MAX_BAD_ROWS_SHOWN]:
        sys.stderr.write(bad.format(args.file) + "\n")
    if len(cohort.bad_rows) > MAX_BAD_ROWS_SHOWN:
        sys.stderr.write(f"{args.file}: {len(cohort.bad_rows) - MAX_BAD_ROWS_SHOWN} more bad rows not shown\n")
    if not cohort.records:
        report_bad_input(args.file, "no patient could be read")
        return EXIT_FAILED
    from healthfm_desktop.core.patients.risk import check_inputs

    model = RiskModel()
    if getattr(args, "scheduler", None):
        from healthfm_desktop.core.cluster import chunked, map_ordered

        # chunks of the model's own batch size: the same ONNX batches as the local run
        parts = map_ordered(risk_chunk, chunked(cohort.records, _CLUSTER_CHUNK), scheduler=args.scheduler, label="risk")
        scored = [pair for part in parts for pair in part]
    else:
        scored = model.score_or_withhold(cohort.records)
    for record, (value, reason) in zip(cohort.records, scored):
        if args.json:
            row = {"patient_id": record.patient_id, "risk": None if value is None else round(value, 6), "model": model.label}
            if reason is not None:
                row["reason"] = reason
            inputs = check_inputs(record)  # what the model expects and this stay lacks, or had out of range
            row["inputs_missing"], row["inputs_out_of_range"] = inputs.missing, inputs.out_of_range
            emit_json(row)
        elif value is None:
            sys.stdout.write(f"{record.patient_id}\t-\t{reason}\n")
        else:
            sys.stdout.write(f"{record.patient_id}\t{value:.4f}\n")
    sys.stdout.flush()
    return EXIT_FAILED if cohort.bad_rows else EXIT_OK


@lru_cache(maxsize=1)
def _worker_model():
    from healthfm_desktop.core.patients.risk import RiskModel

    return RiskModel()


def risk_chunk(records: list) -> list[tuple[float | None, str | None]]:
    """One cluster task of `patients risk --scheduler`: (risk, reason withheld) of a chunk of stays."""
    return _worker_model().score_or_withhold(records)
