"""DICOM peers (AE title, host, port, TLS) and the app's own AE identity; the peer list is kept
as JSON in the user's data folder so the GUI and the command line share it."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from healthfm_desktop.core.config import read_setting
from healthfm_desktop.core.imaging.pacs.errors import InvalidPeerError
from healthfm_desktop.core.paths import user_data_dir
from healthfm_desktop.core.storage.atomic import atomic_write_text

# PS3.5 6.2: AE is up to 16 characters of the default repertoire, no backslash or control
# characters; leading/trailing spaces are not significant.
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def validate_ae_title(title: str, what: str = "AE title") -> str:
    title = (title or "").strip()
    if not title or not _AE_TITLE.match(title):
        raise InvalidPeerError(
            f"{what} {title!r} is not valid: 1 to 16 printable ASCII characters, no backslash"
        )
    return title


def validate_port(port: int | str, what: str = "port") -> int:
    try:
        value = int(port)
    except (TypeError, ValueError):
        raise InvalidPeerError(f"{what} {port!r} is not a number") from None
    if not 1 <= value <= 65535:
        raise InvalidPeerError(f"{what} {value} is outside 1-65535")
    return value


def parse_peer_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) to (host, port)."""
    text = (text or "").strip()
    match = re.match(r"^\[(?P<v6>[^\]]+)\]:(?P<port>\d+)$", text) or re.match(
        r"^(?P<host>[^:\s]+):(?P<port>\d+)$", text
    )
    if not match:
        raise InvalidPeerError(f"peer {text!r} is not HOST:PORT")
    host = match.groupdict().get("v6") or match.group("host")
    return host, validate_port(match.group("port"), "peer port")


@dataclass
class DicomPeer:
    """A remote DICOM node. TLS files are PEM paths; an empty CA file means the system's."""

    ae_title: str
    host: str
    port: int
    description: str = ""
    tls: bool = False
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_verify_hostname: bool = True

    def __post_init__(self) -> None:
        self.ae_title = validate_ae_title(self.ae_title, "peer AE title")
        if not (self.host or "").strip():
            raise InvalidPeerError("peer host is empty")
        self.host = self.host.strip()
        self.port = validate_port(self.port, "peer port")

    @classmethod
    def from_address(cls, address: str, ae_title: str, **kwargs) -> "DicomPeer":
        host, port = parse_peer_address(address)
        return cls(ae_title=ae_title, host=host, port=port, **kwargs)

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS or self.host.startswith("127.")

    def label(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DicomPeer":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def own_ae_title() -> str:
    return validate_ae_title(read_setting("dicom/ae_title") or "HEALTHFM", "own AE title (Settings)")


def own_storage_port() -> int:
    return validate_port(read_setting("dicom/storage_port") or 11112, "storage port (Settings)")


def scp_bind_address() -> str:
    """Where our storage SCP listens (Settings); loopback unless the user opens it up."""
    return read_setting("dicom/scp_bind_address").strip() or "127.0.0.1"


def allowed_calling_aets() -> list[str]:
    """Calling AE titles our storage SCP accepts (Settings); empty: any."""
    text = read_setting("dicom/allowed_calling_aets")
    return [validate_ae_title(t, "allowed calling AE title (Settings)") for t in text.replace(";", ",").split(",") if t.strip()]


def peers_path() -> Path:
    return user_data_dir() / "pacs_peers.json"


def load_peers(path: Path | None = None) -> list[DicomPeer]:
    """The saved peers; a damaged file gives an empty list, never a crash (it is rewritten on save)."""
    path = path or peers_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    peers = []
    for item in data.get("peers", []) if isinstance(data, dict) else []:
        try:
            peers.append(DicomPeer.from_dict(item))
        except (InvalidPeerError, TypeError):
            continue
    return peers


def save_peers(peers: list[DicomPeer], path: Path | None = None) -> None:
    atomic_write_text(path or peers_path(), json.dumps({"peers": [p.to_dict() for p in peers]}, indent=1))
