"""Retrieve a study or series by C-GET, or by C-MOVE to our own C-STORE SCP, as a generator
that yields progress after every instance (and can be closed to cancel) and returns a
RetrieveResult. Objects are filed as the peer stored them: no transcoding on either side."""

from __future__ import annotations

import queue
import time
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)
from pynetdicom.status import code_to_category

from healthfm_desktop.core.errors import UnreadableFileError
from healthfm_desktop.core.imaging.pacs.association import Timeouts, no_response_error, open_association
from healthfm_desktop.core.imaging.pacs.contexts import COMMON_STORAGE_CLASSES, retrieve_contexts
from healthfm_desktop.core.imaging.pacs.errors import OperationFailedError, PacsError
from healthfm_desktop.core.imaging.pacs.filing import FiledObject, file_encoded_object
from healthfm_desktop.core.imaging.pacs.peers import DicomPeer, validate_ae_title
from healthfm_desktop.core.imaging.pacs.query import StudyQuery, find_sop_classes, find_studies
from healthfm_desktop.core.imaging.pacs.storage_scp import (
    STATUS_CANNOT_UNDERSTAND,
    STATUS_OUT_OF_RESOURCES,
    STATUS_SUCCESS,
    StorageSCP,
)

_FAILURE_ADVICE = {
    0xA701: "the peer ran out of resources to find the matches",
    0xA702: "the peer ran out of resources for the transfers",
    0xA801: "the peer does not know the move destination {dest!r} (register it on the peer with this host and port)",
    0xA900: "the peer did not understand the request",
    0xC000: "the peer could not process the request",
}


@dataclass(frozen=True)
class RetrieveProgress:
    received: int
    expected: int | None
    failed: int
    bytes: int

    @property
    def fraction(self) -> float | None:
        if not self.expected:
            return None
        return min(1.0, (self.received + self.failed) / self.expected)

    @property
    def message(self) -> str:
        total = f" of {self.expected}" if self.expected else ""
        return f"{self.received}{total} instances received ({self.bytes / 1048576:.1f} MiB)"


@dataclass
class RetrieveResult:
    study_uid: str
    series_uid: str
    method: str  # "C-GET" or "C-MOVE"
    out_dir: Path
    filed: list[FiledObject] = field(default_factory=list)
    expected: int | None = None
    failed: int = 0  # sub-operations the peer reports as failed
    refused: list[str] = field(default_factory=list)  # objects we could not file, with why
    seconds: float = 0.0
    problem: str = ""  # why the retrieval stopped early, if it did
    instance_uid: str = ""  # one instance of the series only

    @property
    def received(self) -> int:
        return len(self.filed)

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.filed)

    @property
    def paths(self) -> list[Path]:
        return [f.path for f in self.filed]

    @property
    def transfer_syntaxes(self) -> dict[str, int]:
        return dict(Counter(f.transfer_syntax for f in self.filed))

    @property
    def complete(self) -> bool:
        return (not self.problem and not self.failed and not self.refused
                and (self.expected is None or self.received >= self.expected))

    def summary(self) -> str:
        what = f"series {self.series_uid}" if self.series_uid else f"study {self.study_uid}"
        total = f" of {self.expected}" if self.expected is not None and self.expected != self.received else ""
        rate = self.bytes / 1048576 / self.seconds if self.seconds > 0 else 0.0
        line = (f"{self.method} {what}: {self.received}{total} instances, {_size(self.bytes)} "
                f"in {self.seconds:.2f} s ({rate:.1f} MiB/s) into {self.out_dir}")
        if self.failed:
            line += f"; {self.failed} failed at the peer"
        if self.refused:
            line += f"; {len(self.refused)} refused here ({self.refused[0]})"
        if self.problem:
            line += f"; stopped: {self.problem}"
        return line


def _size(count: int) -> str:
    return f"{count / 1048576:.1f} MiB" if count >= 1048576 else f"{count / 1024:.0f} KiB"


class IncompleteRetrievalError(PacsError):
    """Some or all instances did not arrive; ``result`` holds what did (already on disk)."""

    def __init__(self, message: str, result: RetrieveResult):
        super().__init__(message)
        self.result = result


def _identifier(study_uid: str, series_uid: str, instance_uid: str = "") -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE" if instance_uid else "SERIES" if series_uid else "STUDY"
    ds.StudyInstanceUID = study_uid
    if series_uid:
        ds.SeriesInstanceUID = series_uid
    if instance_uid:
        ds.SOPInstanceUID = instance_uid
    return ds


def _counts(status: Dataset) -> tuple[int, int, int, int]:
    return tuple(int(status.get(k) or 0) for k in (  # type: ignore[return-value]
        "NumberOfRemainingSuboperations", "NumberOfCompletedSuboperations",
        "NumberOfFailedSuboperations", "NumberOfWarningSuboperations"))


def _validate_uid(uid: str, what: str) -> str:
    uid = (uid or "").strip()
    if not uid or len(uid) > 64 or any(c not in "0123456789." for c in uid):
        raise OperationFailedError(f"{what} {uid!r} is not a DICOM UID (digits and dots, at most 64)")
    return uid


def retrieve(
    peer: DicomPeer,
    calling_aet: str,
    study_uid: str,
    out_dir: Path,
    *,
    series_uid: str = "",
    instance_uid: str = "",
    move_destination: str = "",
    listen_port: int | None = None,
    listen_address: str | None = None,
    sop_classes: list[str] | None = None,
    timeouts: Timeouts | None = None,
    on_filed: Callable[[FiledObject], None] | None = None,
) -> Generator[RetrieveProgress, None, RetrieveResult]:
    """C-GET (default) or, with ``move_destination``, C-MOVE while our SCP listens on
    ``listen_port`` as ``calling_aet``; ``instance_uid`` (with ``series_uid``): that one
    instance. Raises IncompleteRetrievalError when not everything arrived (its ``result``
    lists what did). Closing the generator cancels (aborts)."""
    timeouts = timeouts or Timeouts()
    study_uid = _validate_uid(study_uid, "study UID")
    series_uid = _validate_uid(series_uid, "series UID") if series_uid else ""
    if instance_uid and not series_uid:
        raise OperationFailedError("an instance is retrieved with its series UID")
    instance_uid = _validate_uid(instance_uid, "instance UID") if instance_uid else ""
    calling_aet = validate_ae_title(calling_aet, "calling AE title")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PacsError(f"cannot create {out_dir}: {exc.strerror or exc}") from None
    method = "C-MOVE" if move_destination else "C-GET"
    result = RetrieveResult(study_uid, series_uid, method, out_dir, instance_uid=instance_uid)
    started = time.monotonic()
    what = f"series {series_uid}" if series_uid else f"study {study_uid}"
    try:
        # one short query first: a study the peer does not have is said plainly, and C-GET
        # learns which SOP classes to propose
        matches = find_studies(peer, calling_aet, StudyQuery(study_uid=study_uid), timeouts)
        if not matches:
            raise IncompleteRetrievalError(f"{peer.label()} has no study {study_uid}", result)
        result.expected = matches[0].instances if not series_uid else None
        if move_destination:
            yield from _move(peer, calling_aet, result, validate_ae_title(move_destination, "move destination"),
                             listen_port, listen_address, timeouts, on_filed)
        else:
            if sop_classes is None:
                sop_classes = sorted({c for m in matches for c in m.sop_classes}) if not series_uid else []
                if not sop_classes:
                    sop_classes = find_sop_classes(peer, calling_aet, study_uid, series_uid or "", timeouts,
                                                   image_level=True)
            yield from _get(peer, calling_aet, result, sop_classes or COMMON_STORAGE_CLASSES, timeouts, on_filed)
    finally:
        result.seconds = time.monotonic() - started
    if result.expected == 0 and not result.filed and not result.problem:
        raise IncompleteRetrievalError(f"{peer.label()} has no {what}", result)
    if not result.complete:
        reasons = []
        if result.problem:
            reasons.append(result.problem)
        if result.failed:
            reasons.append(f"{result.failed} sub-operations failed at the peer")
        if result.refused:
            reasons.append(f"{len(result.refused)} objects refused here ({result.refused[0]})")
        if not reasons and result.expected is not None:
            reasons.append(f"{result.expected - result.received} instances did not arrive")
        raise IncompleteRetrievalError(
            f"incomplete retrieval of {what} from {peer.label()}: {result.received} of "
            f"{result.expected if result.expected is not None else '?'} instances received; " + "; ".join(reasons),
            result,
        )
    return result


def _final_status(result: RetrieveResult, status: Dataset, move_destination: str = "") -> None:
    code = int(status.Status)
    category = code_to_category(code)
    remaining, completed, failed, warning = _counts(status)
    if completed + failed + warning or result.expected is None:
        result.expected = completed + failed + warning + remaining
    result.failed = max(result.failed, failed)
    if category == "Cancel":
        result.problem = "cancelled by the peer"
    elif category == "Failure":
        advice = _FAILURE_ADVICE.get(code, f"the peer answered with failure status 0x{code:04X}")
        comment = str(status.get("ErrorComment", "") or "").strip()
        if move_destination and code == 0xC000:
            advice += f" (is the move destination {move_destination!r} registered on the peer?)"
        result.problem = advice.format(dest=move_destination) + (f" ({comment})" if comment else "")


def _steps_since(result: RetrieveResult, reported: list[int]):
    """One progress step per instance filed since the last report. Peers send C-GET/C-MOVE
    pending responses as often as they like (Orthanc batches them when we are fast), so the
    steps follow what arrived, not how often the peer reports. ``reported``: [count, bytes]."""
    while reported[0] < result.received:
        reported[1] += result.filed[reported[0]].size
        reported[0] += 1
        yield RetrieveProgress(reported[0], result.expected, result.failed, reported[1])


def _get(peer, calling_aet, result: RetrieveResult, sop_classes, timeouts, on_filed):
    # when the peer last sent something: a silence longer than the DIMSE timeout is a timeout,
    # a shorter one that ends the exchange is an abort
    last = [time.monotonic()]
    reported = [0, 0]

    def handle_store(event) -> int:
        last[0] = time.monotonic()
        try:
            filed = file_encoded_object(event.encoded_dataset(), result.out_dir)
        except UnreadableFileError as exc:
            result.refused.append(str(exc))
            return STATUS_CANNOT_UNDERSTAND
        except OSError as exc:
            result.refused.append(f"cannot write: {exc.strerror or exc}")
            return STATUS_OUT_OF_RESOURCES
        result.filed.append(filed)
        if on_filed is not None:
            on_filed(filed)
        return STATUS_SUCCESS

    contexts, roles = retrieve_contexts(sop_classes)
    with open_association(peer, calling_aet, contexts, ext_neg=roles,
                          evt_handlers=[(evt.EVT_C_STORE, handle_store)], timeouts=timeouts) as assoc:
        last[0] = time.monotonic()
        for status, _identifier_answer in assoc.send_c_get(
            _identifier(result.study_uid, result.series_uid, result.instance_uid), StudyRootQueryRetrieveInformationModelGet
        ):
            answered = yield from _on_response(result, status, reported, last, assoc, peer, calling_aet, timeouts)
            if not answered:
                break
    yield from _steps_since(result, reported)
    yield RetrieveProgress(result.received, result.expected, result.failed, result.bytes)


def _on_response(result: RetrieveResult, status: Dataset, reported: list[int], last: list[float], assoc, peer,
                 calling_aet: str, timeouts, move_destination: str = ""):
    """One C-GET / C-MOVE response: Pending counts progress (and yields the new steps), a final
    status ends the retrieval; an empty response means the peer stopped answering. Returns
    False then (the caller stops reading responses)."""
    if "Status" not in status:
        result.problem = str(no_response_error(assoc, peer, calling_aet, last[0], timeouts, "the retrieval",
                                               first_answer=not result.filed))
        return False
    last[0] = time.monotonic()
    if code_to_category(status.Status) == "Pending":
        _record_pending(result, status)
        yield from _steps_since(result, reported)
    else:
        _final_status(result, status, move_destination)
    return True


def _record_pending(result: RetrieveResult, status) -> None:
    """A Pending C-GET/C-MOVE response: how many sub-operations there are and how many failed."""
    remaining, completed, failed, warning = _counts(status)
    result.expected = remaining + completed + failed + warning
    result.failed = failed


def _move(peer, calling_aet, result: RetrieveResult, destination, listen_port, listen_address, timeouts, on_filed):
    arrived: queue.SimpleQueue = queue.SimpleQueue()
    last = [time.monotonic()]
    reported = [0, 0]

    def filed_elsewhere(filed: FiledObject) -> None:  # on the SCP's thread
        last[0] = time.monotonic()
        arrived.put(filed)

    def drain() -> None:
        while True:
            try:
                filed = arrived.get_nowait()
            except queue.Empty:
                return
            result.filed.append(filed)
            if on_filed is not None:
                on_filed(filed)

    if listen_port is None:
        raise PacsError("C-MOVE needs a port to receive on (--listen-port or the storage port in Settings)")
    bind = listen_address if listen_address is not None else ("127.0.0.1" if peer.is_loopback else "")
    scp = StorageSCP(calling_aet, listen_port, result.out_dir, bind_address=bind,
                     on_filed=filed_elsewhere, on_rejected=result.refused.append)
    contexts, _ = retrieve_contexts([], move=True)
    with scp:
        with open_association(peer, calling_aet, contexts, timeouts=timeouts) as assoc:
            last[0] = time.monotonic()
            for status, _identifier_answer in assoc.send_c_move(
                _identifier(result.study_uid, result.series_uid, result.instance_uid), destination, StudyRootQueryRetrieveInformationModelMove
            ):
                drain()
                answered = yield from _on_response(result, status, reported, last, assoc, peer, calling_aet,
                                                   timeouts, destination)
                if not answered:
                    break
        # the last sub-operation's C-STORE is acknowledged before the final C-MOVE response,
        # so everything is on disk by now
        drain()
    yield from _steps_since(result, reported)
    yield RetrieveProgress(result.received, result.expected, result.failed, result.bytes)


def retrieve_into_database(database, peer: DicomPeer, calling_aet: str, study_uid: str, store_dir: Path, **options):
    """``retrieve`` that also indexes what arrived in the local study database, in one
    transaction at the end, whether the retrieval completed, failed or was cancelled: the
    database then lists exactly the whole files that are on disk."""
    filed: list[FiledObject] = []
    listener = options.pop("on_filed", None)

    def collect(item: FiledObject) -> None:
        filed.append(item)
        if listener is not None:
            listener(item)

    try:
        return (yield from retrieve(peer, calling_aet, study_uid, store_dir, on_filed=collect, **options))
    finally:
        if filed:
            database.add_instances([item.record for item in filed])


def run_to_end(steps: Generator):
    """Drive a step generator to its return value (for the command line and tests)."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value
