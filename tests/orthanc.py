"""A real Orthanc PACS for the PACS tests and benchmark: started on loopback ports with a
temporary configuration, loaded through its REST API, stopped at the end.

Debian/Ubuntu: ``apt-get install orthanc`` provides the ``Orthanc`` binary (1.10 on Debian 12).
Nothing here talks to any address other than 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

LOOPBACK = "127.0.0.1"


def orthanc_binary() -> str | None:
    return shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").is_file() else None)


def needs_orthanc():
    """The PACS tests' mark: skipped on a developer's machine without Orthanc, but never in CI
    (CI=true), where scripts/system-deps.sh installs it: there a missing binary fails every PACS
    test instead of silently skipping them."""
    import pytest

    if orthanc_binary() is None and os.environ.get("CI"):
        return pytest.mark.usefixtures("_orthanc_missing_in_ci")
    return pytest.mark.skipif(orthanc_binary() is None, reason="the Orthanc binary is not installed (apt-get install orthanc)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


class OrthancServer:
    """One Orthanc process with its own storage folder, DICOM and HTTP ports on 127.0.0.1.

    ``modalities`` maps a name to (AE title, port) of our own SCPs (C-MOVE destinations and
    the callers it lets query/retrieve, since DicomAlwaysAllowFind/Get/Move stay false).
    """

    def __init__(self, aet: str = "ORTHANC", modalities: dict[str, tuple[str, int]] | None = None,
                 workdir: Path | None = None, extra_config: dict | None = None, no_delay: bool = True):
        binary = orthanc_binary()
        if binary is None:
            raise FileNotFoundError("the Orthanc binary is not installed (apt-get install orthanc)")
        self.binary = binary
        self.aet = aet
        self.host = LOOPBACK
        self.dicom_port = free_port()
        self.http_port = free_port()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="orthanc-test-"))
        self.modalities = dict(modalities or {})
        self.extra_config = dict(extra_config or {})
        self.process: subprocess.Popen | None = None
        # DCMTK (inside Orthanc) leaves Nagle's algorithm on unless TCP_NODELAY is set; with it
        # on, each small DIMSE write waits for a delayed ACK (~40 ms per message)
        self.no_delay = no_delay

    # --- lifecycle -----------------------------------------------------------------------
    def config(self) -> dict:
        storage = self.workdir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "healthfm-test",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "StorageCompression": False,
            "Plugins": [],
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,
            "DicomCheckModalityHost": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomModalities": {name: [aet, LOOPBACK, port] for name, (aet, port) in self.modalities.items()},
            "DicomScuTimeout": 10,
            "DicomScpTimeout": 30,
            "SaveJobs": False,
            "StableAge": 1,
            "HttpDescribeErrors": True,
        }
        config.update(self.extra_config)
        return config

    def start(self, timeout: float = 30.0) -> "OrthancServer":
        config_path = self.workdir / "orthanc.json"
        config_path.write_text(json.dumps(self.config(), indent=1), encoding="utf-8")
        self.log_path = self.workdir / "orthanc.log"
        log = open(self.log_path, "wb")
        env = dict(os.environ, TCP_NODELAY="1" if self.no_delay else "0")
        self.process = subprocess.Popen([self.binary, str(config_path)], stdout=log, stderr=subprocess.STDOUT,
                                        cwd=self.workdir, start_new_session=True, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited at start (code {self.process.returncode}): "
                                   + self.log_path.read_text(errors="replace")[-2000:])
            try:
                self.rest("GET", "/system")
                if self._dicom_port_open():
                    return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("Orthanc did not start in time")

    def _dicom_port_open(self) -> bool:
        try:
            with socket.create_connection((LOOPBACK, self.dicom_port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.resume()
            if self._own_workdir:
                # a throwaway server: no need for Orthanc's 2-second graceful shutdown
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def kill(self) -> None:
        """Die at once (SIGKILL): the peer vanishes mid-association."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)

    def freeze(self) -> None:
        """Stop answering (SIGSTOP) while the kernel still accepts connections: a hung peer."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)

    def __enter__(self) -> "OrthancServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- REST ----------------------------------------------------------------------------
    def rest(self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json"):
        request = urllib.request.Request(f"http://{LOOPBACK}:{self.http_port}{path}", data=body, method=method)
        if body is not None:
            request.add_header("Content-Type", content_type)
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = response.read()
        return json.loads(payload) if payload else None

    def upload(self, paths: Iterable[Path]) -> list[dict]:
        """POST each file to /instances; returns Orthanc's answers."""
        answers = []
        for path in paths:
            answers.append(self.rest("POST", "/instances", Path(path).read_bytes(), "application/dicom"))
        return answers

    def upload_folder(self, folder: Path) -> list[dict]:
        """Every file under ``folder`` except DICOMDIRs (a media index, not an object to store)."""
        return self.upload(sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name != "DICOMDIR"))

    def instance_count(self) -> int:
        return int(self.rest("GET", "/statistics")["CountInstances"])

    def add_modality(self, name: str, aet: str, port: int) -> None:
        self.rest("PUT", f"/modalities/{name}", json.dumps({"AET": aet, "Host": LOOPBACK, "Port": port}).encode())


SAMPLE_DICOM = Path(__file__).resolve().parent / "data" / "dicom"
SAMPLE_CT_SERIES = SAMPLE_DICOM / "series" / "CT_head_phantom_philips_1mm_20sl"


def orthanc_with_samples():
    """A running Orthanc holding the 20-slice CT series and the DICOMDIR set, that knows the
    app as modality HEALTHFM on a free port: the PACS GUI tests' module fixture."""
    server = OrthancServer(modalities={"healthfm": ("HEALTHFM", free_port())})
    with server:
        server.upload_folder(SAMPLE_CT_SERIES)
        server.upload_folder(SAMPLE_DICOM / "dicomdir")
        yield server
