"""What running the batch commands on a Dask cluster costs and gains, in one run, on this machine.

    python benchmarks/bench_cluster.py [--library FILE] [--molecules N] [--scaling N] [--files 100] [--repeat 2]
                                       [--only-scaling] [--full-library [--rows N]]

- per-task overhead: the same small task run locally and on a warm 2-worker LocalCluster
  (``cluster.run_in_order``), per task in ms; and a no-op task's round trip.
- overhead, small job: `images classify` of ``--files`` real images (the repo's PneumoniaMNIST
  test images, copied under distinct names), the local command vs ``--scheduler`` on a
  2-worker LocalCluster (processes, loopback), both in this process, outputs checked equal.
- overhead, large job: `molecules describe --out CSV` of ``--molecules`` records of
  ``--library`` (default: MOSES part 1 from the shared data, else the repo's 10k subset), the
  local command (which already uses every core through its process pool) vs ``--scheduler``;
  the CSVs are checked byte-identical first.
- scaling: work per worker held constant (``--scaling`` molecules per worker), a 1-worker vs a
  2-worker LocalCluster; the throughput ratio (2 workers / 1 worker; ideal 2.0).
- on paper: the shard arithmetic for 100 M compounds on 50 workers, from the measured rates.
- ``--full-library``: the whole 1.94 M MOSES library (the five shared parts as one CSV) indexed
  by the local command and by ``--scheduler`` on a 2-worker LocalCluster (shards of the default
  size), the same top-100 and threshold searches over both indexes checked equal; the ratio and
  the per-task overhead. (Substructure equality over shards is the cluster tests' part: the first
  substructure search builds those data, hours for 1.94 M on 2 cores.)

Prints `<what>: <ratio>x <baseline> (<ours> vs <baseline>)` lines and the load average (other
work on this 2-core machine moves every ratio)."""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from healthfm_desktop import cli  # noqa: E402
from healthfm_desktop.core import cluster  # noqa: E402
from healthfm_desktop.core.chemistry.sharded_index import SHARD_SIZE  # noqa: E402  (before the run changes it)

SHARED_MOSES = REPO.parent / "shared" / "data" / "molecules" / "library" / "moses_part01.csv.gz"
REPO_MOSES = REPO / "tests" / "data" / "molecules" / "moses_subset_10k.csv.gz"


def _load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _run(*argv) -> tuple[float, str]:
    """Seconds and stdout of one `healthfm` command run in this process."""
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = cli.main([str(a) for a in argv])
    seconds = time.perf_counter() - start
    if code not in (0, 1):
        raise SystemExit(f"healthfm {' '.join(map(str, argv))} exited {code}")
    return seconds, out.getvalue()


def _molecules(source: Path, n: int, folder: Path, name: str) -> Path:
    opener = gzip.open if source.suffix == ".gz" else open
    with opener(source, "rt", encoding="utf-8") as handle:
        header = handle.readline()
        lines = [line for _, line in zip(range(n), handle)]
    while len(lines) < n:  # the repo's subset repeated when the shared data is absent
        lines += lines[: n - len(lines)]
    path = folder / name
    path.write_text(header + "".join(lines), encoding="utf-8")
    return path


def _cluster(workers: int):
    from distributed import LocalCluster

    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                        dashboard_address=":0", silence_logs=50)


def _warm(address: str) -> None:
    """Import the chemistry and the models on every worker once (a long-running cluster has)."""
    from healthfm_desktop.batch.molecules import describe_chunk
    from healthfm_desktop.core.chemistry.reading import read_molecules

    records = list(read_molecules(REPO / "resources" / "samples" / "molecules" / "approved_drugs.csv", parse=False))
    client = cluster.connect(address)
    try:
        client.run(lambda: describe_chunk(records))
    finally:
        client.close()


def per_task_overhead(address: str) -> None:
    """What one task costs beyond its work: a no-op task's round trip, one at a time (latency)
    and pipelined (what a batch command pays per task)."""
    client = cluster.connect(address)
    try:
        list(cluster.run_in_order(client, abs, list(range(-50, 0))))  # warm
        start = time.perf_counter()
        list(cluster.run_in_order(client, abs, list(range(-200, 0)), window=1))
        latency_s = (time.perf_counter() - start) / 200
        start = time.perf_counter()
        list(cluster.run_in_order(client, abs, list(range(-1000, 0))))
        pipelined_s = (time.perf_counter() - start) / 1000
    finally:
        client.close()
    print(f"per-task overhead: {pipelined_s * 1000:.2f} ms per task pipelined (1,000 no-op tasks, "
          f"four per worker thread in flight), {latency_s * 1000:.2f} ms one at a time (200 tasks)")


def small_job(address: str, files: int, folder: Path) -> None:
    images = sorted((REPO / "tests" / "data" / "images").glob("pneumoniamnist_*.png"))
    inputs = folder / "images"
    inputs.mkdir()
    for i in range(files):
        shutil.copy(images[i % len(images)], inputs / f"{i:03d}_{images[i % len(images)].name}")
    local_s, local_out = _run("images", "classify", inputs, "--json")
    remote_s, remote_out = _run("images", "classify", inputs, "--json", "--scheduler", address)
    assert remote_out == local_out and len(local_out.splitlines()) == files
    print(f"small job, images classify of {files} files: {local_s / remote_s:.2f}x the local command "
          f"(2-worker cluster {remote_s:.2f} s vs local {local_s:.2f} s; {(remote_s - local_s) / files * 1000:+.1f} ms per file)")


def large_job(address: str, library: Path, n: int, folder: Path) -> None:
    path = _molecules(library, n, folder, "large.csv")
    local_csv, remote_csv = folder / "local.csv", folder / "remote.csv"
    local_s, _ = _run("molecules", "describe", path, "--out", local_csv)
    remote_s, _ = _run("molecules", "describe", path, "--out", remote_csv, "--scheduler", address)
    assert remote_csv.read_bytes() == local_csv.read_bytes()
    from healthfm_desktop.batch.molecules import _CLUSTER_CHUNK

    tasks = -(-n // _CLUSTER_CHUNK)
    print(f"large job, molecules describe of {n:,} records ({library.name}): {local_s / remote_s:.2f}x the local command "
          f"(2-worker cluster {remote_s:.1f} s vs local, all cores, {local_s:.1f} s; {tasks} tasks, "
          f"{(remote_s - local_s) / tasks * 1000:+.0f} ms per task)")


def _worker_cpu(client) -> float:
    """CPU seconds (user + system) used so far by every worker process of the cluster."""
    import resource

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    return sum(client.run(cpu).values())


def scaling(library: Path, per_worker: int, folder: Path, repeat: int = 2,
            tasks_per_worker: int = 16) -> tuple[float, float]:
    """Molecules described per second with 1 and 2 workers, each worker given ``per_worker``
    (in ``tasks_per_worker`` tasks each: the last task's wait for the
    other worker is short), alternating 1, 2, 1, 2 (medians). Also the CPU efficiency: the
    workers' CPU seconds during the run over (wall x workers); under 1 means the workers
    waited (for the client, for other work on the machine, for tasks), not that they were slow."""
    import statistics

    from healthfm_desktop.batch import molecules

    molecules._CLUSTER_CHUNK = max(1, per_worker // tasks_per_worker)
    rates: dict[int, list[float]] = {1: [], 2: []}
    efficiency: dict[int, list[float]] = {1: [], 2: []}
    clusters = {workers: _cluster(workers) for workers in (1, 2)}
    try:
        for workers, local in clusters.items():
            _warm(local.scheduler_address)
        for _ in range(repeat):
            for workers, local in clusters.items():
                path = _molecules(library, per_worker * workers, folder, f"scaling_{workers}.csv")
                client = cluster.connect(local.scheduler_address)
                try:
                    before = _worker_cpu(client)
                    seconds, _ = _run("molecules", "describe", path, "--out", folder / f"scaling_{workers}.out.csv",
                                      "--scheduler", local.scheduler_address)
                    used = _worker_cpu(client) - before
                finally:
                    client.close()
                rates[workers].append(per_worker * workers / seconds)
                efficiency[workers].append(used / (seconds * workers))
    finally:
        for local in clusters.values():
            local.close()
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    print(f"scaling, molecules describe, {per_worker:,} molecules per worker: {two / one:.2f}x throughput "
          f"with 2 workers vs 1 ({two:,.0f} vs {one:,.0f} molecules/s; ideal 2.00x; runs "
          f"{', '.join(f'{r:,.0f}' for r in rates[1])} / {', '.join(f'{r:,.0f}' for r in rates[2])}); "
          f"CPU efficiency (worker CPU s / wall / workers) {statistics.median(efficiency[1]):.2f} with 1, "
          f"{statistics.median(efficiency[2]):.2f} with 2; {_load()}")
    return one, two


def index_rates(address: str, library: Path, n: int, folder: Path) -> tuple[float, float]:
    """(molecules indexed per second per worker, seconds to search one shard) on the cluster."""
    from healthfm_desktop.core.chemistry import sharded_index

    path = _molecules(library, n, folder, "index.csv")
    sharded_index.SHARD_SIZE = max(1000, n // 4)  # 4 shards here; SHARD_SIZE (default) on paper
    start = time.perf_counter()
    _run("molecules", "index", path, "--out", folder / "sharded", "--scheduler", address)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    _run("molecules", "index", path, "--out", folder / "one")
    one_s = time.perf_counter() - start
    query = ("--similar", "CC(C)Cc1ccc(cc1)C(C)C(=O)O", "--top", "100", "--json")
    searches = []
    for _ in range(3):
        start = time.perf_counter()
        _, sharded_hits = _run("molecules", "search", folder / "sharded", *query, "--scheduler", address)
        searches.append(time.perf_counter() - start)
    _, one_hits = _run("molecules", "search", folder / "one", *query)
    assert sharded_hits == one_hits
    shards = 4
    print(f"sharded index of {n:,} molecules: built in {build_s:.1f} s on 2 workers ({shards} shards) vs {one_s:.1f} s "
          f"on one machine (all cores); top-100 search over the shards on the cluster {min(searches) * 1000:.0f} ms, "
          f"same hits as the one-machine index")
    # a shard search costs about its share of the index: scaled to a default-size shard on paper
    return n / build_s / 2, min(searches) / shards * SHARD_SIZE / (n / shards)


def full_library(library: Path, folder: Path, rows: int | None = None) -> None:
    """The 1.94 M-molecule run: `molecules index` of the whole MOSES library, local vs cluster."""
    from healthfm_desktop.core.chemistry import sharded_index

    parts = sorted(library.parent.glob("moses_part*.csv.gz"))
    if len(parts) < 5:
        raise SystemExit(f"the full library needs moses_part01..05.csv.gz beside {library}")
    path = folder / "moses_full.csv"
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for number, part in enumerate(parts):
            with gzip.open(part, "rt", encoding="utf-8") as handle:
                header = handle.readline()
                if number == 0:
                    out.write(header)
                for line in handle:
                    if rows is not None and count >= rows:
                        break
                    out.write(line)
                    count += 1
    shard = sharded_index.SHARD_SIZE
    shards = -(-count // shard)
    print(f"full library: {count:,} molecules from {len(parts)} parts, {shards} shards of {shard:,}; {_load()}", flush=True)
    local_s, _ = _run("molecules", "index", path, "--out", folder / "full_one")
    print(f"  local index (all cores): {local_s:.1f} s; {_load()}", flush=True)
    with _cluster(2) as local:
        _warm(local.scheduler_address)
        remote_s, _ = _run("molecules", "index", path, "--out", folder / "full_sharded", "--scheduler",
                           local.scheduler_address)
        print(f"  sharded index on the 2-worker cluster: {remote_s:.1f} s; {_load()}", flush=True)
        first_smiles = path.open(encoding="utf-8").readlines()[1].split(",")[1]
        for query in (("--similar", "CC(C)Cc1ccc(cc1)C(C)C(=O)O", "--top", "100"),
                      ("--similar", first_smiles, "--threshold", "0.7")):
            timings = {}
            for where, extra in (("sharded", ("--scheduler", local.scheduler_address)), ("one", ())):
                start = time.perf_counter()
                timings[where] = (_run("molecules", "search", folder / f"full_{where}", *query, "--json", *extra)[1],
                                  time.perf_counter() - start)
            (sharded_hits, sharded_s), (one_hits, one_s) = timings["sharded"], timings["one"]
            if sharded_hits != one_hits or not one_hits.strip():
                raise SystemExit(f"search {query}: {len(sharded_hits.splitlines())} hits over the shards, "
                                 f"{len(one_hits.splitlines())} over one index: not the same")
            print(f"  search {' '.join(query)}: {len(one_hits.splitlines())} hits, the same on both; "
                  f"{sharded_s:.2f} s over the shards on the cluster vs {one_s:.2f} s one index", flush=True)
    print(f"1.94 M-molecule index: the 2-worker cluster {local_s / remote_s:.2f}x the local command "
          f"({remote_s:.1f} s vs {local_s:.1f} s; {shards} tasks, {(remote_s - local_s) / shards * 1000:+.0f} ms per task); "
          f"{_load()}")


def on_paper(describe_rate_per_worker: float, index_rate_per_worker: float, search_s_per_shard: float) -> None:
    n, workers = 100_000_000, 50
    shards = n // SHARD_SIZE
    per_worker = shards / workers
    print(f"on paper, 100 M compounds on 50 workers: {shards:,} shards of {SHARD_SIZE:,} molecules, {per_worker:.0f} per worker; "
          f"index build ~{n / (index_rate_per_worker * workers) / 60:.0f} min at the measured {index_rate_per_worker:,.0f} "
          f"molecules/s per worker (the client reads the library once: it must stream ~100 M SMILES, ~7 GB, to the workers); "
          f"describe ~{n / (describe_rate_per_worker * workers) / 60:.0f} min; index ~{n * 300 / 1e9:.0f} GB on the shared "
          f"folder (~300 bytes a molecule); a top-k search {per_worker:.0f} shard searches per worker, "
          f"~{per_worker * search_s_per_shard * 1000:.0f} ms of shard work per worker at {search_s_per_shard * 1000:.0f} ms "
          f"a shard here (plus one round trip), merged on the client from {shards:,} x k hits")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=Path, default=SHARED_MOSES if SHARED_MOSES.is_file() else REPO_MOSES)
    parser.add_argument("--molecules", type=int, default=50_000, help="records of the large describe job")
    parser.add_argument("--scaling", type=int, default=10_000, help="molecules per worker in the scaling run")
    parser.add_argument("--files", type=int, default=100, help="images in the small job")
    parser.add_argument("--repeat", type=int, default=2, help="alternating 1- and 2-worker runs of the scaling part")
    parser.add_argument("--only-scaling", action="store_true", help="run the scaling part alone")
    parser.add_argument("--tasks-per-worker", type=int, default=16, help="tasks per worker in the scaling run")
    parser.add_argument("--full-library", action="store_true", help="the 1.94 M-molecule index run alone")
    parser.add_argument("--rows", type=int, help="with --full-library: only the first N molecules (a trial run)")
    args = parser.parse_args()
    print(_load(), f"(cpu count {os.cpu_count()})")
    with tempfile.TemporaryDirectory(prefix="healthfm-bench-cluster-") as tmp:
        folder = Path(tmp)
        if args.only_scaling:
            scaling(args.library, args.scaling, folder, args.repeat, args.tasks_per_worker)
            return 0
        if args.full_library:
            full_library(args.library, folder, args.rows)
            return 0
        with _cluster(2) as local:
            address = local.scheduler_address
            _warm(address)
            per_task_overhead(address)
            small_job(address, args.files, folder)
            large_job(address, args.library, args.molecules, folder)
            index_rate, search_s = index_rates(address, args.library, min(args.molecules, 40_000), folder)
        print(_load())
        one, _ = scaling(args.library, args.scaling, folder, args.repeat, args.tasks_per_worker)
        on_paper(one, index_rate, search_s)
    print(_load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
