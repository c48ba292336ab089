"""Open an association with a peer and turn every way it can fail into a clear PacsError:
peer down, rejected (usually a wrong AE title), timed out, aborted. The one module that reaches
into pynetdicom's private names, read from pynetdicom 3.0.4 (``SUPPORTED_PYNETDICOM``):
``AE._create_socket`` (overridden: TCP_NODELAY, and the socket kept so a deadline can cut it) and
``DULServiceProvider._run_loop_delay``; any other version gets pynetdicom's plain behaviour (its
own idle timeouts, no hard deadline, default latency). ``pynetdicom._config`` is its documented
configuration module."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pynetdicom
from pynetdicom import AE, _config, evt
from pynetdicom.association import Association

from healthfm_desktop.core.imaging.pacs.errors import (
    AssociationRejectedError,
    InvalidPeerError,
    PeerAbortedError,
    PeerTimeoutError,
    PeerUnreachableError,
)
from healthfm_desktop.core.imaging.pacs.peers import DicomPeer, validate_ae_title

# identifiers carry patient names and ids: keep them out of the log
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False
# pynetdicom's standard handlers format a log line for every PDU and DIMSE message even when
# nothing is logged; per-instance cost that adds up over a study
_config.LOG_HANDLER_LEVEL = "none"
logging.getLogger("pynetdicom").setLevel(logging.WARNING)
log = logging.getLogger(__name__)

# A-ASSOCIATE-RJ reasons (PS3.8 9.3.4) as advice for the user
_REJECT_ADVICE = {
    (1, 2): "the peer does not support this application context",
    (1, 3): "the peer does not know our calling AE title {calling!r} (register it on the peer)",
    (1, 7): "the peer's AE title is not {called!r} (check the called AE title)",
    (2, 2): "the peer does not support the DICOM protocol version",
    (3, 1): "the peer is temporarily congested",
    (3, 2): "the peer's connection limit is reached",
}


@dataclass(frozen=True)
class Timeouts:
    """Seconds: TCP connect, association negotiation, each DIMSE message, idle network."""

    connect: float = 10.0
    acse: float = 15.0
    dimse: float = 60.0
    network: float = 60.0


def tls_context(peer: DicomPeer) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=peer.tls_ca_file or None)
    context.check_hostname = bool(peer.tls_verify_hostname)
    if peer.tls_cert_file:
        try:
            context.load_cert_chain(peer.tls_cert_file, peer.tls_key_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidPeerError(f"cannot load the TLS client certificate: {exc}") from None
    return context


def _diagnose_connection(peer: DicomPeer, timeout: float) -> str:
    """Why no TCP connection could be made (pynetdicom only logs it)."""
    try:
        with socket.create_connection((peer.host, peer.port), timeout=timeout):
            return "the connection was closed before the association could be negotiated"
    except socket.gaierror:
        return f"host {peer.host!r} not found"
    except socket.timeout:
        return f"no answer from {peer.host}:{peer.port} within {timeout:g} s"
    except ConnectionRefusedError:
        return f"connection refused by {peer.host}:{peer.port} (is the peer running and is the port right?)"
    except OSError as exc:
        return exc.strerror or str(exc)


SUPPORTED_PYNETDICOM = "3.0.4"


def private_internals_supported() -> bool:
    """Whether the installed pynetdicom is the one whose private names this module uses."""
    return pynetdicom.__version__ == SUPPORTED_PYNETDICOM


def set_no_delay(sock: socket.socket) -> None:
    """Turn Nagle's algorithm off. pynetdicom writes a command and its dataset as separate
    PDUs; with Nagle on, the second waits for the peer's delayed ACK (~40 ms per message)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


# pynetdicom's reactor sleeps this long whenever the socket had nothing to read; its default
# (1 ms) is paid again and again while a peer streams instances (a 140-image study retrieves
# ~30 % faster at 0.2 ms). Only for the short life of our associations.
REACTOR_SLEEP_S = 0.0002


def shorten_reactor_sleep(assoc) -> None:
    if not private_internals_supported():
        return
    dul = getattr(assoc, "dul", None)
    if dul is not None and hasattr(dul, "_run_loop_delay"):
        dul._run_loop_delay = REACTOR_SLEEP_S


class LowLatencyAE(AE):
    """An AE whose outgoing sockets have TCP_NODELAY set, and can be cut (``cut_connections``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.opened_sockets: list[socket.socket] = []

    def _create_socket(self, assoc, address, tls_args):
        association_socket = super()._create_socket(assoc, address, tls_args)
        if not private_internals_supported():
            return association_socket
        if association_socket.socket is not None:
            set_no_delay(association_socket.socket)
            self.opened_sockets.append(association_socket.socket)
        return association_socket

    def cut_connections(self) -> None:
        """Shut the TCP connections down from another thread: a read blocked on them returns.
        pynetdicom's own timeouts are idle timers, which a peer trickling bytes never lets fire."""
        for sock in self.opened_sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Watchdog:
    """Calls ``cut`` unless disarmed within ``seconds``: a hard deadline on one network wait."""

    def __init__(self, seconds: float, cut):
        self.fired = False

        def fire():
            self.fired = True
            cut()

        self._timer = threading.Timer(seconds, fire)
        self._timer.daemon = True
        self._timer.start()

    def disarm(self) -> None:
        self._timer.cancel()


def _diagnose_tls(peer: DicomPeer, timeout: float) -> str:
    """Why the TLS handshake failed, in the ssl module's words (pynetdicom only logs it)."""
    try:
        context = tls_context(peer)
        with socket.create_connection((peer.host, peer.port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=peer.host):
                return "the TLS connection was closed before the association could be negotiated"
    except ssl.SSLCertVerificationError as exc:
        return f"the peer's TLS certificate is not trusted ({exc.verify_message}; check the CA file)"
    except ssl.SSLError as exc:
        return f"the TLS handshake failed ({exc.reason or exc})"
    except OSError as exc:
        return f"the TLS handshake failed ({exc.strerror or exc})"
    except InvalidPeerError as exc:
        return str(exc)


def make_ae(calling_aet: str, timeouts: Timeouts) -> AE:
    if not private_internals_supported():
        log.warning("pynetdicom %s is not %s: associations have no hard deadline beyond pynetdicom's own timeouts",
                    pynetdicom.__version__, SUPPORTED_PYNETDICOM)
    ae = LowLatencyAE(ae_title=validate_ae_title(calling_aet, "calling AE title"))
    ae.connection_timeout = timeouts.connect
    ae.acse_timeout = timeouts.acse
    ae.dimse_timeout = timeouts.dimse
    ae.network_timeout = timeouts.network
    # bigger PDUs: fewer round trips through pynetdicom's reactor for large objects
    ae.maximum_pdu_size = 0
    return ae


@contextmanager
def open_association(
    peer: DicomPeer,
    calling_aet: str,
    contexts: list,
    ext_neg: list | None = None,
    evt_handlers: list | None = None,
    timeouts: Timeouts | None = None,
) -> Iterator[Association]:
    """An established association, released on exit (aborted if the body raised)."""
    timeouts = timeouts or Timeouts()
    ae = make_ae(calling_aet, timeouts)
    ae.requested_contexts = contexts
    connected = []
    handlers = list(evt_handlers or []) + [(evt.EVT_CONN_OPEN, lambda event: connected.append(True))]
    tls_args = (tls_context(peer), peer.host) if peer.tls else None
    # negotiation gets connect + ACSE seconds in all, however the peer paces its bytes
    watchdog = Watchdog(timeouts.connect + timeouts.acse, ae.cut_connections)
    try:
        assoc = ae.associate(
            peer.host, peer.port, ae_title=peer.ae_title, ext_neg=ext_neg or None,
            evt_handlers=handlers, tls_args=tls_args,
        )
    finally:
        watchdog.disarm()
    try:
        if watchdog.fired and not assoc.is_established:
            raise PeerTimeoutError(
                f"{peer.label()} did not complete the association within {timeouts.connect + timeouts.acse:g} s "
                "(is it a DICOM port? does the peer require TLS?)"
            )
        if not assoc.is_established:
            raise _association_failure(assoc, peer, calling_aet, bool(connected), timeouts)
        shorten_reactor_sleep(assoc)
        yield assoc
    except BaseException:
        if assoc.is_established:
            # a peer stuck mid-PDU would keep pynetdicom's abort waiting: cut first
            cutter = Watchdog(timeouts.acse, ae.cut_connections)
            try:
                assoc.abort()
            finally:
                cutter.disarm()
        raise
    else:
        if assoc.is_established:
            assoc.release()
    finally:
        ae.shutdown()


def _association_failure(assoc, peer: DicomPeer, calling_aet: str, connected: bool, timeouts: Timeouts):
    name = peer.label()
    if assoc.is_rejected:
        primitive = getattr(assoc.acceptor, "primitive", None)
        source = getattr(primitive, "result_source", None)
        reason = getattr(primitive, "diagnostic", None)
        advice = _REJECT_ADVICE.get((source, reason))
        if advice is None:
            advice = (getattr(primitive, "reason_str", "") or "no reason given").lower()
        return AssociationRejectedError(
            f"{name} rejected the association: {advice.format(called=peer.ae_title, calling=calling_aet)}"
        )
    if not connected:
        reason = _diagnose_connection(peer, timeouts.connect)
        if peer.tls and reason.startswith("the connection was closed"):
            reason = _diagnose_tls(peer, timeouts.connect)
        return PeerUnreachableError(f"cannot connect to {name}: {reason}")
    if assoc.acceptor.primitive is None:
        hint = "" if peer.tls else " (is it a DICOM port? does the peer require TLS?)"
        return PeerTimeoutError(f"{name} accepted the connection but did not answer within {timeouts.acse:g} s{hint}")
    if not assoc.accepted_contexts:
        return AssociationRejectedError(f"{name} accepted none of the proposed services")
    return PeerAbortedError(f"{name} aborted the association")


def no_response_error(assoc, peer: DicomPeer, calling_aet: str, started: float, timeouts: Timeouts, during: str,
                      first_answer: bool = True):
    """The error for a DIMSE exchange that ended without a status: the peer aborted (often
    because it refuses our calling AE title for this service) or it went silent."""
    waited = time.monotonic() - started
    if assoc.is_aborted or waited < timeouts.dimse * 0.9:
        hint = f" (check that the peer allows calling AE title {calling_aet!r} to do this)" if first_answer else ""
        return PeerAbortedError(f"{peer.label()} aborted the association during {during}{hint}")
    return PeerTimeoutError(f"{peer.label()} did not answer {during} within {timeouts.dimse:g} s")
