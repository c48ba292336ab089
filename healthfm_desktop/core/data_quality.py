"""The data-quality report of an import, one shape for every workspace: what could not be read,
what was out of range, what was there twice and what was missing, each with the item and why;
shown in the Data quality panel and printed by `healthfm data-quality --json`."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

KINDS = ("unreadable", "out_of_range", "duplicated", "missing")
MAX_LISTED = 200  # items listed per kind (the counts are always complete)


@dataclass
class QualityReport:
    workspace: str  # images, notes, molecules, patients
    source: str  # the file or folder as the user gave it
    items: int = 0  # what was read: images, molecules, stays, notes
    found: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: {k: [] for k in KINDS})
    counts: dict[str, int] = field(default_factory=lambda: {k: 0 for k in KINDS})

    def add(self, kind: str, item: str, detail: str) -> None:
        self.counts[kind] += 1
        if len(self.found[kind]) < MAX_LISTED:
            self.found[kind].append((str(item), detail))

    @property
    def clean(self) -> bool:
        return not any(self.counts.values())

    def summary(self) -> str:
        if self.clean:
            return f"{self.items} {self.unit}: nothing unreadable, out of range, duplicated or missing"
        parts = [f"{n} {k.replace('_', ' ')}" for k, n in self.counts.items() if n]
        return f"{self.items} {self.unit}: " + ", ".join(parts)

    @property
    def unit(self) -> str:
        unit = {"images": "image", "notes": "note", "molecules": "record", "patients": "stay"}.get(self.workspace, "item")
        return unit if self.items == 1 else unit + "s"

    def to_json(self) -> dict:
        return {"workspace": self.workspace, "source": self.source, "items": self.items,
                **{k: self.counts[k] for k in KINDS},
                "issues": [{"kind": k, "item": item, "detail": detail} for k in KINDS for item, detail in self.found[k]]}


def molecule_report(records, source: str) -> QualityReport:
    """``records``: MoleculeRecord (core.chemistry.reading) of one file. Duplicates are the same
    structure (canonical SMILES) under another record; missing: an empty structure or id."""
    report = QualityReport("molecules", source)
    first_of: dict[str, str] = {}
    for record in records:
        report.items += 1
        if not (record.source or "").strip():
            report.add("missing", record.id, "no structure in this record")
            continue
        if record.mol is None:
            report.add("unreadable", record.id, record.error or "not a readable structure")
            continue
        if not str(record.id).strip():
            report.add("missing", f"record {record.index}", "no id")
        smiles = record.smiles
        if smiles in first_of:
            report.add("duplicated", record.id, f"the same molecule as {first_of[smiles]} ({smiles})")
        else:
            first_of[smiles] = record.id
    return report


def patient_report(cohort, source: str) -> QualityReport:
    """``cohort``: a PatientCohort (core.patients). Unreadable: refused rows; out of range:
    values excluded by the cleaning rules; duplicated: a row repeating another (same stay, time,
    variable and value); missing: what the risk model needs and the stay lacks."""
    from healthfm_desktop.core.patients.cleaning import describe_exclusion
    from healthfm_desktop.core.patients.risk import check_inputs
    from healthfm_desktop.core.patients.variables import VARIABLE_NAMES

    report = QualityReport("patients", source, items=len(cohort.records))
    for bad in cohort.bad_rows:  # the reader drops a repeated row as a bad row that says so
        report.add("duplicated" if bad.reason.startswith("duplicate") else "unreadable", f"line {bad.line}", bad.reason)
    for record in cohort.records:
        excluded = record.excluded != 0
        by_rule: dict[tuple[str, int], int] = defaultdict(int)
        for variable, code in zip(record.variable[excluded], record.excluded[excluded]):
            by_rule[(VARIABLE_NAMES[variable], int(code))] += 1
        for (name, code), n in by_rule.items():
            report.add("out_of_range", f"stay {record.patient_id}", f"{name}: {n} value(s) excluded ({describe_exclusion(code)})")
        check = check_inputs(record)
        if not check.enough:
            report.add("missing", f"stay {record.patient_id}", check.reason)
        elif check.missing:
            report.add("missing", f"stay {record.patient_id}", "not measured: " + ", ".join(check.missing))
    return report


def image_report(scan, source: str) -> QualityReport:
    """``scan``: a ScanResult (core.imaging). Unreadable: rejected files; duplicated: a SOP
    Instance UID met in more than one file; missing: slices of a stack, where the gap between
    neighbouring slice positions is over 1.5 times the stack's usual spacing."""
    report = QualityReport("images", source)
    for path, reason in scan.rejected:
        report.add("unreadable", path, reason)
    seen: dict[str, str] = {}
    for series in scan.series:
        for instance in {id(frame.instance): frame.instance for frame in series.frames}.values():
            report.items += 1
            name = instance.source.member or str(instance.source.path)
            uid = instance.sop_instance_uid
            if uid in seen and seen[uid] != name:
                report.add("duplicated", name, f"the same SOP Instance UID as {seen[uid]}")
            else:
                seen.setdefault(uid, name)
        gaps = slice_gaps(series.frames)
        if gaps:
            spacing, missing = gaps
            report.add("missing", f"series {series.series_uid}",
                       f"about {missing} slice(s) missing: gaps wider than the usual {spacing:.2f} mm spacing")
    return report


def slice_gaps(frames) -> tuple[float, int] | None:
    """(usual spacing, slices missing) of a stack with positions, or None when nothing is missing."""
    normal = frames[0].normal if frames else None
    if normal is None or len(frames) < 3 or any(f.position is None for f in frames):
        return None
    positions = np.sort([float(np.dot(np.array(f.position), normal)) for f in frames])
    steps = np.diff(positions)
    steps = steps[steps > 1e-3]
    if steps.size < 2:
        return None
    usual = float(np.median(steps))
    wide = steps[steps > 1.5 * usual]
    if not wide.size:
        return None
    return usual, int(sum(round(step / usual) - 1 for step in wide))


def note_report(notes, problems, source: str) -> QualityReport:
    """``notes``: the notes read from one input; ``problems``: (item, reason) for the ones
    that could not be; an empty note is missing text, the same text twice a duplicate."""
    report = QualityReport("notes", source)
    for item, reason in problems:
        report.add("unreadable", item, reason)
    first_of: dict[str, str] = {}
    for note_id, text in notes:
        report.items += 1
        if not text.strip():
            report.add("missing", note_id, "the note has no text")
        elif text in first_of:
            report.add("duplicated", note_id, f"the same text as {first_of[text]}")
        else:
            first_of[text] = note_id
    return report


def image_reports(scan, paths) -> list[QualityReport]:
    """One ``image_report`` per path an import was given, from that import's ScanResult (the
    app reports on what the Images workspace read rather than reading it again)."""
    from types import SimpleNamespace

    paths = [str(p) for p in paths]
    if len(paths) == 1:
        return [image_report(scan, paths[0])]

    def owner(name: str) -> str | None:
        return next((p for p in paths if name == p or name.startswith(p.rstrip("/") + "/") or name.startswith(p + "!")),
                    None)

    reports = []
    for path in paths:
        rejected = [(item, reason) for item, reason in scan.rejected if owner(item) == path]
        series = [s for s in scan.series if owner(str(s.frames[0].instance.source)) == path]
        reports.append(image_report(SimpleNamespace(rejected=rejected, series=series), path))
    return reports


def report_for(path, workspace: str | None = None) -> QualityReport:
    """Read one file or folder the way its workspace imports it and report on it (``workspace``:
    where the routing sent it, when known). Raises UserFacingError when no workspace can take
    it or it cannot be read at all."""
    from pathlib import Path

    from healthfm_desktop.core.errors import UserFacingError
    from healthfm_desktop.core.routing import IMAGES, MOLECULES, NOTES, PATIENTS, route_paths

    path = Path(path)
    if workspace is None:
        routing = route_paths([path])
        if routing.rejected:
            raise UserFacingError(routing.rejected[0][1])
        (workspace,) = routing.by_workspace
    source = str(path)
    if workspace == IMAGES:
        import warnings

        from healthfm_desktop.core.imaging.scanning import scan_paths

        with warnings.catch_warnings():  # pydicom's warnings quote header values; the reasons are listed
            warnings.simplefilter("ignore")
            return image_report(scan_paths([path]), source)
    if workspace == MOLECULES:
        from healthfm_desktop.core.chemistry.reading import read_molecules

        return molecule_report(list(read_molecules(path)), source)
    if workspace == PATIENTS:
        from healthfm_desktop.core.patients.reading import read_patient_file

        return patient_report(read_patient_file(path), source)
    if workspace == NOTES:
        from healthfm_desktop.core.records.notes_io import BadRecord, read_notes

        notes, problems = [], []
        for item in read_notes([path]):
            if isinstance(item, BadRecord):
                problems.append((item.where, item.reason))
            else:
                notes.append((item.id, item.text))
        return note_report(notes, problems, source)
    raise UserFacingError(f"no data-quality report for {workspace}")
