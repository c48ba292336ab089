"""Every batch command with ``--scheduler`` on a real Dask cluster (a 2-worker LocalCluster of
processes on loopback, shared by this module) gives the same output as the local run, in the
same order; a worker killed mid-run loses nothing; a sharded index merges top-k exactly."""

from __future__ import annotations

import gzip
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from healthfm_desktop import cli
from healthfm_desktop.core import cluster

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
SAMPLES = REPO / "resources" / "samples"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scheduler(dask_scheduler):
    return dask_scheduler


def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def same_both_ways(capsys, scheduler, *argv) -> tuple[int, str, str]:
    """Run locally and on the cluster; exit code, stdout and the set of stderr lines agree."""
    local = run(capsys, *argv)
    remote = run(capsys, *argv, "--scheduler", scheduler)
    assert remote[0] == local[0], remote[2]
    assert remote[1] == local[1]
    assert sorted(remote[2].splitlines()) == sorted(local[2].splitlines())
    return local


@pytest.fixture(scope="module")
def moses_1k2(tmp_path_factory) -> Path:
    """The first 1,200 MOSES molecules plus two that RDKit refuses (real bad records)."""
    with gzip.open(DATA / "molecules" / "moses_subset_10k.csv.gz", "rt", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    header, rows = lines[0], lines[1:1201]
    rows[100:100] = ["BAD-ring,C1CC,train", "BAD-valence,CC(C)(C)(C)(C)C,train"]
    path = tmp_path_factory.mktemp("moses") / "moses_1k2.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


# ---- the cluster module itself --------------------------------------------------------------
def test_bad_addresses_are_bad_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["molecules", "describe", str(SAMPLES / "molecules" / "approved_drugs.csv"), "--json",
                  "--scheduler", "localhost"])
    assert exit_info.value.code == 2
    assert "not a Dask scheduler address" in capsys.readouterr().err


def test_unreachable_scheduler_is_one_clear_line(capsys, monkeypatch):
    monkeypatch.setattr(cluster, "_CONNECT_TIMEOUT_S", 2)
    code, out, err = run(capsys, "molecules", "describe", SAMPLES / "molecules" / "approved_drugs.csv", "--json",
                         "--scheduler", "tcp://127.0.0.1:9")
    assert code == 1 and out == ""
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err and "Traceback" not in err


def test_results_come_back_in_input_order(scheduler):
    client = cluster.connect(scheduler)
    try:
        # later items finish first: the order must still be the input's
        values = list(cluster.run_in_order(client, time.sleep, [0.3, 0.2, 0.1, 0.0], window=4))
        assert values == [None] * 4
        squares = list(cluster.run_in_order(client, pow, range(50), 2, window=7))
        assert squares == [i * i for i in range(50)]
        state = cluster.cluster_state(client)
        assert state["workers"] == 2 and state["threads"] == 2
    finally:
        client.close()


def test_a_task_error_reaches_the_client_and_cancels_the_rest(scheduler):
    client = cluster.connect(scheduler)
    try:
        with pytest.raises(ZeroDivisionError):
            list(cluster.run_in_order(client, divmod, [1, 2, 0, 3], 0))
    finally:
        client.close()


def test_leaving_early_cancels_the_runs_tasks_on_the_cluster(scheduler):
    """Ctrl-C (KeyboardInterrupt) or any exit from the loop over results cancels what is left."""
    client = cluster.connect(scheduler)
    try:
        results = cluster.run_in_order(client, time.sleep, [0.0] + [1.0] * 8, window=9)
        assert next(results) is None
        assert client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) > 0
        results.close()  # what KeyboardInterrupt raised in the loop does, through the same except
        deadline = time.time() + 10
        while client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) and time.time() < deadline:
            time.sleep(0.05)
        assert client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) == 0
    finally:
        client.close()


# ---- molecules ------------------------------------------------------------------------------
def test_describe_json_and_csv_equal(capsys, scheduler, tmp_path, monkeypatch):
    from healthfm_desktop.batch import molecules

    monkeypatch.setattr(molecules, "_CLUSTER_CHUNK", 7)  # several tasks even on a small file
    code, out, _ = same_both_ways(capsys, scheduler, "molecules", "describe",
                                  SAMPLES / "molecules" / "approved_drugs.csv", "--json")
    assert code == 0 and len(out.splitlines()) == 19
    code, _, err = same_both_ways(capsys, scheduler, "molecules", "describe",
                                  DATA / "molecules" / "malformed" / "good_bad_good_bad.sdf", "--json")
    assert code == 1 and "valence" in err
    local, remote = tmp_path / "local.csv", tmp_path / "remote.csv"
    assert run(capsys, "molecules", "describe", SAMPLES / "molecules" / "approved_drugs.sdf", "--out", local)[0] == 0
    assert run(capsys, "molecules", "describe", SAMPLES / "molecules" / "approved_drugs.sdf", "--out", remote,
               "--scheduler", scheduler)[0] == 0
    assert remote.read_bytes() == local.read_bytes() and len(local.read_text().splitlines()) > 10
    assert not list(tmp_path.glob("*.part"))


def test_predict_equal(capsys, scheduler, monkeypatch):
    from healthfm_desktop.batch import molecules

    monkeypatch.setattr(molecules, "_CLUSTER_CHUNK", 5)
    code, out, _ = same_both_ways(capsys, scheduler, "molecules", "predict",
                                  SAMPLES / "molecules" / "approved_drugs.sdf", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) > 10 and all("solubility_logS" in r["predictions"] for r in rows)
    code, out, _ = same_both_ways(capsys, scheduler, "molecules", "predict",
                                  DATA / "molecules" / "malformed" / "good_bad_good_bad.sdf", "--json")
    assert code == 1 and ['error' in json.loads(line) for line in out.splitlines()] == [False, True, False, True]


def test_sharded_index_searches_exactly_as_one_index(capsys, scheduler, moses_1k2, tmp_path, monkeypatch):
    from healthfm_desktop.core.chemistry import sharded_index

    monkeypatch.setattr(sharded_index, "SHARD_SIZE", 300)  # 5 shards, the last one short
    one, sharded = tmp_path / "one", tmp_path / "sharded"
    code, out, err = run(capsys, "molecules", "index", moses_1k2, "--out", one)
    assert code == 0 and "indexed 1200 molecules" in out and err.count("moses_1k2.csv: record") == 2
    code, out2, err2 = run(capsys, "molecules", "index", moses_1k2, "--out", sharded, "--scheduler", scheduler)
    assert code == 0 and out2 == out.replace(str(one), str(sharded))
    assert sorted(err2.splitlines()) == sorted(err.splitlines())
    meta = json.loads((sharded / "index.json").read_text())
    assert [s["size"] for s in meta["shards"]] == [298, 300, 300, 300, 2]  # the two bad ones in shard 0
    assert not list(sharded.glob(".*.tmp"))

    queries = [
        ("--similar", "CC(C)Cc1ccc(cc1)C(C)C(=O)O", "--top", "25"),  # ibuprofen: ties at the cut-off
        ("--similar", "c1ccc2ccccc2c1", "--threshold", "0.2"),
        ("--similar", "O=C(Nc1ccccc1)c1ccccc1", "--top", "1200"),
        ("--substructure", "c1ccncc1"),
        ("--substructure", "C(=O)N", "--top", "40"),
        ("--substructure", "[#7;R]"),
    ]
    for query in queries:
        code, reference, _ = run(capsys, "molecules", "search", one, *query, "--json")
        assert code == 0 and reference, query
        # the sharded index searched here, and on the cluster, and a library file on the cluster
        assert run(capsys, "molecules", "search", sharded, *query, "--json")[1] == reference, query
        assert run(capsys, "molecules", "search", sharded, *query, "--json", "--scheduler", scheduler)[1] == reference
        assert run(capsys, "molecules", "search", one, *query, "--json", "--scheduler", scheduler)[1] == reference
    hits = [json.loads(line) for line in run(capsys, "molecules", "search", one, *queries[2], "--json")[1].splitlines()]
    scores = [h["score"] for h in hits]
    assert len(set(scores)) < len(scores)  # ties exist, and their order was compared above
    monkeypatch.setattr(sharded_index, "SHARD_SIZE", 700)
    for query in queries[:1] + queries[4:5]:
        direct = run(capsys, "molecules", "search", moses_1k2, *query, "--json")[1]
        assert run(capsys, "molecules", "search", moses_1k2, *query, "--json", "--scheduler", scheduler)[1] == direct


# ---- patients, notes, images, DICOM ---------------------------------------------------------
def test_patients_risk_equal(capsys, scheduler, monkeypatch):
    from healthfm_desktop.batch import patients

    monkeypatch.setattr(patients, "_CLUSTER_CHUNK", 2)  # 2 tasks for the 3 stays
    code, out, _ = same_both_ways(capsys, scheduler, "patients", "risk", SAMPLES / "patients" / "icu_stays.csv", "--json")
    assert code == 0 and len(out.splitlines()) == 3


@pytest.mark.parametrize("fmt", ["jsonl", "brat", "fhir"])
def test_notes_annotate_equal(capsys, scheduler, tmp_path, monkeypatch, fmt):
    from healthfm_desktop.batch import notes

    monkeypatch.setattr(notes, "_CLUSTER_CHUNK", 2)
    terms = tmp_path / "terms.txt"
    terms.write_text("sats\tTEST\n", encoding="utf-8")
    inputs = [SAMPLES / "notes" / "case_reports.jsonl", SAMPLES / "notes" / "discharge_summary.txt"]
    local, remote = tmp_path / f"local.{fmt}", tmp_path / f"remote.{fmt}"
    assert run(capsys, "notes", "annotate", *inputs, "--terms", terms, "--format", fmt, "--out", local)[0] == 0
    assert run(capsys, "notes", "annotate", *inputs, "--terms", terms, "--format", fmt, "--out", remote,
               "--scheduler", scheduler)[0] == 0
    if fmt == "jsonl":
        assert remote.read_bytes() == local.read_bytes() and len(local.read_text().splitlines()) > 2
    else:
        names = sorted(p.name for p in local.iterdir())
        assert names == sorted(p.name for p in remote.iterdir()) and len(names) > 2
        assert all((remote / n).read_bytes() == (local / n).read_bytes() for n in names)


def test_images_classify_and_segment_equal(capsys, scheduler, tmp_path):
    images = DATA / "images"
    inputs = [*sorted(images.glob("pneumoniamnist_*.png"))[:4], SAMPLES / "images" / "chest_xray_pneumonia.dcm",
              DATA / "dicom" / "bad" / "RTPLAN_truncated.dcm"]
    local, remote = tmp_path / "sal_local", tmp_path / "sal_remote"
    a = run(capsys, "images", "classify", *inputs, "--json", "--saliency", local)
    b = run(capsys, "images", "classify", *inputs, "--json", "--saliency", remote, "--scheduler", scheduler)
    assert a[0] == b[0] == 1 and "RTPLAN_truncated.dcm" in b[2]
    assert b[1] == a[1].replace(str(local), str(remote)) and len(a[1].splitlines()) == 5
    assert all((remote / p.name).read_bytes() == p.read_bytes() for p in local.iterdir())
    inputs = [*sorted(images.glob("hc18_*_HC.png"))[:2], SAMPLES / "images" / "fetal_head_ultrasound.dcm"]
    a = run(capsys, "images", "segment", *inputs, "--json", "--out", local, "--pixel-spacing", "0.15")
    b = run(capsys, "images", "segment", *inputs, "--json", "--out", remote, "--pixel-spacing", "0.15",
            "--scheduler", scheduler)
    assert a[0] == b[0] == 0 and b[1] == a[1].replace(str(local), str(remote))
    assert all((remote / p.name).read_bytes() == p.read_bytes() for p in local.glob("*_mask.png"))


def test_analyse_series_on_the_cluster_equals_local(scheduler):
    """The viewer's "Analyse series" with Settings > Compute: the same rows, summary and overlay
    as here, with the first image and the one on screen run here and the others on the workers."""
    from healthfm_desktop.core.imaging.ai.analysis import analyse_series, run_to_end
    from healthfm_desktop.core.imaging.ai.analysis import read_for_analysis
    from healthfm_desktop.core.imaging.sources import SourceRef

    sources = [SourceRef(path) for path in sorted((DATA / "images").glob("pneumoniamnist_*.png"))]
    frames = [(i, source, 0, str(source.path)) for i, source in enumerate(sources)]

    def load(index: int):
        return read_for_analysis(sources[index], 0, str(sources[index].path))

    local = run_to_end(analyse_series(load, len(sources), 3))
    with cluster.compute_client(scheduler) as client:
        remote = run_to_end(analyse_series(load, len(sources), 3, cluster=(client, frames)))
    assert len(sources) == 10 and remote.task == local.task == "classify"
    assert remote.per_image == local.per_image and remote.summary == local.summary
    assert {row["label"] for row in local.per_image} == {"normal", "pneumonia"}
    assert remote.on_screen.headline == local.on_screen.headline
    assert (remote.on_screen.overlay_rgba == local.on_screen.overlay_rgba).all()


def test_dicom_scan_equal(capsys, scheduler, monkeypatch):
    from healthfm_desktop.batch import dicom

    monkeypatch.setattr(dicom, "_CLUSTER_CHUNK", 3)
    code, out, err = same_both_ways(capsys, scheduler, "dicom", "scan", DATA / "dicom" / "single",
                                    DATA / "dicom" / "bad", "--json")
    assert code == 1 and len(out.splitlines()) > 10 and "RTPLAN_truncated.dcm" in err


def test_dicom_anonymize_consistent_across_workers(capsys, scheduler, tmp_path):
    import pydicom

    from healthfm_desktop.core.imaging import anonymise

    series = DATA / "dicom" / "series" / "CT_head_phantom_philips_1mm_20sl"
    # the same secret: byte-identical output whichever machine de-identified which file
    salt = b"0123456789abcdef"
    local = anonymise.anonymise_paths([series], tmp_path / "local", anonymise.Anonymiser(salt))
    remote = anonymise.anonymise_paths([series], tmp_path / "remote", anonymise.Anonymiser(salt), scheduler=scheduler)
    assert [p.name for p in remote.written] == [p.name for p in local.written] and len(local.written) == 20
    assert all(r.read_bytes() == l.read_bytes() for r, l in zip(remote.written, local.written))
    # the command line: a fresh secret per run, one new study UID for the whole study
    not_dicom = tmp_path / "notes.dcm"
    not_dicom.write_text("a note, not a DICOM object\n", encoding="utf-8")
    code, out, err = run(capsys, "dicom", "anonymize", series, not_dicom, "--out", tmp_path / "cli",
                         "--scheduler", scheduler)
    assert code == 1 and out.startswith("20 file(s) de-identified") and f"{not_dicom}: " in err
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in (tmp_path / "cli").glob("*.dcm")]
    original = pydicom.dcmread(next(series.iterdir()), stop_before_pixels=True)
    assert len({h.StudyInstanceUID for h in headers}) == 1 and len({h.SeriesInstanceUID for h in headers}) == 1
    assert headers[0].StudyInstanceUID != original.StudyInstanceUID
    assert len({h.SOPInstanceUID for h in headers}) == 20


def test_adapt_predict_equal(capsys, scheduler, monkeypatch):
    """A user model (a head on the molecule encoder, trained here on ClinTox) in the user folder
    the workers share (HEALTHFM_HOME, inherited by the LocalCluster's processes)."""
    import csv as csv_module

    from healthfm_desktop.batch import adapt

    monkeypatch.setattr(adapt, "_CLUSTER_CHUNK", 20)
    home = Path(os.environ["HEALTHFM_HOME"])
    with (DATA / "molecules" / "clintox_sample.csv").open() as handle:
        rows = list(csv_module.DictReader(handle))
    train, test = home / "clintox_train.csv", home / "clintox_test.csv"
    train.write_text("id,smiles,label\n" + "".join(f"{r['id']},{r['smiles']},{r['CT_TOX']}\n" for r in rows[:150]))
    test.write_text("id,smiles\n" + "".join(f"{r['id']},{r['smiles']}\n" for r in rows[150:]) + "bad,C1CC\n")
    assert run(capsys, "adapt", "train", "--kind", "molecule", "--data", train, "--name", "cluster_ct_tox")[0] == 0
    local = run(capsys, "adapt", "predict", "cluster_ct_tox", test, "--json")
    remote = run(capsys, "adapt", "predict", "cluster_ct_tox", test, "--json", "--scheduler", scheduler)
    assert local[0] == remote[0] == 1 and "bad" in remote[2] and sorted(remote[2].splitlines()) == sorted(local[2].splitlines())
    local_rows = [json.loads(line) for line in local[1].splitlines()]
    assert len(local_rows) == len(rows) - 150 + 1
    # exactly equal, probabilities included: the molecule features are computed with one BLAS
    # thread everywhere (AvgIpc differed at ~1e-4 between the client's threads and a worker's one)
    assert local[1] == remote[1]


# ---- faults ---------------------------------------------------------------------------------
def test_a_killed_worker_loses_nothing(capsys, scheduler, moses_1k2, tmp_path, monkeypatch):
    from distributed import Client

    from healthfm_desktop.batch import molecules

    monkeypatch.setattr(molecules, "_CLUSTER_CHUNK", 60)  # ~20 tasks
    local = tmp_path / "local.csv"
    assert run(capsys, "molecules", "describe", moses_1k2, "--out", local)[0] == 1
    observer = Client(scheduler, set_as_default=False)
    killed = []

    def kill_a_busy_worker():
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            busy = [w for w, keys in observer.processing().items() if any("describe" in str(k) for k in keys)]
            if busy:
                pid = observer.run(os.getpid, workers=[busy[0]])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed.append(busy[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    try:
        remote = tmp_path / "remote.csv"
        code, _, err = run(capsys, "molecules", "describe", moses_1k2, "--out", remote, "--scheduler", scheduler)
    finally:
        killer.join()
    try:
        assert killed, "no worker was killed mid-run"
        assert code == 1 and err.count(": record ") == 2
        assert remote.read_bytes() == local.read_bytes()
        observer.wait_for_workers(2, timeout=60)  # the nanny restarts it for the next tests
    finally:
        observer.close()
