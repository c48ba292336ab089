"""What can go wrong talking to a DICOM peer, as messages a person can act on."""

from __future__ import annotations

from healthfm_desktop.core.errors import UserFacingError


class PacsError(UserFacingError):
    """A DICOM networking failure (the message names the peer and what to check)."""


class PeerUnreachableError(PacsError):
    """No TCP connection: the peer is down, the port is wrong or a firewall is in the way."""


class AssociationRejectedError(PacsError):
    """The peer refused the association (often: wrong called or calling AE title)."""


class PeerTimeoutError(PacsError):
    """The peer accepted the connection but did not answer in time."""


class PeerAbortedError(PacsError):
    """The association was aborted or the connection dropped during an operation."""


class OperationFailedError(PacsError):
    """The peer answered with a failure status."""


class InvalidPeerError(UserFacingError):
    """A peer address or AE title that cannot be used (bad HOST:PORT, AE title too long...)."""
