"""Our C-STORE SCP: receives objects (C-MOVE destinations, modalities pushing to us) and files
them as they come, untouched. Off unless started; runs on pynetdicom's own server threads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from healthfm_desktop.core.errors import UnreadableFileError
from healthfm_desktop.core.imaging.pacs.association import set_no_delay, shorten_reactor_sleep
from healthfm_desktop.core.imaging.pacs.contexts import storage_scp_contexts
from healthfm_desktop.core.imaging.pacs.errors import PacsError
from healthfm_desktop.core.imaging.pacs.filing import FiledObject, file_encoded_object
from healthfm_desktop.core.imaging.pacs.peers import validate_ae_title, validate_port

log = logging.getLogger(__name__)

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000


def _accept_with_no_delay(server) -> None:
    """Accepted sockets get TCP_NODELAY (see association.set_no_delay)."""
    accept = server.get_request

    def get_request():
        client, address = accept()
        set_no_delay(client)
        return client, address

    server.get_request = get_request


class StorageSCP:
    """``on_filed`` is called on a server thread for every object written (keep it thread-safe)."""

    def __init__(
        self,
        ae_title: str,
        port: int,
        store_dir: Path,
        bind_address: str = "",
        on_filed: Callable[[FiledObject], None] | None = None,
        on_rejected: Callable[[str], None] | None = None,
    ):
        self.ae_title = validate_ae_title(ae_title, "own AE title")
        self.port = validate_port(port, "storage port")
        self.store_dir = Path(store_dir)
        self.bind_address = bind_address
        self.on_filed = on_filed
        self.on_rejected = on_rejected
        self._server = None
        self._lock = threading.Lock()
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
        ae.network_timeout = 60
        ae.acse_timeout = 30
        ae.dimse_timeout = 60
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
        _accept_with_no_delay(self._server)
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

    def _handle_store(self, event) -> int:
        try:
            filed = file_encoded_object(event.encoded_dataset(), self.store_dir)
        except UnreadableFileError as exc:
            self._reject(str(exc))
            return STATUS_CANNOT_UNDERSTAND
        except OSError as exc:
            self._reject(f"cannot write the received object: {exc.strerror or exc}")
            return STATUS_OUT_OF_RESOURCES
        with self._lock:
            self.received += 1
        if self.on_filed is not None:
            try:
                self.on_filed(filed)
            except Exception as exc:  # a failing listener must not make us refuse a good object
                log.error("storage listener failed: %s", type(exc).__name__)
        return STATUS_SUCCESS

    def _reject(self, reason: str) -> None:
        with self._lock:
            self.rejected += 1
        log.warning("received object refused: %s", reason)
        if self.on_rejected is not None:
            self.on_rejected(reason)
