"""C-STORE SCU: send files to a peer exactly as stored (no transcoding), with progress per
file; a file the peer refuses is reported and the rest go on."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pynetdicom.status import code_to_category

from healthfm_desktop.core.errors import UnreadableFileError
from healthfm_desktop.core.imaging.pacs.association import Timeouts, no_response_error, open_association
from healthfm_desktop.core.imaging.pacs.contexts import MAX_CONTEXTS, store_contexts
from healthfm_desktop.core.imaging.pacs.errors import PacsError
from healthfm_desktop.core.imaging.pacs.peers import DicomPeer
from healthfm_desktop.core.storage.studies import read_instance_record


@dataclass(frozen=True)
class SendProgress:
    done: int
    total: int

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    @property
    def message(self) -> str:
        return f"{self.done} of {self.total} files sent"


@dataclass
class SendResult:
    peer: str
    sent: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        line = f"C-STORE to {self.peer}: {len(self.sent)} sent"
        if self.failed:
            line += f", {len(self.failed)} not sent ({self.failed[0][0].name}: {self.failed[0][1]})"
        return line + f" in {self.seconds:.2f} s"


class IncompleteSendError(PacsError):
    def __init__(self, message: str, result: SendResult):
        super().__init__(message)
        self.result = result


def send(
    peer: DicomPeer, calling_aet: str, paths: Iterable[Path | str], timeouts: Timeouts | None = None
) -> Generator[SendProgress, None, SendResult]:
    timeouts = timeouts or Timeouts()
    started = time.monotonic()
    result = SendResult(peer.label())
    files: list[tuple[Path, str, str]] = []
    for path in map(Path, paths):
        try:
            record = read_instance_record(path)
        except UnreadableFileError as exc:
            result.failed.append((path, str(exc)))
            continue
        if not record.sop_class or not record.transfer_syntax:
            result.failed.append((path, "no SOP class or transfer syntax in the file meta"))
            continue
        files.append((path, record.sop_class, record.transfer_syntax))
    total = len(files)
    done = 0
    # one association per batch of at most 128 (SOP class, transfer syntax) pairs
    while files:
        pairs: list[tuple[str, str]] = []
        batch, rest = [], []
        for item in files:
            pair = (item[1], item[2])
            if pair in pairs or len(pairs) < MAX_CONTEXTS:
                if pair not in pairs:
                    pairs.append(pair)
                batch.append(item)
            else:
                rest.append(item)
        files = rest
        with open_association(peer, calling_aet, store_contexts(pairs), timeouts=timeouts) as assoc:
            accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
            for index, (path, sop_class, syntax) in enumerate(batch):
                if (sop_class, syntax) not in accepted:
                    result.failed.append((path, f"the peer does not accept this object type in {syntax}"))
                else:
                    sent_at = time.monotonic()
                    try:
                        status = assoc.send_c_store(path)
                    except (OSError, ValueError) as exc:
                        result.failed.append((path, f"cannot send: {exc}"))
                        status = None
                    if status is not None:
                        if "Status" not in status:
                            error = no_response_error(assoc, peer, calling_aet, sent_at, timeouts, "C-STORE")
                            result.failed.extend((p, "not sent: " + str(error)) for p, _, _ in batch[index:])
                            result.seconds = time.monotonic() - started
                            raise IncompleteSendError(f"{error}; {result.summary()}", result)
                        if code_to_category(status.Status) in ("Success", "Warning"):
                            result.sent.append(path)
                        else:
                            result.failed.append((path, f"refused by the peer (status 0x{status.Status:04X})"))
                done += 1
                yield SendProgress(done, total)
    result.seconds = time.monotonic() - started
    if result.failed:
        raise IncompleteSendError(result.summary(), result)
    return result
