"""`healthfm pacs echo|find|get|listen` (CLI.md): DICOM networking with the peer given on the
command line, and our own storage SCP. One line per result; failures are one clear line on
stderr and exit 1."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from healthfm_desktop.batch.output import emit_json
from healthfm_desktop.core.imaging.pacs import (
    DicomPeer,
    IncompleteRetrievalError,
    InvalidPeerError,
    InvalidQueryError,
    StudyQuery,
    echo as echo_peer,
    find_studies,
    load_peers,
    own_ae_title,
    own_storage_port,
    retrieve,
)
from healthfm_desktop.core.imaging.pacs.peers import validate_ae_title, validate_port

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _usage(command: str, message: str) -> int:
    print(f"healthfm pacs {command}: {message}", file=sys.stderr)
    return EXIT_USAGE


def _peer_and_aet(args) -> tuple[DicomPeer, str]:
    """The peer from the command line; its TLS settings come from the same peer saved in
    Settings (same AE title, host and port), as the contract has no TLS options."""
    peer = DicomPeer.from_address(args.peer, args.called_aet)
    for saved in load_peers():
        if (saved.ae_title, saved.host, saved.port) == (peer.ae_title, peer.host, peer.port):
            peer = saved
            break
    calling = args.calling_aet if args.calling_aet else own_ae_title()
    return peer, validate_ae_title(calling, "calling AE title")


def echo(args) -> int:
    try:
        peer, calling = _peer_and_aet(args)
    except InvalidPeerError as exc:
        return _usage("echo", str(exc))
    print(echo_peer(peer, calling).summary())
    return EXIT_OK


def find(args) -> int:
    try:
        peer, calling = _peer_and_aet(args)
        query = StudyQuery(
            patient_id=args.patient_id or "",
            patient_name=args.patient_name or "",
            modality=args.modality or "",
            study_date=args.study_date or "",
        )
        query.identifier()  # validate before connecting
    except (InvalidPeerError, InvalidQueryError) as exc:
        return _usage("find", str(exc))
    matches = find_studies(peer, calling, query)
    for match in matches:
        if args.json:
            emit_json(match.to_json())
        else:
            counts = f"{match.series if match.series is not None else '?'} series, " \
                     f"{match.instances if match.instances is not None else '?'} instances"
            print("\t".join([match.study_date or "-", match.patient_id or "-", match.patient_name or "-",
                             ",".join(match.modalities) or "-", counts, match.description or "-", match.study_uid]))
    if not args.json:
        print(f"{len(matches)} {'study' if len(matches) == 1 else 'studies'}", file=sys.stderr)
    return EXIT_OK


def get(args) -> int:
    try:
        peer, calling = _peer_and_aet(args)
        if args.listen_port is not None and not args.move_dest:
            return _usage("get", "--listen-port only applies with --move-dest")
        listen_port = None
        if args.move_dest:
            listen_port = args.listen_port if args.listen_port is not None else own_storage_port()
            validate_port(listen_port, "--listen-port")
            validate_ae_title(args.move_dest, "--move-dest")
    except InvalidPeerError as exc:
        return _usage("get", str(exc))
    steps = retrieve(peer, calling, args.study_uid, Path(args.out),
                     move_destination=args.move_dest or "", listen_port=listen_port)
    tty = sys.stderr.isatty()
    try:
        while True:
            try:
                progress = next(steps)
            except StopIteration as stop:
                result = stop.value
                break
            if tty:
                sys.stderr.write(f"\r{progress.message}")
                sys.stderr.flush()
    except IncompleteRetrievalError as exc:
        if tty:
            sys.stderr.write("\n")
        print(exc.result.summary())
        print(f"healthfm pacs get: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        steps.close()  # Ctrl-C: abort the association instead of leaving it to the peer's timeout
    if tty:
        sys.stderr.write("\n")
    print(result.summary())
    return EXIT_OK


def listen(args) -> int:
    """Receive objects until SIGINT/SIGTERM: filed under --out and indexed in the local study
    database. Exit 0, or 1 when an object was refused (each is reported on stderr)."""
    from healthfm_desktop.core.imaging.pacs.storage_scp import DEFAULT_BIND_ADDRESS, StorageSCP
    from healthfm_desktop.core.storage.studies import open_study_database

    try:
        port = validate_port(args.port, "--port")
        aet = validate_ae_title(args.aet, "--aet") if args.aet else own_ae_title()
        allowed = [validate_ae_title(t, "--allow-calling-aet") for t in args.allow_calling_aet]
    except InvalidPeerError as exc:
        return _usage("listen", str(exc))
    database, note = open_study_database()
    if note:
        print(f"healthfm pacs listen: {note}", file=sys.stderr)
    printing = threading.Lock()
    refused = [0]

    def outcome(result) -> None:  # on a server thread
        with printing:
            if result.status != 0:
                refused[0] += 1
                print(f"{result.sop_instance_uid or '(no SOP Instance UID)'}: {result.reason}", file=sys.stderr, flush=True)
            if args.json:
                emit_json(result.to_json())
            elif result.path:
                print(f"stored {result.sop_instance_uid} from {result.calling_aet} -> {result.path}", flush=True)

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    bind = args.bind if args.bind is not None else DEFAULT_BIND_ADDRESS
    scp = StorageSCP(aet, port, Path(args.out), bind_address=bind, allowed_calling_aets=allowed,
                     database=database, on_outcome=outcome)
    try:
        scp.start()
        print(f"healthfm pacs listen: receiving as {aet} on {bind or 'all interfaces'} port {port}"
              + (f", from {', '.join(allowed)} only" if allowed else "") + " (Ctrl-C to stop)", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        scp.stop()
        database.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"healthfm pacs listen: {scp.received} stored, {scp.rejected} refused", file=sys.stderr)
    return EXIT_FAILED if refused[0] else EXIT_OK
