"""Write objects received over the network to disk, exactly as sent, under
``<root>/<Study UID>/<Series UID>/<SOP Instance UID>.dcm``. Each file appears whole or not
at all (written beside its place, then renamed)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from healthfm_desktop.core.errors import UnreadableFileError
from healthfm_desktop.core.storage.atomic import atomic_write_bytes
from healthfm_desktop.core.storage.studies import InstanceRecord

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def safe_uid_name(uid: str) -> str:
    """A UID as a file name; anything that is not a plain UID (a hostile peer could send
    ``../``) becomes a hash of itself."""
    uid = (uid or "").strip()
    if _UID.match(uid) and len(uid) <= 64:
        return uid
    return "x" + hashlib.sha256(uid.encode("utf-8", "replace")).hexdigest()[:40]


@dataclass
class FiledObject:
    path: Path
    size: int
    header: object  # the pydicom Dataset (no pixel data) the record is made from
    _record: InstanceRecord | None = None

    @property
    def record(self) -> InstanceRecord:
        """Built on first use, after the transfer: keeps the per-object work on the network
        path small."""
        if self._record is None:
            self._record = InstanceRecord.from_dataset(self.header, self.path)
        return self._record

    @property
    def transfer_syntax(self) -> str:
        meta = getattr(self.header, "file_meta", None)
        return str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""


def _past_group_0020(tag, _vr, _length) -> bool:
    return tag.group > 0x0020


@dataclass(frozen=True)
class ReceivedHeader:
    """What a received object says it is, read before anything is written."""

    header: object  # pydicom Dataset, groups 0008-0020
    study_uid: str
    series_uid: str
    sop_uid: str
    patient_id: str

    def path_under(self, root: Path) -> Path:
        return Path(root) / safe_uid_name(self.study_uid) / safe_uid_name(self.series_uid) / f"{safe_uid_name(self.sop_uid)}.dcm"


def read_received_header(encoded: bytes) -> ReceivedHeader:
    """The identifying UIDs of a received DICOM file (preamble, meta, dataset); an object
    without them is refused (UnreadableFileError)."""
    from pydicom.filereader import read_partial

    try:
        # everything the path and the database need (patient, study, series, instance) is in
        # groups 0008-0020; stopping there skips private groups and pixel data
        ds = read_partial(BytesIO(encoded), stop_when=_past_group_0020)
        uids = [str(ds.get(k, "") or "").strip() for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")]
        patient_id = str(ds.get("PatientID", "") or "").strip()
    except Exception as exc:  # a peer can send anything; pydicom raises many types on bad data
        raise UnreadableFileError(f"received object cannot be read ({type(exc).__name__})") from None
    if not all(uids):
        raise UnreadableFileError("received object has no study, series or instance UID")
    return ReceivedHeader(ds, *uids, patient_id)


def write_received(encoded: bytes, received: ReceivedHeader, root: Path) -> FiledObject:
    path = received.path_under(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    # No fsync per object (durable=False): a crash can lose the newest file but never leave a
    # partial one, and per-file fsync would cost more than the network transfer itself.
    atomic_write_bytes(path, encoded, durable=False)
    return FiledObject(path, len(encoded), received.header)


def file_encoded_object(encoded: bytes, root: Path) -> FiledObject:
    """``encoded``: a DICOM file (preamble, meta, dataset) as pynetdicom's encoded_dataset()
    gives it. An object without its identifying UIDs is refused before anything is written."""
    return write_received(encoded, read_received_header(encoded), root)
