"""DICOM networking with PACS peers (pynetdicom): echo, study/series query, retrieve by C-GET
or C-MOVE, send by C-STORE, and our own C-STORE SCP. Every failure is a PacsError whose
message says what to check."""

from healthfm_desktop.core.imaging.pacs.association import Timeouts
from healthfm_desktop.core.imaging.pacs.echo import EchoResult, echo
from healthfm_desktop.core.imaging.pacs.errors import (
    AssociationRejectedError,
    InvalidPeerError,
    OperationFailedError,
    PacsError,
    PeerAbortedError,
    PeerTimeoutError,
    PeerUnreachableError,
)
from healthfm_desktop.core.imaging.pacs.peers import (
    DicomPeer,
    load_peers,
    own_ae_title,
    own_storage_port,
    parse_peer_address,
    save_peers,
)
from healthfm_desktop.core.imaging.pacs.query import (
    InvalidQueryError,
    SeriesMatch,
    StudyMatch,
    StudyQuery,
    find_series,
    find_studies,
)
from healthfm_desktop.core.imaging.pacs.retrieve import (
    IncompleteRetrievalError,
    RetrieveProgress,
    RetrieveResult,
    retrieve,
    run_to_end,
)
from healthfm_desktop.core.imaging.pacs.send import IncompleteSendError, SendProgress, SendResult, send
from healthfm_desktop.core.imaging.pacs.storage_scp import StorageSCP

__all__ = [
    "AssociationRejectedError", "IncompleteSendError", "SendProgress", "SendResult", "send", "DicomPeer", "EchoResult", "IncompleteRetrievalError", "InvalidPeerError",
    "InvalidQueryError", "OperationFailedError", "PacsError", "PeerAbortedError", "PeerTimeoutError",
    "PeerUnreachableError", "RetrieveProgress", "RetrieveResult", "SeriesMatch", "StorageSCP", "StudyMatch",
    "StudyQuery", "Timeouts", "echo", "find_series", "find_studies", "load_peers", "own_ae_title",
    "own_storage_port", "parse_peer_address", "retrieve", "run_to_end", "save_peers",
]
