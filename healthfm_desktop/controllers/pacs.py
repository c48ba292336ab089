"""PACS controller: peers and the app's own DICOM identity, "Test connection", query, retrieve
(on a worker, per-instance progress, cancel), the C-STORE SCP, send, and the local study
database behind the study browser. Views talk to it in plain dicts and strings only."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from healthfm_desktop.controllers.workers import Job, relay_progress, run_job
from healthfm_desktop.core.config import read_setting
from healthfm_desktop.core.errors import UserFacingError
from healthfm_desktop.core.imaging import pacs
from healthfm_desktop.core.imaging.pacs.errors import InvalidPeerError
from healthfm_desktop.core.imaging.pacs.peers import (
    DicomPeer,
    allowed_calling_aets,
    load_peers,
    save_peers,
    scp_bind_address,
    validate_port,
)
from healthfm_desktop.core.storage.studies import (
    InstanceRecord,
    StudyDatabase,
    default_store_dir,
    open_study_database,
)

log = logging.getLogger(__name__)
CANCELLED = object()  # what a cancelled retrieval job returns


def peer_to_dict(peer: DicomPeer) -> dict:
    return peer.to_dict()


def _peer(data: dict) -> DicomPeer:
    return DicomPeer.from_dict(data)


class PacsController(QObject):
    message = Signal(str, str)  # level, text
    peers_changed = Signal(list)  # [peer dict]
    echo_finished = Signal(bool, str)  # ok, text ("success, round trip 3.1 ms" or why not)
    studies_found = Signal(list)  # [study dict]
    series_found = Signal(str, list)  # study uid, [series dict]
    query_failed = Signal(str)
    retrieve_progress = Signal(object, str)  # fraction or None, message
    retrieve_finished = Signal(bool, str)  # complete, summary (or why it stopped)
    busy_changed = Signal(bool)
    scp_state_changed = Signal(bool, str)  # running, text
    object_received = Signal(str)  # a SOP Instance UID filed by the C-STORE SCP (any thread)
    local_studies = Signal(list)  # [study dict] from a search of the local database
    local_problems = Signal(list)  # [(path, reason)]
    send_finished = Signal(bool, str)

    def __init__(self, images_controller=None, parent: QObject | None = None,
                 database: StudyDatabase | None = None, store_dir: Path | None = None):
        super().__init__(parent)
        self.images = images_controller
        self._database = database
        self.store_dir = Path(store_dir) if store_dir else default_store_dir()
        self._jobs: set[Job] = set()
        self._retrieval: Job | None = None
        self._scp = None  # a pacs.StorageSCP while receiving
        self.open_after_retrieve = True
        self._last_search: tuple = ("", "")
        # a pushed study arrives one object at a time: refresh the browser once per burst
        self._refresh_timer = QTimer(self, singleShot=True, interval=300)
        self._refresh_timer.timeout.connect(lambda: self.search_local(*self._last_search))
        self.object_received.connect(lambda _uid: self._local_changed())
        # the studies the last query listed (peer dict, calling AE title, study UIDs): the
        # viewer's find-similar searches their series too
        self._listed: tuple[dict, str, list[str]] | None = None
        self._listed_study_of: dict[str, str] = {}  # PACS series UID -> its study UID
        adaptation = getattr(images_controller, "adaptation", None)
        if adaptation is not None:
            adaptation.add_similar_source("pacs", self.similar_items, self.retrieve_similar, self.similar_scope)

    def load_networking(self) -> Job:
        """Import the DICOM networking stack on a worker (~0.4 s) so that the first Search,
        Test connection or storage SCP start does not pause the window."""
        return self._start(pacs.load_all)

    # --- identity and peers -----------------------------------------------------------
    def own_ae_title(self) -> str:
        return read_setting("dicom/ae_title") or "HEALTHFM"

    def storage_port(self) -> int:
        try:
            return validate_port(read_setting("dicom/storage_port") or 11112)
        except InvalidPeerError:
            return 11112

    def peers(self) -> list[dict]:
        return [peer_to_dict(p) for p in load_peers()]

    def save_peers(self, peers: list[dict]) -> bool:
        """Validate and save; a bad entry is reported and nothing is saved."""
        try:
            checked = [_peer(p) for p in peers]
        except (InvalidPeerError, TypeError) as exc:
            self.message.emit("error", f"Peer not saved: {exc}")
            return False
        save_peers(checked)
        self.peers_changed.emit([peer_to_dict(p) for p in checked])
        return True

    # --- jobs -------------------------------------------------------------------------
    def _start(self, func, *args, on_result=None, on_error=None, **kwargs) -> Job:
        was_busy = bool(self._jobs)
        job = run_job(func, *args, on_result=on_result,
                      on_error=on_error or (lambda text: self.message.emit("error", text)), parent=self, **kwargs)
        self._jobs.add(job)
        job.finished.connect(lambda job=job: self._done(job))
        if not was_busy:
            self.busy_changed.emit(True)
        return job

    def _done(self, job: Job) -> None:
        self._jobs.discard(job)
        if job is self._retrieval:
            self._retrieval = None
        if not self._jobs:
            self.busy_changed.emit(False)

    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    def database(self) -> StudyDatabase:
        if self._database is None:
            self._database, note = open_study_database()
            if note:
                self.message.emit("warning", note)
        return self._database

    # --- echo and query ---------------------------------------------------------------
    def test_connection(self, peer: dict) -> Job | None:
        try:
            target = _peer(peer)
        except (InvalidPeerError, TypeError) as exc:
            self.echo_finished.emit(False, str(exc))
            return None
        return self._start(
            lambda: pacs.echo(target, self.own_ae_title()),
            on_result=lambda result: self.echo_finished.emit(
                True, f"Success: round trip {result.round_trip_ms:.1f} ms "
                      f"(association {result.association_ms:.1f} ms)"),
            on_error=lambda text: self.echo_finished.emit(False, text),
        )

    def find(self, peer: dict, query: dict) -> Job | None:
        try:
            target = _peer(peer)
        except (UserFacingError, TypeError) as exc:
            self.query_failed.emit(str(exc))
            return None
        calling = self.own_ae_title()

        def work():  # the query fields are checked here too: a bad date is a clear message
            return pacs.find_studies(target, calling, pacs.StudyQuery(**{k: v or "" for k, v in query.items()}))

        def found(matches) -> None:
            self._listed = (dict(peer), calling, [m.study_uid for m in matches])
            self.studies_found.emit([{**m.to_json(), "accession_number": m.accession_number} for m in matches])

        return self._start(work, on_result=found, on_error=self.query_failed.emit)

    # --- find-similar over the listed studies -----------------------------------------
    def similar_items(self, skip: set[str]):
        """(worker) The middle slice of each image series of the studies the last query listed,
        but those open or stored (``skip``: series keys or UIDs), cached after the first C-GET."""
        from healthfm_desktop.core.foundation.datasets import Items
        from healthfm_desktop.core.foundation.stored import pacs_series
        from healthfm_desktop.core.paths import user_cache_dir

        listed = self._listed
        if listed is None:
            return Items("image")
        peer, calling, study_uids = listed
        return pacs_series(_peer(peer), calling, study_uids, user_cache_dir() / "pacs_similar",
                           skip={key.split("#")[0] for key in skip}, study_of=self._listed_study_of)

    def similar_scope(self) -> str:
        from healthfm_desktop.core.foundation.stored import PACS_SERIES_LIMIT

        if self._listed is None:
            return "PACS: none searched (search a PACS first: its listed studies are included)"
        peer, _calling, study_uids = self._listed
        return (f"PACS: the middle slice of each image series of the {len(study_uids)} "
                f"stud{'y' if len(study_uids) == 1 else 'ies'} listed from {_peer(peer).label()}, "
                f"at most {PACS_SERIES_LIMIT} series")

    def retrieve_similar(self, series_uid: str) -> Job | None:
        """Retrieve (and open) a PACS series that find-similar showed."""
        study_uid = self._listed_study_of.get(series_uid)
        if self._listed is None or study_uid is None:
            self.message.emit("warning", f"Series {series_uid} is no longer listed: search the PACS again.")
            return None
        return self.retrieve(self._listed[0], study_uid, series_uid)

    def find_series(self, peer: dict, study_uid: str) -> Job:
        return self._start(
            pacs.find_series, _peer(peer), self.own_ae_title(), study_uid,
            on_result=lambda matches: self.series_found.emit(study_uid, [
                {"series_uid": s.series_uid, "modality": s.modality, "description": s.description,
                 "number": s.number, "instances": s.instances} for s in matches]),
            on_error=self.query_failed.emit,
        )

    # --- retrieve ---------------------------------------------------------------------
    def retrieve(self, peer: dict, study_uid: str, series_uid: str = "", method: str = "C-GET") -> Job | None:
        if self._retrieval is not None:
            self.message.emit("warning", "A retrieval is already running.")
            return None
        try:
            target = _peer(peer)
        except (InvalidPeerError, TypeError) as exc:
            self.retrieve_finished.emit(False, str(exc))
            return None
        options = {"series_uid": series_uid}
        if method == "C-MOVE":
            if self._scp is not None:
                # our own SCP already listens on the storage port and files what arrives
                self.retrieve_finished.emit(False, "Stop the storage SCP in Settings first, or use C-GET: "
                                                   "C-MOVE needs the storage port for this retrieval.")
                return None
            options.update(move_destination=self.own_ae_title(), listen_port=self.storage_port())
        steps = relay_progress(pacs.retrieve_into_database(self.database(), target, self.own_ae_title(), study_uid,
                                                    self.store_dir, **options))
        cancel = threading.Event()

        def work():
            # Cancel is handled here, on the worker thread, rather than by abandoning the
            # generator: closing it aborts the association and indexes what arrived, now.
            while True:
                if cancel.is_set():
                    steps.close()
                    return CANCELLED
                try:
                    step = next(steps)
                except StopIteration as stop:
                    return stop.value
                yield step

        def finished(result) -> None:
            if result is CANCELLED:
                self._on_retrieve_cancelled()
            else:
                self._on_retrieved(result)

        job = self._start(work, on_result=finished, on_error=self._on_retrieve_failed)
        job.progress.connect(lambda p: self.retrieve_progress.emit(p.fraction, p.message))
        job.cancel_event = cancel
        self._retrieval = job
        return job

    def cancel_retrieve(self) -> None:
        if self._retrieval is not None:
            self._retrieval.cancel_event.set()

    def _on_retrieved(self, result) -> None:
        self.retrieve_finished.emit(True, result.summary())
        self._local_changed()
        if self.open_after_retrieve and self.images is not None and result.paths:
            self.images.open_paths(sorted({p.parent for p in result.paths}))

    def _on_retrieve_failed(self, text: str) -> None:
        self.retrieve_finished.emit(False, text)
        self._local_changed()

    def _on_retrieve_cancelled(self) -> None:
        self.retrieve_finished.emit(False, "Retrieval cancelled; the instances that arrived are kept.")
        self._local_changed()

    # --- storage SCP ------------------------------------------------------------------
    @property
    def scp_running(self) -> bool:
        return self._scp is not None

    def start_storage_scp(self, bind_address: str | None = None) -> bool:
        if self._scp is not None:
            return True
        database = self.database()

        def filed(item) -> None:  # on a pynetdicom server thread; the SCP has indexed it
            self.object_received.emit(item.record.sop_uid)

        def refused(reason: str) -> None:
            self.message.emit("warning", f"Received object refused: {reason}")

        try:
            self._scp = pacs.StorageSCP(
                self.own_ae_title(), self.storage_port(), self.store_dir,
                bind_address=bind_address if bind_address is not None else scp_bind_address(),
                allowed_calling_aets=allowed_calling_aets(), database=database,
                on_filed=filed, on_rejected=refused).start()
        except UserFacingError as exc:
            self._scp = None
            self.scp_state_changed.emit(False, str(exc))
            return False
        log.info("storage SCP started")
        self.scp_state_changed.emit(True, f"Receiving as {self._scp.ae_title} on port {self._scp.port}")
        return True

    def stop_storage_scp(self) -> None:
        if self._scp is not None:
            scp, self._scp = self._scp, None
            scp.stop()
            log.info("storage SCP stopped")
        self.scp_state_changed.emit(False, "Not receiving")

    # --- local study database ---------------------------------------------------------
    def search_local(self, text: str = "", modality: str = "") -> Job:
        self._last_search = (text, modality)
        database = self.database()
        return self._start(
            database.search, text, modality,
            on_result=lambda rows: self.local_studies.emit([row.__dict__ for row in rows]),
        )

    def _local_changed(self) -> None:
        self._refresh_timer.start()

    def index_paths(self, paths: list[Path]) -> Job:
        """Add files or folders (drag-drop, import) to the local database."""
        database = self.database()

        def done(report) -> None:
            self.message.emit("info", f"Study database: {report.summary()}")
            self._local_changed()

        return self._start(database.index_files, [Path(p) for p in paths], on_result=done)

    def index_opened_series(self, series_list: list) -> Job | None:
        """Index what the Images workspace opened (drop, File > Open) from the headers it has
        already read; objects inside zip archives have no file of their own and are skipped."""
        instances = {}
        for series in series_list:
            for frame in series.frames:
                instance = frame.instance
                if not instance.source.in_archive:
                    instances[instance.sop_instance_uid] = instance
        if not instances:
            return None
        database = self.database()

        def work():
            records = []
            for instance in instances.values():
                try:
                    records.append(InstanceRecord.from_dataset(instance.header, instance.source.path))
                except (UserFacingError, OSError, ValueError, TypeError):
                    continue  # deleted since, or without the UIDs the database needs
            return database.add_instances(records)

        return self._start(work, on_result=lambda report: self._local_changed() if report.added else None)

    def open_local_study(self, study_uid: str) -> Job:
        database = self.database()

        def opened(paths: list[Path]) -> None:
            existing = [p for p in paths if p.exists()]
            if len(existing) < len(paths):
                self.message.emit("warning", f"{len(paths) - len(existing)} file(s) of this study are missing; "
                                             "use Verify files to see which.")
            if existing and self.images is not None:
                self.images.open_paths(existing)

        return self._start(database.instance_paths, study_uid, on_result=opened)

    def verify_local(self, study_uid: str | None = None) -> Job:
        database = self.database()
        return self._start(database.verify, study_uid,
                           on_result=lambda problems: self.local_problems.emit([(p.path, p.reason) for p in problems]))

    def remove_local_study(self, study_uid: str) -> Job:
        database = self.database()
        return self._start(database.remove_study, study_uid, on_result=lambda _: self._local_changed())

    def send_study(self, peer: dict, study_uid: str) -> Job | None:
        try:
            target = _peer(peer)
        except (InvalidPeerError, TypeError) as exc:
            self.send_finished.emit(False, str(exc))
            return None
        paths = self.database().instance_paths(study_uid)

        def work():
            return (yield from relay_progress(pacs.send(target, self.own_ae_title(), paths)))

        job = self._start(work, on_result=lambda result: self.send_finished.emit(True, result.summary()),
                          on_error=lambda text: self.send_finished.emit(False, text))
        job.progress.connect(lambda p: self.retrieve_progress.emit(p.fraction, p.message))
        return job

    def shutdown(self) -> None:
        """On close: stop receiving, cancel work, close the database."""
        self.stop_storage_scp()
        self.cancel_retrieve()
        for job in list(self._jobs):
            if job is not self._retrieval:
                job.cancel()
