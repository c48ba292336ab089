"""De-identification per DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile
(pydicom): identifying attributes removed, emptied or replaced with a dummy (Table E.1-1
actions X / Z / D), every instance UID replaced consistently through one mapping (so a study
stays a study), private tags, curves and overlay comments removed, the de-identification
recorded in the dataset. Pixel data is copied untouched: a file that declares (or, by modality,
may carry) burned-in annotation gets a warning rather than a silent pass."""

from __future__ import annotations

import hashlib
import io
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, generate_uid

from healthfm_desktop.core.errors import UnreadableFileError, UserFacingError
from healthfm_desktop.core.imaging.sources import SourceRef

# Table E.1-1, Basic Profile column, for the attributes real files carry. Z = empty (or a
# dummy consistent with the VR), D = dummy, X = remove. UIDs are handled by the UI rule below.
_Z = {
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
    "ReferringPhysicianName", "StudyID", "StudyDate", "StudyTime", "ContentDate", "ContentTime",
    "ContentCreatorName", "VerifyingObserverIdentificationCodeSequence", "ContrastBolusAgent",
    "FillerOrderNumberImagingServiceRequest", "PlacerOrderNumberImagingServiceRequest",
}
_D = {
    "VerifyingObserverName": "ANONYMOUS", "PersonName": "ANONYMOUS", "VerifyingOrganization": "ANONYMOUS",
    "ObserverContextSequence": None, "StructureSetLabel": "ANONYMOUS", "RTPlanLabel": "ANONYMOUS",
}
_X = {
    "InstitutionName", "InstitutionAddress", "InstitutionCodeSequence", "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers", "ReferringPhysicianIdentificationSequence", "StationName",
    "StudyDescription", "SeriesDescription", "InstitutionalDepartmentName", "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence", "PerformingPhysicianName",
    "PerformingPhysicianIdentificationSequence", "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence", "OperatorsName", "OperatorIdentificationSequence",
    "AdmittingDiagnosesDescription", "AdmittingDiagnosesCodeSequence", "ReferencedStudySequence",
    "ReferencedPerformedProcedureStepSequence", "ReferencedPatientSequence", "DerivationDescription",
    "SeriesDate", "AcquisitionDate", "SeriesTime", "AcquisitionTime", "AcquisitionDateTime",
    "InstanceCreationDate", "InstanceCreationTime", "OverlayDate", "OverlayTime", "CurveDate", "CurveTime",
    "IssuerOfPatientID", "PatientBirthTime", "OtherPatientIDs", "OtherPatientNames", "OtherPatientIDsSequence",
    "PatientBirthName", "PatientAge", "PatientSize", "PatientWeight", "PatientAddress",
    "PatientMotherBirthName", "MedicalRecordLocator", "CountryOfResidence", "RegionOfResidence",
    "PatientTelephoneNumbers", "EthnicGroup", "Occupation", "SmokingStatus", "AdditionalPatientHistory",
    "PregnancyStatus", "LastMenstrualDate", "PatientReligiousPreference", "PatientComments", "MedicalAlerts",
    "Allergies", "MilitaryRank", "BranchOfService", "PatientInsurancePlanCodeSequence",
    "PatientPrimaryLanguageCodeSequence", "PatientSexNeutered", "ResponsiblePerson", "ResponsibleOrganization",
    "DeviceSerialNumber", "ProtocolName", "AcquisitionDeviceProcessingDescription", "AcquisitionComments",
    "DetectorID", "PlateID", "GeneratorID", "CassetteID", "GantryID", "AcquisitionProtocolDescription",
    "ContributionDescription", "ImageComments", "FrameComments", "ModifyingDeviceID", "RequestingPhysician",
    "RequestingService", "RequestedProcedureDescription", "RequestedProcedureCodeSequence", "StudyComments",
    "StudyIDIssuer", "AdmissionID", "CurrentPatientLocation", "PatientInstitutionResidence", "PatientState",
    "VisitComments", "ServiceEpisodeID", "ServiceEpisodeDescription", "ReferencedPatientAliasSequence",
    "PerformedStationAETitle", "PerformedStationName", "PerformedLocation", "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime", "PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime",
    "PerformedProcedureStepID", "PerformedProcedureStepDescription", "RequestAttributesSequence",
    "CommentsOnThePerformedProcedureStep", "RequestedProcedureID", "PatientTransportArrangements",
    "RequestedProcedureLocation", "NamesOfIntendedRecipientsOfResults", "RequestedProcedureComments",
    "ReasonForTheImagingServiceRequest", "ImagingServiceRequestComments",
    "ConfidentialityConstraintOnPatientDataDescription", "ContentSequence", "ScheduledPerformingPhysicianName",
    "ScheduledStationAETitle", "ScheduledStationName", "ScheduledProcedureStepLocation",
    "ScheduledProcedureStepDescription", "ScheduledProcedureStepID",
    "ScheduledPerformingPhysicianIdentificationSequence", "OriginalAttributesSequence", "DigitalSignatureUID",
    "DigitalSignaturesSequence", "TimezoneOffsetFromUTC", "IdentifyingComments", "DateOfSecondaryCapture",
    "TimeOfSecondaryCapture", "TextValue", "TextString", "ReferencedImageSequence",
    "SourceImageSequence", "InterpretationAuthor", "InterpretationDiagnosisDescription",
    "InterpretationIDIssuer", "InterpretationRecorder", "InterpretationText", "InterpretationTranscriber",
    "ResultsIDIssuer", "DistributionName", "DistributionAddress", "CustodialOrganizationSequence",
    "InstitutionDepartmentTypeCodeSequence", "ScheduledPatientInstitutionResidence", "ReviewerName",
    "DeviceDescription", "LotIdentifier", "PerformedProcedureStepStartDateTime", "ProcedureStepLabel",
    "PatientState", "ClinicalTrialSponsorName", "ClinicalTrialProtocolName",
}
# UIDs that identify a thing (not a class or syntax) are replaced; these stay.
_KEEP_UIDS = {
    "SOPClassUID", "MediaStorageSOPClassUID", "TransferSyntaxUID", "ReferencedSOPClassUID",
    "ImplementationClassUID", "CodingSchemeUID", "ContextGroupExtensionCreatorUID",
    "ReferencedSOPClassUIDInFile", "RelatedGeneralSOPClassUID", "OriginalSpecializedSOPClassUID",
    "PrivateInformationCreatorUID", "MappingResourceUID", "ContextUID", "TemplateExtensionCreatorUID",
}
_DATE_VRS = {"DA", "DT", "TM"}
_BURNED_IN_MODALITIES = {"US", "SC", "OT", "XC", "ES", "GM", "SM", "DOC"}
PROFILE_NAME = "PS3.15 E.1 Basic Application Confidentiality Profile"


@dataclass
class AnonymisationReport:
    """Files written, warnings (burned-in annotation...), inputs refused ``(path, reason)``."""

    written: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)


class Anonymiser:
    """One de-identification session: the same original UID (or patient) always maps to the
    same replacement within the session, and to an unrelated one in another session."""

    def __init__(self, salt: bytes | None = None):
        self._salt = salt if salt is not None else secrets.token_bytes(16)
        self.uid_map: dict[str, str] = {}

    def new_uid(self, old: str) -> str:
        if old not in self.uid_map:
            self.uid_map[old] = generate_uid(entropy_srcs=[self._salt.hex(), old])
        return self.uid_map[old]

    def pseudonym(self, value: str) -> str:
        return hashlib.sha256(self._salt + value.encode("utf-8", "replace")).hexdigest()[:10].upper()

    def _is_replaceable_uid(self, keyword: str, value: str) -> bool:
        if keyword in _KEEP_UIDS or not value:
            return False
        # registered DICOM UIDs (SOP classes, syntaxes, coding schemes) are not identifying
        return not (value.startswith("1.2.840.10008.") and UID(value).is_valid)

    def _clean(self, ds: Dataset, top_level: bool) -> None:
        for element in list(ds):
            tag = element.tag
            keyword = element.keyword
            if tag.is_private:
                del ds[tag]
                continue
            group = tag.group
            if 0x5000 <= group <= 0x50FF and group % 2 == 0:  # curves (retired)
                del ds[tag]
                continue
            if 0x6000 <= group <= 0x60FF and group % 2 == 0 and tag.element in (0x4000, 0x0022):
                del ds[tag]  # overlay comments / description (free text)
                continue
            if keyword in _X:
                del ds[tag]
                continue
            if element.VR == "SQ":
                for item in element.value or []:
                    self._clean(item, top_level=False)
                continue
            if keyword in _Z:
                element.value = self._dummy(keyword, element) if top_level else ""
                continue
            if keyword in _D:
                if _D[keyword] is None:
                    del ds[tag]
                else:
                    element.value = _D[keyword]
                continue
            if element.VR == "UI":
                values = element.value if isinstance(element.value, (list, tuple)) or type(element.value).__name__ == "MultiValue" else [element.value]
                replaced = [self.new_uid(str(v)) if self._is_replaceable_uid(keyword, str(v)) else str(v) for v in values]
                element.value = replaced if len(replaced) > 1 else (replaced[0] if replaced else "")
                continue
            if element.VR in _DATE_VRS:
                del ds[tag]  # dates and times not kept as Z above identify the visit
                continue
            if element.VR == "PN":
                del ds[tag]  # any other person's name
                continue

    def _dummy(self, keyword: str, element) -> str:
        original = "" if element.value is None else str(element.value)
        if keyword == "PatientName":
            return f"ANONYMOUS^{self.pseudonym(original)}" if original else "ANONYMOUS"
        if keyword == "PatientID":
            return f"ANON-{self.pseudonym(original)}" if original else ""
        return ""

    def anonymise_dataset(self, ds: Dataset) -> list[str]:
        """De-identify ``ds`` in place (pixels untouched); return warnings for the user."""
        warnings: list[str] = []
        burned = str(ds.get("BurnedInAnnotation", "") or "").upper()
        modality = str(ds.get("Modality", "") or "").upper()
        if burned == "YES":
            warnings.append(
                "declares Burned In Annotation = YES: identifying text may be burned into the pixels, "
                "which are not altered; review or mask the image before sharing"
            )
        elif burned != "NO" and modality in _BURNED_IN_MODALITIES and "PixelData" in ds:
            warnings.append(
                f"{modality} image without Burned In Annotation = NO: it may carry burned-in text; "
                "pixels are not altered, review before sharing"
            )
        self._clean(ds, top_level=True)
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            for keyword in ("MediaStorageSOPInstanceUID",):
                if keyword in meta and meta[keyword].value:
                    meta[keyword].value = self.new_uid(str(meta[keyword].value))
            for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle", "ReceivingApplicationEntityTitle"):
                if keyword in meta:
                    del meta[keyword]
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = PROFILE_NAME
        code = Dataset()
        code.CodeValue = "113100"
        code.CodingSchemeDesignator = "DCM"
        code.CodeMeaning = "Basic Application Confidentiality Profile"
        ds.DeidentificationMethodCodeSequence = Sequence([code])
        ds.LongitudinalTemporalInformationModified = "REMOVED"
        if burned == "YES":
            ds.BurnedInAnnotation = "YES"  # kept: the receiver must know
        return warnings


def _read_for_anonymisation(source: SourceRef) -> Dataset:
    from healthfm_desktop.core.imaging.decoding import guess_missing_transfer_syntax, transfer_syntax_of
    from healthfm_desktop.core.imaging.scanning import read_header

    header = read_header(source)  # same acceptance rules as the viewer
    forced, offset = header.forced, header.byte_offset
    raw = source.read_bytes()
    try:
        ds = dcmread(io.BytesIO(raw[offset:]), force=forced)
    except Exception as exc:  # corrupt input: many exception types
        raise UnreadableFileError(f"cannot read the DICOM dataset ({type(exc).__name__}: {exc})") from exc
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    if transfer_syntax_of(ds) is None:
        ds.file_meta.TransferSyntaxUID = guess_missing_transfer_syntax(ds)
    if "SOPClassUID" in ds and "MediaStorageSOPClassUID" not in ds.file_meta:
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds and "MediaStorageSOPInstanceUID" not in ds.file_meta:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def anonymise_source(source: SourceRef, out_dir: Path, anonymiser: Anonymiser) -> tuple[Path, list[str]]:
    """De-identify one object into ``out_dir/<new SOP Instance UID>.dcm`` (written atomically)."""
    from healthfm_desktop.core.storage.atomic import atomic_write_bytes

    ds = _read_for_anonymisation(source)
    warnings = anonymiser.anonymise_dataset(ds)
    if "SOPInstanceUID" not in ds:
        ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    try:
        ds.save_as(buffer, enforce_file_format=True)
    except Exception as exc:  # a dataset pydicom cannot re-encode
        raise UnreadableFileError(f"cannot write the de-identified file ({type(exc).__name__}: {exc})") from exc
    target = Path(out_dir) / f"{ds.SOPInstanceUID}.dcm"
    atomic_write_bytes(target, buffer.getvalue())
    return target, warnings


def anonymise_paths(
    paths: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    anonymiser: Anonymiser | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> AnonymisationReport:
    """De-identify every DICOM object under files, folders, zips and DICOMDIRs into ``out_dir``."""
    from healthfm_desktop.core.imaging.scanning import expand_paths

    anonymiser = anonymiser or Anonymiser()
    report = AnonymisationReport()
    sources, rejected, _ = expand_paths(paths)
    report.rejected.extend(rejected)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for done, source in enumerate(sources, start=1):
        try:
            target, warnings = anonymise_source(source, out, anonymiser)
        except UserFacingError as exc:
            report.rejected.append((str(source), str(exc)))
        except Exception as exc:  # one bad file never stops the batch
            report.rejected.append((str(source), f"{type(exc).__name__}: {exc}"))
        else:
            report.written.append(target)
            report.warnings.extend(f"{source}: {w}" for w in warnings)
        if progress is not None:
            progress(done, len(sources))
    return report


def anonymise_series(series, folder: str | os.PathLike, anonymiser: Anonymiser | None = None) -> AnonymisationReport:
    """De-identify every object of a ``Series`` into ``folder`` (one session: consistent UIDs)."""
    anonymiser = anonymiser or Anonymiser()
    report = AnonymisationReport()
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for instance in series.instances:
        try:
            target, warnings = anonymise_source(instance.source, out, anonymiser)
        except UserFacingError as exc:
            report.rejected.append((str(instance.source), str(exc)))
        else:
            report.written.append(target)
            report.warnings.extend(warnings if not report.warnings or warnings[0] not in report.warnings else [])
    return report
