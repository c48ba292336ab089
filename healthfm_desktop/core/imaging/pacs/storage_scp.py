"""Our C-STORE SCP: receives objects (C-MOVE destinations, modalities pushing to us) and files
them as they come, untouched. Off unless started; runs on pynetdicom's own server threads.

Who is let in: it binds 127.0.0.1 unless told otherwise, the called AE title must be ours, an
allow-list of calling AE titles can be given, an idle connection is dropped after a few seconds
and one host may hold only a few connections, so a flood from one peer cannot lock the others
out. What is kept: files and the study database agree; a second object with a SOP Instance UID
already filed under another study, series or patient is refused (status 0x0111) and reported."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from healthfm_desktop.core.errors import UnreadableFileError, UserFacingError
from healthfm_desktop.core.imaging.pacs.association import set_no_delay, shorten_reactor_sleep
from healthfm_desktop.core.imaging.pacs.contexts import storage_scp_contexts
from healthfm_desktop.core.imaging.pacs.errors import PacsError
from healthfm_desktop.core.imaging.pacs.filing import FiledObject, read_received_header, write_received
from healthfm_desktop.core.imaging.pacs.peers import validate_ae_title, validate_port

log = logging.getLogger(__name__)

STATUS_SUCCESS = 0x0000
STATUS_DUPLICATE_SOP_INSTANCE = 0x0111  # PS3.7 C.4: the instance exists with other identity
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000

DEFAULT_BIND_ADDRESS = "127.0.0.1"
# seconds a connection may stay silent before its A-ASSOCIATE-RQ (pynetdicom's ARTIM timer):
# a real peer sends it at once; 30 s let ten idle sockets lock everyone out again and again
REQUEST_TIMEOUT_S = 5.0
IDLE_TIMEOUT_S = 30.0  # silence within an association
MAX_ASSOCIATIONS = 32
MAX_CONNECTIONS_PER_HOST = 4


@dataclass(frozen=True)
class StoreOutcome:
    """One C-STORE request answered: what ``pacs listen --json`` prints."""

    sop_instance_uid: str
    calling_aet: str
    path: str | None  # None when nothing was written
    status: int
    reason: str = ""

    def to_json(self) -> dict:
        return {"sop_instance_uid": self.sop_instance_uid, "calling_aet": self.calling_aet, "path": self.path,
                "status": f"0x{self.status:04X}"}


def _harden_server(server, per_host: int) -> None:
    """Accepted sockets get TCP_NODELAY (see association.set_no_delay); a host over its
    connection limit is turned away at accept, before it can hold one of the association slots."""
    accept = server.get_request

    def get_request():
        client, address = accept()
        set_no_delay(client)
        return client, address

    def verify_request(_request, client_address) -> bool:
        host = client_address[0] if isinstance(client_address, tuple) else str(client_address)
        holding = 0
        for assoc in list(server.active_associations):
            try:
                if assoc.is_alive() and assoc.requestor.address == host:
                    holding += 1
            except (AttributeError, ValueError):  # no address yet
                continue
        if holding >= per_host:
            log.warning("connection refused: a host is over its limit of %d connections", per_host)
            return False
        return True

    server.get_request = get_request
    server.verify_request = verify_request


class StorageSCP:
    """``on_filed`` is called on a server thread for every object written, ``on_rejected`` with
    the reason for every one refused, ``on_outcome`` for every C-STORE answered (keep them
    thread-safe). With ``database`` (a StudyDatabase) each object is indexed as it is written."""

    def __init__(
        self,
        ae_title: str,
        port: int,
        store_dir: Path,
        bind_address: str = DEFAULT_BIND_ADDRESS,
        on_filed: Callable[[FiledObject], None] | None = None,
        on_rejected: Callable[[str], None] | None = None,
        allowed_calling_aets: Iterable[str] = (),
        database=None,
        on_outcome: Callable[[StoreOutcome], None] | None = None,
        per_host_connections: int = MAX_CONNECTIONS_PER_HOST,
    ):
        self.ae_title = validate_ae_title(ae_title, "own AE title")
        self.port = validate_port(port, "storage port")
        self.store_dir = Path(store_dir)
        self.bind_address = bind_address
        self.allowed_calling_aets = [validate_ae_title(t, "allowed calling AE title") for t in allowed_calling_aets]
        self.on_filed = on_filed
        self.on_rejected = on_rejected
        self.on_outcome = on_outcome
        self.database = database
        self.per_host_connections = per_host_connections
        self._server = None
        self._lock = threading.Lock()
        self._identities: dict[str, tuple[str, str, str]] = {}  # filed this session: SOP -> (study, series, patient)
        self.received = 0
        self.rejected = 0

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> "StorageSCP":
        if self._server is not None:
            return self
        self.store_dir.mkdir(parents=True, exist_ok=True)
        ae = AE(ae_title=self.ae_title)
        ae.maximum_pdu_size = 0
        ae.network_timeout = IDLE_TIMEOUT_S
        ae.acse_timeout = REQUEST_TIMEOUT_S
        ae.dimse_timeout = IDLE_TIMEOUT_S
        ae.maximum_associations = MAX_ASSOCIATIONS
        ae.require_called_aet = True
        ae.require_calling_aet = list(self.allowed_calling_aets)
        ae.supported_contexts = storage_scp_contexts()
        ae.add_supported_context(Verification)
        try:
            self._server = ae.start_server(
                (self.bind_address, self.port), block=False,
                evt_handlers=[(evt.EVT_C_STORE, self._handle_store),
                              (evt.EVT_CONN_OPEN, lambda event: shorten_reactor_sleep(event.assoc))]
            )
        except OSError as exc:
            where = f"{self.bind_address or 'all interfaces'} port {self.port}"
            reason = "already in use" if getattr(exc, "errno", None) in (98, 48, 10048) else (exc.strerror or str(exc))
            raise PacsError(f"cannot receive DICOM on {where}: {reason}") from None
        _harden_server(self._server, self.per_host_connections)
        log.info("storage SCP listening on port %s", self.port)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()

    def __enter__(self) -> "StorageSCP":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _conflict(self, sop: str, identity: tuple[str, str, str]) -> str | None:
        """Why an object with this SOP Instance UID may not be filed, or None."""
        with self._lock:
            known = self._identities.get(sop)
        if known is None and self.database is not None:
            indexed = self.database.instance_identity(sop)
            if indexed is not None:
                known = tuple(indexed[:3])
        if known is not None and known != identity:
            what = [name for name, a, b in zip(("study", "series", "patient"), known, identity) if a != b]
            return f"duplicate SOP Instance UID: already filed under another {', '.join(what)}; not stored"
        if self.database is not None:
            owner = self.database.series_study(identity[1])
            if owner is not None and owner != identity[0]:
                return "its series UID already belongs to another study; not stored"
        return None

    def _handle_store(self, event) -> int:
        calling = str(getattr(event.assoc.requestor, "ae_title", "") or "").strip()
        sop = ""
        try:
            encoded = event.encoded_dataset()
            received = read_received_header(encoded)
            sop = received.sop_uid
            identity = (received.study_uid, received.series_uid, received.patient_id)
            conflict = self._conflict(sop, identity)
            if conflict is not None:
                return self._reject(conflict, STATUS_DUPLICATE_SOP_INSTANCE, sop, calling)
            filed = write_received(encoded, received, self.store_dir)
        except UnreadableFileError as exc:
            return self._reject(str(exc), STATUS_CANNOT_UNDERSTAND, sop, calling)
        except OSError as exc:
            return self._reject(f"cannot write the received object: {exc.strerror or exc}", STATUS_OUT_OF_RESOURCES, sop, calling)
        if self.database is not None:
            try:
                report = self.database.add_instances([filed.record])
            except (UserFacingError, OSError) as exc:
                filed.path.unlink(missing_ok=True)  # files and database agree: neither has it
                return self._reject(f"not stored: {exc}", STATUS_OUT_OF_RESOURCES, sop, calling)
            if report.duplicates and not (report.added or report.unchanged or report.relinked):
                filed.path.unlink(missing_ok=True)
                return self._reject(f"not stored: {report.duplicates[0][1]}", STATUS_DUPLICATE_SOP_INSTANCE, sop, calling)
        with self._lock:
            self.received += 1
            self._identities[sop] = identity
        if self.on_filed is not None:
            try:
                self.on_filed(filed)
            except Exception as exc:  # a failing listener must not make us refuse a good object
                log.error("storage listener failed: %s", type(exc).__name__)
        self._outcome(StoreOutcome(sop, calling, str(filed.path), STATUS_SUCCESS))
        return STATUS_SUCCESS

    def _reject(self, reason: str, status: int, sop: str = "", calling: str = "") -> int:
        with self._lock:
            self.rejected += 1
        log.warning("received object refused: %s", reason)
        if self.on_rejected is not None:
            self.on_rejected(reason)
        self._outcome(StoreOutcome(sop, calling, None, status, reason))
        return status

    def _outcome(self, outcome: StoreOutcome) -> None:
        if self.on_outcome is not None:
            try:
                self.on_outcome(outcome)
            except Exception as exc:
                log.error("storage listener failed: %s", type(exc).__name__)
