"""FHIR R4 Bundles of Observations <-> ICU stays.

Reading: every entry is validated with fhir.resources on its own, so one malformed entry is
reported (``entry N: reason``) and the rest kept. Observations are matched to the variable
catalogue by LOINC code, or by a coding/text equal to the variable's name (the local code
system written by ``bundle_from_record``); components (e.g. a blood-pressure panel) count as
observations of their own. Time zero of a stay is the start of an Encounter for the patient,
else the patient's earliest observation. Age comes from an age Observation (LOINC 30525-0) or
from Patient.birthDate at time zero; sex from Patient.gender. Observations with codes the app
does not use are skipped and counted in the cohort's notes."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from healthfm_desktop.core.errors import UnreadableFileError
from healthfm_desktop.core.patients.limits import MAX_ID_LENGTH, MAX_MINUTES
from healthfm_desktop.core.patients.record import CohortBuilder, PatientCohort, PatientRecord
from healthfm_desktop.core.patients.variables import (
    BY_NAME,
    DESCRIPTOR_BY_NAME,
    DESCRIPTORS,
    VARIABLE_INDEX,
    VARIABLE_NAMES,
    VARIABLES,
    canonical_name,
    unit_conversion,
)

LOINC = "http://loinc.org"
LOCAL_SYSTEM = "https://physionet.org/content/challenge-2012/1.0.0/#parameter"
MAX_BUNDLE_BYTES = 256 * 1024 * 1024
_BY_LOINC: dict[str, str] = {v.loinc: v.name for v in VARIABLES if v.loinc}
_DESCRIPTOR_LOINC: dict[str, str] = {d.loinc: d.name for d in DESCRIPTORS if d.loinc and d.name != "Weight"}
_UCUM = {
    "bpm": "/min", "mmHg": "mm[Hg]", "degC": "Cel", "score (3-15)": "{score}", "fraction (0-1)": "1",
    "flag (0/1)": "1", "pH (0-14)": "[pH]", "%": "%", "g/dL": "g/dL", "IU/L": "[IU]/L", "mg/dL": "mg/dL",
    "mmol/L": "mmol/L", "mEq/L": "meq/L", "cells/nL": "10*3/uL", "ug/L": "ug/L", "mL": "mL", "kg": "kg",
}


def _models():
    # R4 resources (fhir.resources.R4B; its default package is R5), imported on first use
    from fhir.resources.R4B import get_fhir_model_class

    return get_fhir_model_class


def _aware(moment: datetime | date) -> datetime:
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()) if p != "__root__")
            return f"{where}: {first.get('msg', '')}"[:160] if where else str(first.get("msg", ""))[:160]
        except Exception:  # noqa: BLE001 - fall back to the plain text of an odd error object
            pass
    return str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__


def _variable_of(code: Any) -> tuple[str, str] | None:
    """("observation"|"descriptor", name) for a CodeableConcept, or None when we do not use it."""
    if code is None:
        return None
    names = []
    for coding in code.coding or []:
        if coding.system == LOINC and coding.code in _BY_LOINC:
            return "observation", _BY_LOINC[coding.code]
        if coding.system == LOINC and coding.code in _DESCRIPTOR_LOINC:
            return "descriptor", _DESCRIPTOR_LOINC[coding.code]
        names += [coding.code or "", coding.display or ""]
    names.append(code.text or "")
    for name in names:
        canonical = canonical_name(name)
        if canonical:
            return "observation", canonical
        for descriptor in ("Age", "Gender", "Height", "ICUType"):
            if name.strip().casefold() == descriptor.casefold():
                return "descriptor", descriptor
    return None


def _reference_id(reference: Any) -> str | None:
    text = getattr(reference, "reference", None) or ""
    return text.split("/")[-1] if text else None


def _number(source: Any) -> tuple[float, str] | None:
    quantity = getattr(source, "valueQuantity", None)
    if quantity is not None and quantity.value is not None:
        return float(quantity.value), (quantity.unit or quantity.code or "")
    for attribute in ("valueInteger", "valueDecimal"):
        value = getattr(source, attribute, None)
        if value is not None:
            return float(value), ""
    boolean = getattr(source, "valueBoolean", None)
    if boolean is not None:
        return float(bool(boolean)), ""
    return None


def _effective(observation: Any) -> datetime | None:
    for attribute in ("effectiveDateTime", "effectiveInstant"):
        value = getattr(observation, attribute, None)
        if value is not None:
            return _aware(value)
    period = getattr(observation, "effectivePeriod", None)
    if period is not None and period.start is not None:
        return _aware(period.start)
    return None


def read_fhir_bundle(path: str | Path) -> PatientCohort:
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BUNDLE_BYTES:
            raise UnreadableFileError(f"{path.name} is larger than {MAX_BUNDLE_BYTES >> 20} MB")
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise UnreadableFileError(f"{path.name} is not a readable FHIR JSON file: {_first_error(exc)}") from None
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise UnreadableFileError(f"{path.name} is not a FHIR Bundle (resourceType must be \"Bundle\")")
    entries = data.get("entry") or []
    if not isinstance(entries, list):
        raise UnreadableFileError(f"{path.name}: Bundle.entry is not a list")
    get_class = _models()
    builder = CohortBuilder()
    patients: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    starts: dict[str, datetime] = {}
    observations: list[tuple[int, Any]] = []
    skipped = 0
    for number, entry in enumerate(entries, start=1):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        if kind not in ("Observation", "Patient", "Encounter"):
            if not isinstance(resource, dict) or not isinstance(kind, str):
                builder.bad(number, "entry has no resource", "entry")
            continue
        try:
            model = get_class(kind).model_validate(resource)
        except Exception as exc:  # noqa: BLE001 - pydantic/fhir validation errors of any kind
            builder.bad(number, f"invalid {kind}: {_first_error(exc)}", "entry")
            continue
        if kind == "Patient":
            identifier = next((i.value for i in (model.identifier or []) if i.value), None)
            patient_id = (identifier or model.id or f"patient-{number}").strip()[:MAX_ID_LENGTH]
            patients[patient_id] = model
            for alias in (model.id, entry.get("fullUrl")):
                if alias:
                    aliases[str(alias).split("/")[-1]] = patient_id
        elif kind == "Encounter":
            subject = _reference_id(model.subject)
            if subject and model.period is not None and model.period.start is not None:
                starts.setdefault(subject, _aware(model.period.start))
        else:
            observations.append((number, model))

    def patient_of(reference: str | None) -> str | None:
        return aliases.get(reference, reference) if reference else None

    encounter_start = {patient_of(k): v for k, v in starts.items()}
    rows: list[tuple[int, str, datetime, str, str, float, str]] = []
    for number, observation in observations:
        patient_id = patient_of(_reference_id(observation.subject))
        if not patient_id or len(patient_id) > MAX_ID_LENGTH:
            builder.bad(number, "Observation has no subject Patient reference", "entry")
            continue
        moment = _effective(observation)
        parts = [(observation.code, observation)] + [(c.code, c) for c in (observation.component or [])]
        for code, source in parts:
            target = _variable_of(code)
            if target is None:
                if source is observation and not observation.component:
                    skipped += 1
                continue
            number_unit = _number(source)
            if number_unit is None:
                builder.bad(number, f"{target[1]} has no numeric value", "entry")
                continue
            if moment is None:
                builder.bad(number, f"{target[1]} has no effective time", "entry")
                continue
            rows.append((number, patient_id, moment, target[0], target[1], *number_unit))

    first_seen: dict[str, datetime] = {}
    for _, patient_id, moment, *_ in rows:
        if patient_id not in first_seen or moment < first_seen[patient_id]:
            first_seen[patient_id] = moment
    zero = {**first_seen, **{k: v for k, v in encounter_start.items() if k}}
    for patient_id in patients:
        builder.patient_index(patient_id)
    weight_seen: set[str] = set()
    for number, patient_id, moment, kind, name, raw, unit in sorted(rows, key=lambda r: (r[1], r[2], r[0])):
        index = builder.patient_index(patient_id)
        if not math.isfinite(raw):
            builder.bad(number, f"{name} value is not a finite number", "entry")
            continue
        spec = DESCRIPTOR_BY_NAME[name] if kind == "descriptor" else BY_NAME[name]
        conversion = unit_conversion(spec, unit)
        if conversion is None:
            builder.bad(number, f"unit {unit[:20]!r} is not a unit for {name} (expected {spec.unit})", "entry")
            continue
        value = raw * conversion[0] + conversion[1]
        minutes = int((moment - zero[patient_id]).total_seconds() // 60)
        if minutes < 0:
            builder.bad(number, f"{name} is dated before ICU admission", "entry")
            continue
        if minutes > MAX_MINUTES:
            builder.bad(number, f"{name} is dated more than a year after admission", "entry")
            continue
        if kind == "descriptor":
            builder.set_descriptor(patient_id, name, value)
            continue
        if name == "Weight" and patient_id not in weight_seen:
            weight_seen.add(patient_id)
            if minutes == 0:
                builder.set_descriptor(patient_id, "Weight", value)
        builder.add(index, minutes, VARIABLE_INDEX[name], value)
    for patient_id, model in patients.items():
        if model.gender in ("male", "female"):
            builder.set_descriptor(patient_id, "Gender", 1.0 if model.gender == "male" else 0.0)
        if model.birthDate is not None and not builder.has_descriptor(patient_id, "Age") and patient_id in zero:
            years = (zero[patient_id] - _aware(model.birthDate)).days / 365.25
            builder.set_descriptor(patient_id, "Age", float(int(years)))
    cohort = builder.build(str(path))
    if skipped:
        cohort.notes.append(f"{skipped} Observations with codes the risk model does not use were skipped")
    return cohort


def bundle_from_record(record: PatientRecord, admission: datetime | None = None) -> dict[str, Any]:
    """A FHIR R4 collection Bundle (as JSON-ready dict) with the stay's Patient, an Encounter
    for the ICU admission, and one Observation per kept or excluded observation."""
    admission = admission or datetime(2012, 1, 1, tzinfo=timezone.utc)
    pid = record.patient_id
    patient: dict[str, Any] = {"resourceType": "Patient", "id": pid, "identifier": [{"value": pid}]}
    gender = record.descriptors.get("Gender")
    if gender in (0.0, 1.0):
        patient["gender"] = "male" if gender == 1.0 else "female"
    entries = [
        {"fullUrl": f"Patient/{pid}", "resource": patient},
        {"resource": {
            "resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": f"Patient/{pid}"}, "period": {"start": admission.isoformat()},
        }},
    ]

    def observation(name: str, code: dict[str, Any], minutes: int, value: float, unit: str) -> dict[str, Any]:
        return {"resource": {
            "resourceType": "Observation", "status": "final", "code": code,
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": (admission + timedelta(minutes=int(minutes))).isoformat(),
            "valueQuantity": {"value": float(value), "unit": unit, "system": "http://unitsofmeasure.org", "code": _UCUM.get(unit, unit)},
        }}

    for name in ("Age", "Height", "ICUType"):
        value = record.descriptors.get(name, math.nan)
        if not math.isnan(value):
            spec = DESCRIPTOR_BY_NAME[name]
            codings = ([{"system": LOINC, "code": spec.loinc}] if spec.loinc else []) + [{"system": LOCAL_SYSTEM, "code": name}]
            unit = {"Age": "a", "Height": "cm", "ICUType": "1"}[name]
            entries.append(observation(name, {"coding": codings, "text": name}, 0, value, unit))
    for minutes, variable, value in zip(record.time.tolist(), record.variable.tolist(), record.value.tolist()):
        spec = BY_NAME[VARIABLE_NAMES[variable]]
        codings = ([{"system": LOINC, "code": spec.loinc, "display": spec.description}] if spec.loinc else [])
        codings.append({"system": LOCAL_SYSTEM, "code": spec.name})
        entries.append(observation(spec.name, {"coding": codings, "text": spec.name}, minutes, value, spec.unit))
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}
