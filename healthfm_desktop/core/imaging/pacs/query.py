"""C-FIND at study and series level (Study Root), with DICOM wildcard and date-range matching."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind
from pynetdicom.status import code_to_category

from healthfm_desktop.core.imaging.pacs.association import Timeouts, no_response_error, open_association
from healthfm_desktop.core.imaging.pacs.contexts import query_contexts
from healthfm_desktop.core.imaging.pacs.errors import OperationFailedError
from healthfm_desktop.core.imaging.pacs.peers import DicomPeer
from healthfm_desktop.core.errors import UserFacingError

_DATE_RANGE = re.compile(r"^(\d{8})?(-)?(\d{8})?$")


class InvalidQueryError(UserFacingError):
    """A query field the peer could not match (bad date, too long a value...)."""


def parse_date_range(text: str | None) -> str:
    """``YYYYMMDD``, ``YYYYMMDD-YYYYMMDD``, ``YYYYMMDD-`` or ``-YYYYMMDD`` as a DICOM DA range."""
    text = (text or "").strip()
    if not text:
        return ""
    match = _DATE_RANGE.match(text)
    if not match or not (match.group(1) or match.group(3)) or (match.group(1) and match.group(3) and not match.group(2)):
        raise InvalidQueryError(f"study date {text!r} is not YYYYMMDD or YYYYMMDD-YYYYMMDD")
    dates = []
    for value in (match.group(1), match.group(3)):
        if value:
            try:
                dates.append(dt.datetime.strptime(value, "%Y%m%d").date())
            except ValueError:
                raise InvalidQueryError(f"study date {value!r} is not a real date") from None
    if len(dates) == 2 and dates[0] > dates[1]:
        raise InvalidQueryError(f"study date range {text!r} ends before it starts")
    return text


def _checked(value: str | None, what: str, limit: int) -> str:
    value = (value or "").strip()
    if "\\" in value:
        raise InvalidQueryError(f"{what} must not contain a backslash")
    if len(value) > limit:
        raise InvalidQueryError(f"{what} is longer than {limit} characters")
    return value


@dataclass
class StudyQuery:
    """Empty fields match anything. Patient id/name take DICOM wildcards (* and ?)."""

    patient_id: str = ""
    patient_name: str = ""
    modality: str = ""
    study_date: str = ""
    accession_number: str = ""
    study_uid: str = ""

    def identifier(self) -> Dataset:
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.StudyInstanceUID = _checked(self.study_uid, "study UID", 64)
        ds.PatientID = _checked(self.patient_id, "patient id", 64)
        ds.PatientName = _checked(self.patient_name, "patient name", 64 * 5)
        ds.StudyDate = parse_date_range(self.study_date)
        ds.StudyTime = ""
        ds.AccessionNumber = _checked(self.accession_number, "accession number", 16)
        ds.ModalitiesInStudy = _checked(self.modality, "modality", 16).upper()
        ds.StudyDescription = ""
        ds.PatientBirthDate = ""
        ds.NumberOfStudyRelatedSeries = None
        ds.NumberOfStudyRelatedInstances = None
        ds.SOPClassesInStudy = ""
        return ds


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


def _count(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _multi(ds: Dataset, keyword: str) -> list[str]:
    value = ds.get(keyword)
    if value in (None, ""):
        return []
    values = value if isinstance(value, (list, tuple)) or hasattr(value, "__iter__") and not isinstance(value, str) else [value]
    return [str(v).strip() for v in values if str(v).strip()]


@dataclass
class StudyMatch:
    study_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    modalities: list[str]
    description: str
    series: int | None
    instances: int | None
    accession_number: str = ""
    study_time: str = ""
    sop_classes: list[str] = field(default_factory=list)

    @classmethod
    def from_identifier(cls, ds: Dataset) -> "StudyMatch":
        return cls(
            study_uid=_text(ds, "StudyInstanceUID"),
            patient_id=_text(ds, "PatientID"),
            patient_name=_text(ds, "PatientName"),
            study_date=_text(ds, "StudyDate"),
            modalities=_multi(ds, "ModalitiesInStudy"),
            description=_text(ds, "StudyDescription"),
            series=_count(ds, "NumberOfStudyRelatedSeries"),
            instances=_count(ds, "NumberOfStudyRelatedInstances"),
            accession_number=_text(ds, "AccessionNumber"),
            study_time=_text(ds, "StudyTime"),
            sop_classes=_multi(ds, "SOPClassesInStudy"),
        )

    def to_json(self) -> dict:
        """The CLI contract's fields (CLI.md `pacs find`)."""
        return {
            "study_uid": self.study_uid,
            "patient_id": self.patient_id,
            "patient_name": self.patient_name,
            "study_date": self.study_date,
            "modalities": self.modalities,
            "description": self.description,
            "series": self.series,
            "instances": self.instances,
        }


@dataclass
class SeriesMatch:
    study_uid: str
    series_uid: str
    modality: str
    description: str
    number: int | None
    instances: int | None
    sop_classes: list[str] = field(default_factory=list)

    @classmethod
    def from_identifier(cls, ds: Dataset, study_uid: str) -> "SeriesMatch":
        return cls(
            study_uid=_text(ds, "StudyInstanceUID") or study_uid,
            series_uid=_text(ds, "SeriesInstanceUID"),
            modality=_text(ds, "Modality"),
            description=_text(ds, "SeriesDescription"),
            number=_count(ds, "SeriesNumber"),
            instances=_count(ds, "NumberOfSeriesRelatedInstances"),
        )


@dataclass(frozen=True)
class InstanceMatch:
    sop_instance_uid: str
    sop_class_uid: str
    number: int | None


def _run_find(peer: DicomPeer, calling_aet: str, identifier: Dataset, timeouts: Timeouts | None) -> Iterator[Dataset]:
    timeouts = timeouts or Timeouts()
    with open_association(peer, calling_aet, query_contexts(), timeouts=timeouts) as assoc:
        started = time.monotonic()
        for status, answer in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind):
            if "Status" not in status:
                raise no_response_error(assoc, peer, calling_aet, started, timeouts, "the query")
            category = code_to_category(status.Status)
            if category == "Pending":
                if answer is not None:
                    yield answer
            elif category in ("Success", "Warning"):
                return
            elif category == "Cancel":
                return
            else:
                comment = _text(status, "ErrorComment")
                raise OperationFailedError(
                    f"{peer.label()} refused the query (status 0x{status.Status:04X}"
                    + (f": {comment}" if comment else "") + ")"
                )


def find_studies(
    peer: DicomPeer, calling_aet: str, query: StudyQuery, timeouts: Timeouts | None = None
) -> list[StudyMatch]:
    """Study-level C-FIND. A modality filter is also applied here, for peers that ignore it."""
    matches = [StudyMatch.from_identifier(ds) for ds in _run_find(peer, calling_aet, query.identifier(), timeouts)]
    wanted = query.modality.strip().upper()
    if wanted:
        matches = [m for m in matches if not m.modalities or wanted in m.modalities]
    return sorted(matches, key=lambda m: (m.study_date, m.study_time, m.study_uid), reverse=True)


def find_series(
    peer: DicomPeer, calling_aet: str, study_uid: str, timeouts: Timeouts | None = None
) -> list[SeriesMatch]:
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.StudyInstanceUID = _checked(study_uid, "study UID", 64)
    if not ds.StudyInstanceUID:
        raise InvalidQueryError("a series query needs the study UID")
    ds.SeriesInstanceUID = ""
    ds.Modality = ""
    ds.SeriesDescription = ""
    ds.SeriesNumber = None
    ds.NumberOfSeriesRelatedInstances = None
    matches = [SeriesMatch.from_identifier(answer, study_uid) for answer in _run_find(peer, calling_aet, ds, timeouts)]
    return sorted(matches, key=lambda m: (m.number if m.number is not None else 1 << 30, m.series_uid))


def find_sop_classes(
    peer: DicomPeer, calling_aet: str, study_uid: str, series_uid: str = "", timeouts: Timeouts | None = None,
    image_level: bool = False,
) -> list[str]:
    """The storage SOP classes of a study (or one series), to propose exactly those on C-GET.

    Study level asks for SOP Classes in Study; a peer that does not fill it in is asked at
    image level instead."""
    if not series_uid and not image_level:
        matches = find_studies(peer, calling_aet, StudyQuery(study_uid=study_uid), timeouts)
        classes = sorted({c for m in matches for c in m.sop_classes})
        if classes:
            return classes
    return sorted({m.sop_class_uid for m in find_instances(peer, calling_aet, study_uid, series_uid, timeouts)} - {""})


def find_instances(
    peer: DicomPeer, calling_aet: str, study_uid: str, series_uid: str = "", timeouts: Timeouts | None = None
) -> list[InstanceMatch]:
    """Image-level C-FIND: the instances of a study (or one series), in instance-number order."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = ""
    ds.SOPClassUID = ""
    ds.InstanceNumber = None
    matches = [InstanceMatch(_text(a, "SOPInstanceUID"), _text(a, "SOPClassUID"), _count(a, "InstanceNumber"))
               for a in _run_find(peer, calling_aet, ds, timeouts)]
    return sorted(matches, key=lambda m: (m.number if m.number is not None else 1 << 30, m.sop_instance_uid))
