"""C-ECHO: is the peer there, does it accept us, and how long does a round trip take."""

from __future__ import annotations

import time
from dataclasses import dataclass

from pynetdicom.sop_class import Verification
from pynetdicom import build_context

from healthfm_desktop.core.imaging.pacs.association import Timeouts, no_response_error, open_association
from healthfm_desktop.core.imaging.pacs.errors import OperationFailedError
from healthfm_desktop.core.imaging.pacs.peers import DicomPeer


@dataclass(frozen=True)
class EchoResult:
    peer: str
    round_trip_ms: float  # C-ECHO request to response, on an open association
    association_ms: float  # TCP connect + association negotiation

    def summary(self) -> str:
        return (
            f"C-ECHO {self.peer}: success, round trip {self.round_trip_ms:.1f} ms "
            f"(association {self.association_ms:.1f} ms)"
        )


def echo(peer: DicomPeer, calling_aet: str, timeouts: Timeouts | None = None) -> EchoResult:
    timeouts = timeouts or Timeouts()
    started = time.perf_counter()
    with open_association(peer, calling_aet, [build_context(Verification)], timeouts=timeouts) as assoc:
        associated = time.perf_counter()
        status = assoc.send_c_echo()
        answered = time.perf_counter()
        if "Status" not in status:
            raise no_response_error(assoc, peer, calling_aet, time.monotonic() - (answered - associated), timeouts, "C-ECHO")
        if status.Status != 0x0000:
            raise OperationFailedError(f"{peer.label()} answered C-ECHO with status 0x{status.Status:04X}")
    return EchoResult(peer.label(), (answered - associated) * 1000.0, (associated - started) * 1000.0)
