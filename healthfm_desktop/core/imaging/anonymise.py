"""De-identification per DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile.

Every row of Table E.1-1 (Basic Profile column) is applied with its action code, at the top
level and inside every sequence item: X remove, Z empty (or a dummy), D dummy value of the VR,
U new UID (the same original UID always gives the same new UID within one ``Anonymiser``
session, so a study stays a study), K keep, C clean (treated as D), and the conformance-
dependent X/Z, X/D, X/Z/D, Z/D and X/Z/U* decided by the attribute's type (1, 1C, 2, 2C or 3)
in the IOD of the object's SOP class at that sequence path. Private attributes are removed
(no Retain Safe Private option), as are curves and overlay planes whose data is removed.
The table is built at run time from the installed packages: the rows (edition 2026c of
Table E.1-1) from dicom-anonymizer's lists of tags per action code, the attribute types per IOD
and the SOP Class -> IOD map from highdicom's standard maps; the built table is cached in the
user's cache folder, keyed by the packages' versions.

Beyond the table, three safety nets: any other person name is emptied, free text inside a
sequence whose action is D (Content Sequence: Text Value...) is replaced by a dummy, and any other
UID that is not a registered DICOM UID (1.2.840.10008.*) or a class / syntax UID is replaced like
a U row.

Pixel data is copied untouched. An object that declares Burned In Annotation = YES, or whose
modality / SOP class is known to carry burned-in text (ultrasound, secondary capture, ...)
without declaring NO, is flagged: ``burned_in_risk`` tells the viewer to ask before exporting,
and the output records it (warnings, and a second De-identification Method value)."""

from __future__ import annotations

import datetime
import functools
import hashlib
import io
import json
import os
import re
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom import dcmread
from pydicom.datadict import dictionary_description, keyword_for_tag
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import UID, generate_uid

from healthfm_desktop.core.errors import UnreadableFileError, UserFacingError
from healthfm_desktop.core.imaging.sources import SourceRef
from healthfm_desktop.core.paths import user_cache_dir

PROFILE_NAME = "PS3.15 E.1 Basic Application Confidentiality Profile"
PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")
BURNED_IN_NOTE = "Pixels not cleaned: burned-in text possible"  # <= 64 chars (LO)
MODIFIED_DATES_NAME = "Retain Longitudinal Temporal Information Modified Dates Option"[:64]
MODIFIED_DATES_CODE = ("113107", "DCM", "Retain Longitudinal Temporal Information Modified Dates Option")
DESCRIPTIONS_NOTE = "Descriptions kept as written (not cleaned)"
#: what "keep descriptions" keeps (top level): the words a user finds a series by
DESCRIPTION_KEYWORDS = ("StudyDescription", "SeriesDescription", "ProtocolName",
                        "PerformedProcedureStepDescription", "RequestedProcedureDescription")
DESCRIPTIONS_WARNING = ("study and series descriptions were kept as written: check them for names, "
                        "IDs or dates before sharing")


@dataclass(frozen=True)
class DeidOptions:
    """PS3.15 options on top of the basic profile. ``shift_dates``: the Retain Longitudinal
    Temporal Information with Modified Dates Option: every date (not the birth date) moves back
    by one offset per session, so intervals survive; times are kept. ``keep_descriptions``:
    the descriptions of DESCRIPTION_KEYWORDS are kept as written (the user is warned)."""

    shift_dates: bool = False
    keep_descriptions: bool = False


def _shift_date_text(value: str, days: int) -> str:
    """A DA (YYYYMMDD) or the date part of a DT moved back ``days``; "" when unparseable."""
    value = value.strip()
    try:
        day = datetime.datetime.strptime(value[:8], "%Y%m%d").date()
    except ValueError:
        return ""
    return (day - datetime.timedelta(days=days)).strftime("%Y%m%d") + value[8:]


def readable_folder(ds: Dataset) -> Path:
    """Patient / Study / Series folder names for a de-identified object, from its de-identified
    values only (so no name, ID or original date reaches the file system)."""

    def clean(text: str, fallback: str) -> str:
        text = re.sub(r"[^A-Za-z0-9 ._+-]+", "_", str(text or "")).strip(" ._")[:60]
        return text or fallback

    patient = clean(ds.get("PatientID", "") or ds.get("PatientName", ""), "patient")
    study_date = str(ds.get("StudyDate", "") or "")
    study_uid = str(ds.get("StudyInstanceUID", "") or "")
    study = clean(" ".join(p for p in (f"{study_date[:4]}-{study_date[4:6]}-{study_date[6:8]}" if len(study_date) == 8 else "",
                                       str(ds.get("StudyDescription", "") or "") or "Study") if p), "Study")
    series_number = str(ds.get("SeriesNumber", "") or "").strip()
    series = clean(" ".join(p for p in (f"{int(series_number):03d}" if series_number.isdigit() else "",
                                        str(ds.get("Modality", "") or ""), str(ds.get("SeriesDescription", "") or ""))
                            if p), "Series")
    # two studies (series) with the same readable name stay apart by their new UID's tail
    return Path(patient) / f"{study} {study_uid[-6:]}".strip() / f"{series} {str(ds.get('SeriesInstanceUID', ''))[-6:]}".strip()

# Class-like UIDs that identify a kind of thing, not a patient's thing: never replaced.
_KEEP_UIDS = {
    "SOPClassUID", "MediaStorageSOPClassUID", "TransferSyntaxUID", "ReferencedSOPClassUID",
    "ImplementationClassUID", "CodingSchemeUID", "ContextGroupExtensionCreatorUID",
    "ReferencedSOPClassUIDInFile", "RelatedGeneralSOPClassUID", "OriginalSpecializedSOPClassUID",
    "PrivateInformationCreatorUID", "MappingResourceUID", "ContextUID", "TemplateExtensionCreatorUID",
    "ReferencedTransferSyntaxUIDInFile", "SOPClassesInStudy", "AffectedSOPClassUID",
    "RequestedSOPClassUID", "SOPClassesSupported", "CodingSchemeRegistry",
}
# Modalities whose images usually carry burned-in text (ultrasound calipers and labels, video
# endoscopy, photographs, scanned documents, secondary captures saved as OT).
_CLUSTER_CHUNK = 16  # objects per cluster task of `dicom anonymize --scheduler`
_BURNED_IN_MODALITIES = {"US", "OT", "XC", "ES", "GM", "SM", "DOC", "IVUS", "OP", "SC"}
# Secondary Capture (all its variants), Encapsulated PDF/CDA, VL photographic / endoscopic.
_BURNED_IN_SOP_PREFIXES = ("1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.104",
                           "1.2.840.10008.5.1.4.1.1.77.1.1", "1.2.840.10008.5.1.4.1.1.77.1.4")
_FREE_TEXT_VRS = {"UT", "LT", "ST", "UC"}  # narrative text (codes and labels are SH / LO / CS)
_TEXT_VRS = {"AE", "CS", "LO", "LT", "SH", "ST", "UC", "UR", "UT", "PN"}
_BINARY_VRS = {"OB", "OW", "OD", "OF", "OL", "OV", "UN"}
_NUMERIC_VRS = {"US", "SS", "UL", "SL", "FL", "FD", "SV", "UV", "AT"}
_DUMMIES = {"DA": "19000101", "DT": "19000101000000", "TM": "000000", "AS": "000Y", "IS": "0", "DS": "0"}
_TYPE_STRENGTH = {"1": 0, "1C": 1, "2": 2, "2C": 3, "3": 4}
_SIMPLE_ACTIONS = {"X", "Z", "D", "U", "K", "C"}


# dicom-anonymizer's list of tags for each action code of Table E.1-1's Basic Profile column.
_ACTION_OF_LIST = {
    "D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z/D", "X_Z_TAGS": "X/Z",
    "X_D_TAGS": "X/D", "X_Z_D_TAGS": "X/Z/D", "X_Z_U_STAR_TAGS": "X/Z/U*",
}
TABLE_EDITION = "2026c"  # the DICOM standard edition of the dicom-anonymizer lists read below
# The table's "Private Attributes" row: dicom-anonymizer applies it with a flag
# (delete_private_tags), not a list, so it is stated here.
_PRIVATE_ACTION = "X"
_CACHE_FORMAT = 1  # bump when the shape of the cached table or the rules that build it change


def _tag_text(value: int, mask: int = 0xFFFFFFFF) -> str:
    """0x00100010 -> '(0010,0010)'; a repeating group keeps its x: '(60xx,3000)'."""
    digits = "".join("x" if not (mask >> shift) & 0xF else f"{(value >> shift) & 0xF:x}"
                     for shift in range(28, -4, -4))
    return f"({digits[:4]},{digits[4:]})"


def _name_of(value: int, mask: int) -> str:
    try:
        return dictionary_description(value)
    except KeyError:  # newer than pydicom's dictionary, or a whole repeating group
        return _tag_text(value, mask)


def _basic_profile_rows() -> list[dict]:
    """Table E.1-1's Basic Profile rows from the installed dicom-anonymizer: one dict per row
    with the tag ``value`` and ``mask`` (a repeating group such as (60xx,3000) masks its x
    digits), pydicom ``keyword`` (empty when unknown), ``name`` and ``action``."""
    from dicomanonymizer.dicom_anonymization_databases import dicomfields_2026c as table

    rows = []
    for list_name, action in _ACTION_OF_LIST.items():
        for tag in getattr(table, list_name):
            if len(tag) == 2:
                group, element = tag
                mask = 0xFFFFFFFF
            else:  # (group, element, group mask, element mask): curves 50xx, overlays 60xx
                group, element, group_mask, element_mask = tag
                mask = (group_mask << 16) | element_mask
            value = ((group << 16) | element) & mask
            keyword = keyword_for_tag(value) if mask == 0xFFFFFFFF else ""
            rows.append({"value": value, "mask": mask, "keyword": keyword or "", "name": _name_of(value, mask),
                         "action": action})
    return rows


def _conditional_types(keywords: set[str]) -> tuple[list[str], dict[str, str], dict]:
    """IOD names, the SOP Class -> IOD map and, for each of ``keywords``, its strongest type
    (1, 1C, 2, 2C; type 3 left out) in each IOD at each sequence path, from highdicom's maps of
    PS3.3 (``{keyword: {path: {type: [iod index...]}}}``)."""
    from highdicom._standard_utils import get_iod_module_map, get_module_attribute_map, get_sop_class_iod_map

    modules = get_module_attribute_map()
    iod_modules = get_iod_module_map()
    iods = sorted(iod_modules)
    iod_index = {name: i for i, name in enumerate(iods)}
    strongest: dict[str, dict[str, dict[int, str]]] = defaultdict(lambda: defaultdict(dict))
    for iod, module_list in iod_modules.items():
        for module in module_list:
            for attribute in modules.get(module["key"], []):
                if attribute["keyword"] not in keywords:
                    continue
                known = strongest[attribute["keyword"]]["/".join(attribute["path"])]
                old = known.get(iod_index[iod])
                if old is None or _TYPE_STRENGTH[attribute["type"]] < _TYPE_STRENGTH[old]:
                    known[iod_index[iod]] = attribute["type"]
    types: dict[str, dict[str, dict[str, list[int]]]] = {}
    for keyword, paths in sorted(strongest.items()):
        for path, by_iod in sorted(paths.items()):
            grouped: dict[str, list[int]] = defaultdict(list)
            for iod, kind in sorted(by_iod.items()):
                if kind != "3":
                    grouped[kind].append(iod)
            if grouped:
                types.setdefault(keyword, {})[path] = dict(grouped)
    return iods, dict(get_sop_class_iod_map()), types


def _package_versions() -> str | None:
    """What the built table depends on, as text (the cache key); None when a package's version
    cannot be read (then the table is built every time)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return (f"format {_CACHE_FORMAT}, edition {TABLE_EDITION}, dicom-anonymizer {version('dicom-anonymizer')}, "
                f"highdicom {version('highdicom')}, pydicom {pydicom.__version__}")
    except PackageNotFoundError:
        return None


def build_table_data() -> dict:
    """The profile table as JSON-ready data, built from the installed packages (a few seconds:
    highdicom's maps of PS3.3 are large)."""
    rows = _basic_profile_rows()
    conditional = {row["keyword"] for row in rows if row["action"] not in _SIMPLE_ACTIONS and row["keyword"]}
    iods, sop_class_iod, types = _conditional_types(conditional)
    return {
        "versions": _package_versions(),
        "source": f"DICOM PS3.15 Table E.1-1 (Basic Profile column), edition {TABLE_EDITION}, from the "
                  "dicom-anonymizer package (BSD-3-Clause); attribute types per IOD and the SOP Class -> IOD "
                  "map from highdicom's standard maps of PS3.3 (MIT)",
        "rows": rows,
        "private_action": _PRIVATE_ACTION,
        "iods": iods,
        "sop_class_iod": sop_class_iod,
        "conditional_types": types,
    }


def _cache_file(versions: str) -> Path:
    digest = hashlib.sha256(versions.encode("utf-8")).hexdigest()[:16]
    return user_cache_dir() / f"ps315_basic_profile_{digest}.json"


def _cached_table_data() -> dict:
    """The built table from the user's cache folder when it was built from the installed
    package versions, else built now and cached (a cache that cannot be read or written is
    rebuilt or skipped: it only saves time)."""
    from healthfm_desktop.core.storage.atomic import atomic_write_text

    versions = _package_versions()
    if versions is None:
        return build_table_data()
    try:
        path = _cache_file(versions)
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("versions") == versions:
            return data
    except (OSError, ValueError, AttributeError):  # missing, unreadable or not our JSON
        pass
    data = build_table_data()
    try:
        atomic_write_text(_cache_file(versions), json.dumps(data, separators=(",", ":")))
    except OSError:
        pass
    return data


@dataclass(frozen=True)
class ProfileTable:
    """Table E.1-1 (Basic Profile) with the IOD attribute types its combined actions need."""

    exact: dict[int, tuple[str, str]]  # tag -> (action, name)
    repeating: list[tuple[int, int, str, str]]  # (mask, value, action, name) for 50xx / 60xx rows
    private_action: str
    iods: list[str]
    sop_class_iod: dict[str, str]
    types: dict[str, dict[str, dict[str, list[int]]]]  # keyword -> path -> type -> iod indices
    source: str = ""

    @classmethod
    def from_data(cls, data: dict) -> "ProfileTable":
        exact: dict[int, tuple[str, str]] = {}
        repeating: list[tuple[int, int, str, str]] = []
        for row in data["rows"]:
            if row["mask"] == 0xFFFFFFFF:
                exact[row["value"]] = (row["action"], row["name"])
            else:
                repeating.append((row["mask"], row["value"], row["action"], row["name"]))
        return cls(exact, repeating, data["private_action"], data["iods"], data["sop_class_iod"],
                   data["conditional_types"], data["source"])

    @classmethod
    def load(cls) -> "ProfileTable":
        """The table of the installed packages (cached on disk per package versions)."""
        return cls.from_data(_cached_table_data())

    def row_for(self, tag: int) -> tuple[str, str] | None:
        """(action, attribute name) of the table row that covers ``tag``, or None."""
        found = self.exact.get(int(tag))
        if found is not None:
            return found
        group = int(tag) >> 16
        if group % 2 == 0:  # repeating groups are even (50xx curves, 60xx overlays)
            for mask, value, action, name in self.repeating:
                if int(tag) & mask == value:
                    return action, name
        return None

    def iod_of(self, sop_class_uid: str) -> int | None:
        name = self.sop_class_iod.get(str(sop_class_uid or ""))
        if name is None:
            return None
        try:
            return self.iods.index(name)
        except ValueError:
            return None

    def attribute_type(self, keyword: str, path: tuple[str, ...], iod: int | None) -> str:
        """The attribute's type in the IOD at this sequence path: '1', '1C', '2', '2C' or '3'
        (also for an attribute the IOD does not define, or an IOD the table does not know).
        A nested path the module tables do not list (a macro inside functional groups) is
        matched by its innermost sequence."""
        by_path = self.types.get(keyword)
        if not by_path or iod is None:
            return "3"
        wanted = "/".join(path)
        candidates = [by_path[wanted]] if wanted in by_path else []
        if not candidates and path:
            candidates = [types for known, types in by_path.items()
                          if known and known.split("/")[-1] == path[-1]]
        best = "3"
        for types in candidates:
            for kind, iods in types.items():
                if iod in iods and _TYPE_STRENGTH[kind] < _TYPE_STRENGTH[best]:
                    best = kind
        return best


@functools.lru_cache(maxsize=1)
def profile_table() -> ProfileTable:
    return ProfileTable.load()


def resolve_action(action: str, attribute_type: str) -> str:
    """A combined action (X/Z, X/D, X/Z/D, Z/D, X/Z/U*) decided by the attribute's type: the
    first (most removing) option unless IOD conformance needs Z (type 2) or D / U* (type 1)."""
    if action in _SIMPLE_ACTIONS:
        return action
    options = action.split("/")
    if attribute_type in ("1", "1C"):
        for wanted in ("D", "U*", "Z"):
            if wanted in options:
                return wanted
    if attribute_type in ("2", "2C"):
        for wanted in ("Z", "D"):
            if wanted in options:
                return wanted
    return options[0]


def burned_in_risk(header) -> str | None:
    """Why this object's pixels may show identifying text, or None. ``header``: a pydicom
    Dataset (headers are enough)."""
    burned = str(header.get("BurnedInAnnotation", "") or "").strip().upper()
    if burned == "YES":
        return ("declares Burned In Annotation = YES: identifying text may be burned into the pixels, "
                "which are not altered; review or mask the image before sharing")
    if burned == "NO" or not _has_pixels(header):
        return None
    modality = str(header.get("Modality", "") or "").strip().upper()
    sop_class = str(header.get("SOPClassUID", "") or "")
    if modality in _BURNED_IN_MODALITIES:
        what = f"has modality {modality}, which usually carries burned-in text,"
    elif sop_class.startswith(_BURNED_IN_SOP_PREFIXES):
        what = "is a secondary capture / photographic image, which usually carries burned-in text,"
    else:
        return None
    return (f"{what} and does not declare Burned In Annotation = NO: it may show identifying text; "
            "pixels are not altered, review before sharing")


def _has_pixels(header) -> bool:
    # headers read with stop_before_pixels lack PixelData: Rows and Columns say there are pixels
    return any(k in header for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")) or (
        "Rows" in header and "Columns" in header)


@dataclass
class AnonymisationReport:
    """Files written, warnings (burned-in annotation...), inputs refused ``(path, reason)``."""

    written: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    burned_in: list[Path] = field(default_factory=list)  # outputs whose pixels may show text


class Anonymiser:
    """One de-identification session (one export): the same original UID (or patient) always
    maps to the same replacement within the session, and to an unrelated one in another."""

    def __init__(self, salt: bytes | None = None, table: ProfileTable | None = None, options: DeidOptions | None = None):
        self._salt = salt if salt is not None else secrets.token_bytes(16)
        self.table = table or profile_table()
        self.options = options or DeidOptions()
        self.uid_map: dict[str, str] = {}
        self._inside_dummy_sequence = 0
        # one offset for the whole session, 30 days to 10 years back, from the secret salt
        digest = hashlib.sha256(self._salt + b"date shift").digest()
        self.date_shift_days = 30 + int.from_bytes(digest[:4], "big") % 3620

    def _kept_by_option(self, element, keyword: str, top_level: bool) -> bool:
        """Apply the chosen options to ``element``; True when that settles it."""
        if self.options.keep_descriptions and top_level and keyword in DESCRIPTION_KEYWORDS:
            return True
        if self.options.shift_dates and keyword != "PatientBirthDate" and element.VR in ("DA", "DT", "TM"):
            if element.VR != "TM" and element.value:
                values = element.value if isinstance(element.value, (list, tuple, MultiValue)) else [element.value]
                shifted = [_shift_date_text(str(v), self.date_shift_days) for v in values]
                element.value = shifted if len(shifted) > 1 else shifted[0]
            return True
        return False

    @property
    def salt(self) -> bytes:
        """The session's secret: another Anonymiser with it maps every UID the same way."""
        return self._salt

    def new_uid(self, old: str) -> str:
        if old not in self.uid_map:
            self.uid_map[old] = generate_uid(entropy_srcs=[self._salt.hex(), old])
        return self.uid_map[old]

    def pseudonym(self, value: str) -> str:
        return hashlib.sha256(self._salt + value.encode("utf-8", "replace")).hexdigest()[:10].upper()

    # --- the actions ------------------------------------------------------------------------
    def _replace_uids(self, element) -> None:
        values = list(element.value) if isinstance(element.value, (list, tuple, MultiValue)) else [element.value]
        replaced = [self.new_uid(str(v)) if str(v).strip() else "" for v in values]
        element.value = replaced if len(replaced) > 1 else (replaced[0] if replaced else "")

    def _empty(self, element, top_level: bool) -> None:
        if element.VR == "SQ":
            element.value = Sequence([])
        elif top_level and element.keyword in ("PatientName", "PatientID") and element.value:
            element.value = self._patient_dummy(element.keyword, str(element.value))
        elif element.VR in _TEXT_VRS or element.VR in _DUMMIES or element.VR in ("DA", "DT", "TM", "UI"):
            element.value = ""
        else:
            element.value = None

    def _patient_dummy(self, keyword: str, original: str) -> str:
        # Z allows a dummy: a pseudonym keeps two patients of one export apart
        if keyword == "PatientName":
            return f"ANONYMOUS^{self.pseudonym(original)}"
        return f"ANON-{self.pseudonym(original)}"

    def _dummy(self, element, path: tuple[str, ...], iod: int | None, top_level: bool) -> None:
        vr = element.VR
        if vr == "SQ":
            # a "dummy" sequence (Content Sequence): the items and their structure (codes, value
            # types, relationships) kept, every attribute the table lists de-identified, and
            # free text the table does not list (Text Value...) replaced too
            self._inside_dummy_sequence += 1
            try:
                self._clean_items(element, path, iod)
            finally:
                self._inside_dummy_sequence -= 1
        elif vr == "UI":
            self._replace_uids(element)
        elif top_level and element.keyword in ("PatientName", "PatientID"):
            element.value = self._patient_dummy(element.keyword, str(element.value or ""))
        elif vr in _DUMMIES:
            element.value = _DUMMIES[vr]
        elif vr in _TEXT_VRS:
            element.value = "ANONYMOUS"
        elif vr in _NUMERIC_VRS:
            element.value = 0
        elif vr in _BINARY_VRS:
            element.value = b"\x00\x00"
        else:
            element.value = "ANONYMOUS"

    def _clean_items(self, element, path: tuple[str, ...], iod: int | None) -> None:
        inner = path + (element.keyword or str(element.tag),)
        for item in element.value or []:
            self._clean(item, inner, iod)

    def _clean(self, ds: Dataset, path: tuple[str, ...], iod: int | None) -> None:
        top_level = not path
        overlay_groups_to_drop: set[int] = set()
        for element in list(ds):
            tag = element.tag
            if tag.is_private:
                if self.table.private_action == "X":
                    del ds[tag]
                continue
            if tag.element == 0x0000:  # group lengths would be wrong after removals
                del ds[tag]
                continue
            row = self.table.row_for(tag)
            keyword = element.keyword
            if row is None:
                self._beyond_table(ds, element, keyword, path, iod)
                continue
            action = resolve_action(row[0], self.table.attribute_type(keyword, path, iod) if keyword else "3")
            if action != "K" and element.VR != "SQ" and self._kept_by_option(element, keyword, top_level):
                continue
            if action == "X":
                if 0x6000 <= tag.group <= 0x60FF and tag.element == 0x3000:
                    overlay_groups_to_drop.add(tag.group)  # an overlay plane without its data
                del ds[tag]
            elif action == "Z":
                self._empty(element, top_level)
            elif action in ("D", "C"):
                self._dummy(element, path, iod, top_level)
            elif action == "U":
                if element.VR == "SQ":
                    self._clean_items(element, path, iod)
                else:
                    self._replace_uids(element)
            elif action in ("U*", "K"):
                if element.VR == "SQ":  # kept, with the UIDs (and all else) inside de-identified
                    self._clean_items(element, path, iod)
        for group in overlay_groups_to_drop:
            for element in list(ds.group_dataset(group)):
                del ds[element.tag]

    def _beyond_table(self, ds: Dataset, element, keyword: str, path: tuple[str, ...], iod: int | None) -> None:
        """Attributes Table E.1-1 does not list are kept (K), sequences cleaned inside; the
        two safety nets catch names and instance UIDs of attributes the table misses."""
        if element.VR == "SQ":
            self._clean_items(element, path, iod)
        elif element.VR == "PN":
            element.value = "ANONYMOUS" if self._inside_dummy_sequence else ""
        elif self._inside_dummy_sequence and element.VR in _FREE_TEXT_VRS and element.value:
            element.value = "ANONYMOUS"
        elif element.VR == "UI" and keyword not in _KEEP_UIDS and element.tag.group != 0x0002:
            values = element.value if isinstance(element.value, (list, tuple, MultiValue)) else [element.value]
            if any(self._is_instance_uid(str(v)) for v in values):
                replaced = [self.new_uid(str(v)) if self._is_instance_uid(str(v)) else str(v) for v in values]
                element.value = replaced if len(replaced) > 1 else replaced[0]

    @staticmethod
    def _is_instance_uid(value: str) -> bool:
        value = value.strip()
        # registered DICOM UIDs (SOP classes, syntaxes, coding schemes) are not identifying
        return bool(value) and not (value.startswith("1.2.840.10008.") and UID(value).is_valid)

    def anonymise_dataset(self, ds: Dataset) -> list[str]:
        """De-identify ``ds`` in place (pixels untouched); return warnings for the user."""
        warnings: list[str] = []
        risk = burned_in_risk(ds)
        if risk:
            warnings.append(risk)
        burned = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
        iod = self.table.iod_of(str(ds.get("SOPClassUID", "") or ""))
        self._clean(ds, (), iod)
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            for element in list(meta):
                row = self.table.row_for(element.tag)
                if element.keyword == "MediaStorageSOPInstanceUID" and element.value:
                    element.value = self.new_uid(str(element.value))
                elif row is not None and resolve_action(row[0], "3") == "X":
                    del meta[element.tag]
                elif element.keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                                         "ReceivingApplicationEntityTitle", "SourcePresentationAddress",
                                         "SendingPresentationAddress", "ReceivingPresentationAddress"):
                    del meta[element.tag]  # who sent it where: identifies the site
        ds.PatientIdentityRemoved = "YES"
        methods, codes = [PROFILE_NAME], [PROFILE_CODE]
        if self.options.shift_dates:
            methods.append(MODIFIED_DATES_NAME)
            codes.append(MODIFIED_DATES_CODE)
        if self.options.keep_descriptions:
            methods.append(DESCRIPTIONS_NOTE)
            warnings.append(DESCRIPTIONS_WARNING)
        if risk:
            methods.append(BURNED_IN_NOTE)
        ds.DeidentificationMethod = methods if len(methods) > 1 else methods[0]
        items = []
        for value, scheme, meaning in codes:
            code = Dataset()
            code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, scheme, meaning
            items.append(code)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        ds.LongitudinalTemporalInformationModified = "MODIFIED" if self.options.shift_dates else "REMOVED"
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


def anonymise_source(source: SourceRef, out_dir: Path, anonymiser: Anonymiser,
                     folders: bool = False) -> tuple[Path, list[str]]:
    """De-identify one object into ``out_dir/<new SOP Instance UID>.dcm`` (written atomically);
    with ``folders``, into ``out_dir/<patient>/<study>/<series>/`` (readable_folder)."""
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
    target = Path(out_dir) / (readable_folder(ds) if folders else Path()) / f"{ds.SOPInstanceUID}.dcm"
    atomic_write_bytes(target, buffer.getvalue())
    return target, warnings


def _output_folder(folder: str | os.PathLike) -> Path:
    out = Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserFacingError(f"cannot use {out} as the output folder ({exc.strerror or exc})") from exc
    return out


def _anonymise_one(source: SourceRef, out: Path, anonymiser: Anonymiser,
                   folders: bool = False) -> tuple[str, Path | None, list[str], str | None]:
    """``(source, written file, warnings, error)``: one bad file never stops the batch."""
    try:
        target, warnings = anonymise_source(source, out, anonymiser, folders)
    except UserFacingError as exc:
        return str(source), None, [], str(exc)
    except Exception as exc:  # one bad file never stops the batch
        return str(source), None, [], f"{type(exc).__name__}: {exc}"
    return str(source), target, warnings, None


def anonymise_chunk(sources: list[SourceRef], out_dir: str, salt: bytes, options: DeidOptions,
                    folders: bool = False) -> list[tuple]:
    """One cluster task: de-identify ``sources`` with the run's secret ``salt``, so every worker
    maps an original UID to the same new UID (keyed hashing; the date offset too), into the
    shared ``out_dir``."""
    anonymiser = Anonymiser(salt, options=options)
    return [_anonymise_one(source, Path(out_dir), anonymiser, folders) for source in sources]


def _outcomes(sources: list[SourceRef], out: Path, anonymiser: Anonymiser, folders: bool = False,
              scheduler: str | None = None, client=None) -> Iterable[tuple]:
    """``_anonymise_one`` over ``sources`` in order: here, or in tasks of a few files on a Dask
    cluster (``scheduler``, or an open ``client``) that writes into the shared ``out``."""
    from healthfm_desktop.core.cluster import chunked, map_ordered

    if not (scheduler or client):
        return (_anonymise_one(source, out, anonymiser, folders) for source in sources)
    chunks = map_ordered(anonymise_chunk, list(chunked(sources, _CLUSTER_CHUNK)), str(out.resolve()),
                         anonymiser.salt, anonymiser.options, folders, scheduler=scheduler, client=client,
                         label="anonymize")
    return (outcome for chunk in chunks for outcome in chunk)


def anonymise_paths(
    paths: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    anonymiser: Anonymiser | None = None,
    progress: Callable[[int, int], None] | None = None,
    scheduler: str | None = None,
) -> AnonymisationReport:
    """De-identify every DICOM object under files, folders, zips and DICOMDIRs into ``out_dir``;
    with ``scheduler``, in tasks of a few files on that Dask cluster (``out_dir`` shared)."""
    from healthfm_desktop.core.imaging.scanning import expand_paths

    anonymiser = anonymiser or Anonymiser()
    report = AnonymisationReport()
    sources, rejected, _ = expand_paths(paths)
    report.rejected.extend(rejected)
    out = _output_folder(out_dir)
    outcomes = _outcomes(sources, out, anonymiser, scheduler=scheduler)
    for done, (source, target, warnings, error) in enumerate(outcomes, start=1):
        if error is not None:
            report.rejected.append((source, error))
        else:
            report.written.append(target)
            report.warnings.extend(f"{source}: {w}" for w in warnings)
            if any(w != DESCRIPTIONS_WARNING for w in warnings):
                report.burned_in.append(target)
        if progress is not None and not scheduler:
            progress(done, len(sources))
    return report


def anonymise_series(series, folder: str | os.PathLike, anonymiser: Anonymiser | None = None,
                     folders: bool = False, client=None,
                     progress: Callable[[int, int], None] | None = None) -> AnonymisationReport:
    """De-identify every object of a ``Series`` into ``folder`` (one session: consistent UIDs),
    in Patient/Study/Series subfolders with ``folders``; with a Dask ``client`` (Settings >
    Compute), in tasks on its cluster, with the same files as here."""
    anonymiser = anonymiser or Anonymiser()
    report = AnonymisationReport()
    out = _output_folder(folder)
    sources = [instance.source for instance in series.instances]
    outcomes = _outcomes(sources, out, anonymiser, folders, client=client)
    for done, (source, target, warnings, error) in enumerate(outcomes, start=1):
        if error is not None:
            report.rejected.append((source, error))
        else:
            report.written.append(target)
            report.warnings.extend(w for w in warnings if w not in report.warnings)  # once per series
            if any(w != DESCRIPTIONS_WARNING for w in warnings):
                report.burned_in.append(target)
        if progress is not None:
            progress(done, len(sources))
    return report


def series_burned_in_risk(series) -> str | None:
    """Why a viewer ``Series`` may show burned-in text (from its headers), or None: the viewer
    asks the user before exporting such a series."""
    for instance in series.instances:
        reason = burned_in_risk(instance.header)
        if reason:
            return reason
    return None
