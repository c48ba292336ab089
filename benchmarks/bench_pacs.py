"""Retrieval throughput from a loopback Orthanc: our C-GET against DCMTK's getscu on the same
study, in the same run, each repeated and the median taken.

    python benchmarks/bench_pacs.py [/path/to/CT_series_folder] [--repeats 3]

Two cases: the study as given (e.g. JPEG-LS: we receive it as stored, getscu can only
negotiate one syntax per SOP class so Orthanc transcodes it to uncompressed for getscu), and
the same study decompressed beforehand (both sides receive identical uncompressed bytes; the
fair test of the network stack). Orthanc and getscu both run with TCP_NODELAY=1, DCMTK's
fastest setting (we set TCP_NODELAY on our sockets too). Needs the `Orthanc` and `getscu` binaries (apt: orthanc, dcmtk).
Prints ``<what>: <ratio>x getscu (<ours> vs <getscu>)`` where ratio = our throughput / getscu's.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from healthfm_desktop.core.imaging.pacs import DicomPeer, retrieve, run_to_end  # noqa: E402
from tests.orthanc import OrthancServer  # noqa: E402

OUR_AET, GETSCU_AET = "HEALTHFM", "GETSCU"
DEFAULT_SERIES = REPO / "tests" / "data" / "dicom" / "series" / "CT_head_phantom_philips_1mm_20sl"


def decompressed_copy(source: Path, target: Path) -> None:
    import pydicom

    target.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(sorted(p for p in source.rglob("*") if p.is_file())):
        ds = pydicom.dcmread(path)
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()
        ds.save_as(target / f"{index:05d}.dcm", enforce_file_format=True)


CPU = {"ours": [], "getscu": []}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_getscu(orthanc: OrthancServer, study_uid: str, out: Path) -> float:
    out.mkdir(parents=True)
    cpu = _children_cpu()
    started = time.perf_counter()
    subprocess.run(
        ["getscu", "-S", "+xt", "-aet", GETSCU_AET, "-aec", orthanc.aet, orthanc.host, str(orthanc.dicom_port),
         "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}", "-od", str(out)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        # DCMTK's fastest setting: without it every DIMSE message waits on a delayed ACK
        env=dict(os.environ, TCP_NODELAY="1"),
    )
    seconds = time.perf_counter() - started
    CPU["getscu"].append(_children_cpu() - cpu)
    return seconds


def run_ours(orthanc: OrthancServer, study_uid: str, out: Path) -> tuple[float, dict]:
    peer = DicomPeer(orthanc.aet, orthanc.host, orthanc.dicom_port)
    cpu = time.process_time()
    started = time.perf_counter()
    result = run_to_end(retrieve(peer, OUR_AET, study_uid, out))
    seconds = time.perf_counter() - started
    CPU["ours"].append(time.process_time() - cpu)
    return seconds, result.transfer_syntaxes


def bench_case(label: str, folder: Path, repeats: int, scratch: Path) -> None:
    with OrthancServer(modalities={"ours": (OUR_AET, 1), "getscu": (GETSCU_AET, 1)}) as orthanc:
        orthanc.upload_folder(folder)
        studies = orthanc.rest("GET", "/studies?expand")
        if len(studies) != 1:
            raise SystemExit(f"{folder}: expected one study, found {len(studies)}")
        study_uid = studies[0]["MainDicomTags"]["StudyInstanceUID"]
        count = orthanc.instance_count()
        ours, theirs, syntaxes = [], [], {}
        CPU["ours"].clear()
        CPU["getscu"].clear()
        for repeat in range(repeats):
            for name in ("getscu", "ours") if repeat % 2 == 0 else ("ours", "getscu"):
                out = scratch / f"{name}-{repeat}"
                if name == "getscu":
                    theirs.append(run_getscu(orthanc, study_uid, out))
                    received = sum(1 for p in out.iterdir() if p.is_file())
                else:
                    seconds, syntaxes = run_ours(orthanc, study_uid, out)
                    ours.append(seconds)
                    received = sum(1 for p in out.rglob("*.dcm"))
                if received != count:
                    raise SystemExit(f"{name} received {received} of {count} instances")
                shutil.rmtree(out)
        if os.environ.get("BENCH_VERBOSE"):
            print(f"  runs: ours {[round(x, 2) for x in ours]}, getscu {[round(x, 2) for x in theirs]}")
        ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
        print(f"pacs C-GET {count}-instance study, {label} (ours received {syntaxes}): "
              f"{theirs_s / ours_s:.2f}x getscu ({ours_s:.2f} s vs {theirs_s:.2f} s, median of {repeats})")
        print(f"  client CPU per retrieval (Orthanc not counted): ours {statistics.median(CPU['ours']):.2f} s, "
              f"getscu {statistics.median(CPU['getscu']):.2f} s; load average {os.getloadavg()[0]:.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("series", type=Path, nargs="?", default=DEFAULT_SERIES,
                        help="folder of one DICOM study (the issue's figure: the 140-slice CT of the shared "
                             "data); default: the 20-slice CT in tests/data")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for tool, package in (("getscu", "dcmtk"), ("Orthanc", "orthanc")):
        if shutil.which(tool) is None and not (tool == "Orthanc" and Path("/usr/sbin/Orthanc").is_file()):
            raise SystemExit(f"{tool} not found (apt-get install {package})")
    if not args.series.is_dir():
        raise SystemExit(f"{args.series}: not a folder")
    with tempfile.TemporaryDirectory(prefix="bench-pacs-") as tmp:
        scratch = Path(tmp)
        bench_case("as stored", args.series, args.repeats, scratch)
        uncompressed = scratch / "uncompressed"
        decompressed_copy(args.series, uncompressed)
        bench_case("decompressed beforehand", uncompressed, args.repeats, scratch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
