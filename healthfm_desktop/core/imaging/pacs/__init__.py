"""DICOM networking with PACS peers (pynetdicom): echo, study/series query, retrieve by C-GET
or C-MOVE, send by C-STORE, and our own C-STORE SCP. Every failure is a PacsError whose
message says what to check.

Names are loaded on first use (PEP 562): pynetdicom takes ~0.4 s to import, and the app's
startup only needs the peer list and the study database."""

from __future__ import annotations

import importlib
import sys
import threading

_EXPORTS = {
    "association": ["Timeouts"],
    "verification": ["EchoResult", "echo"],
    "errors": ["AssociationRejectedError", "InvalidPeerError", "OperationFailedError", "PacsError",
               "PeerAbortedError", "PeerTimeoutError", "PeerUnreachableError"],
    "peers": ["DicomPeer", "load_peers", "own_ae_title", "own_storage_port", "parse_peer_address", "save_peers"],
    "query": ["InstanceMatch", "InvalidQueryError", "SeriesMatch", "StudyMatch", "StudyQuery", "find_instances",
              "find_series", "find_studies"],
    "retrieval": ["IncompleteRetrievalError", "RetrieveProgress", "RetrieveResult", "retrieve",
                  "retrieve_into_database", "run_to_end"],
    "storage_scu": ["IncompleteSendError", "SendProgress", "SendResult", "send"],
    "storage_scp": ["StorageSCP"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


_load_lock = threading.RLock()
_loaded = False


def load_all() -> None:
    """Import every submodule, once, under one lock: two threads importing these inter-
    dependent modules in different orders can otherwise see a half-initialised module."""
    global _loaded
    with _load_lock:
        if not _loaded:
            for module in _EXPORTS:
                importlib.import_module(f"{__name__}.{module}")
            _loaded = True


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    load_all()
    value = getattr(sys.modules[f"{__name__}.{module}"], name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
