"""The Compute setting: with a Dask scheduler address, the molecule panel's library search and
predictions run on that cluster (a 2-worker LocalCluster on loopback here), show the same hits
and values as on this computer, and say where they ran."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest

from healthfm_desktop.controllers.molecules import MoleculesController
from healthfm_desktop.core.chemistry.search_index import build_index
from healthfm_desktop.views.dialogs import SettingsDialog
from healthfm_desktop.views.molecule_panel.workspace import MoleculesWorkspace
from tests.gui.screenshots import SCREENSHOTS

LIBRARY = Path(__file__).resolve().parents[1] / "data" / "molecules" / "moses_subset_10k.csv.gz"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scheduler(dask_scheduler):
    return dask_scheduler


def _search(qtbot, view, folder: Path, query: str) -> list[tuple[str, float]]:
    view.session.hits = None
    view.search_mode.setCurrentText("similar")
    view.search_query.setText(query)
    view.run_search(folder)
    qtbot.waitUntil(lambda: view.session.hits is not None and not view.controller.busy, timeout=60_000)
    return [(r.id, r.score) for r in view.controller.rows]


def _predict(qtbot, view) -> list[dict]:
    for row in view.controller.rows:
        row.predictions = {}
    view.controller.predict()
    qtbot.waitUntil(lambda: not view.controller.busy and all(r.predictions for r in view.controller.rows),
                    timeout=60_000)
    return [dict(r.predictions) for r in view.controller.rows]


def test_search_and_predict_on_the_cluster_equal_local(qtbot, tmp_path, scheduler, compute, monkeypatch):
    from healthfm_desktop.core import cluster

    monkeypatch.setattr(cluster, "_CONNECT_TIMEOUT_S", 2)
    with gzip.open(LIBRARY, "rt") as handle:
        rows = [(r["id"], r["smiles"]) for r, _ in zip(csv.DictReader(handle), range(800))]
    library = tmp_path / "library.csv"
    library.write_text("id,smiles\n" + "".join(f"{i},{s}\n" for i, s in rows))
    build_index([library], tmp_path / "index", workers=1)

    view = MoleculesWorkspace(MoleculesController())
    qtbot.addWidget(view)
    view.resize(1400, 900)
    view.show()
    messages = []
    view.controller.message.connect(lambda level, text: messages.append((level, text)))
    view.controller.session.hit_limit = 30

    compute("")
    local_hits = _search(qtbot, view, tmp_path / "index", "CC(C)Cc1ccc(cc1)C(C)C(=O)O")
    local_predictions = _predict(qtbot, view)
    assert len(local_hits) == 30 and "Dask" not in " ".join(t for _, t in messages)

    compute(scheduler)
    messages.clear()
    assert _search(qtbot, view, tmp_path / "index", "CC(C)Cc1ccc(cc1)C(C)C(=O)O") == local_hits
    assert _predict(qtbot, view) == local_predictions
    said = [t for _, t in messages]
    assert any("searched on the Dask cluster at " + scheduler in t and "2 workers" in t for t in said), said
    assert any(t.startswith("predicted 30 molecules on the Dask cluster") for t in said), said
    view.grab().save(str(SCREENSHOTS / "healthfm_molecules_on_cluster.png"))

    compute("tcp://127.0.0.1:9")  # nobody listens: a clear message, nothing lost
    messages.clear()
    view.controller.predict()
    qtbot.waitUntil(lambda: not view.controller.busy and bool(messages), timeout=60_000)
    assert messages[-1][0] == "error" and "cannot reach the Dask scheduler" in messages[-1][1]
    assert [dict(r.predictions) for r in view.controller.rows] == local_predictions


def test_settings_dialog_has_the_compute_choice(qtbot, tmp_path):
    dialog = SettingsDialog({"compute/scheduler": "tcp://10.0.0.1:8786"})
    qtbot.addWidget(dialog)
    dialog.tabs.setCurrentIndex(dialog.tabs.count() - 1)
    dialog.show()
    assert dialog.tabs.tabText(dialog.tabs.currentIndex()) == "Compute"
    assert dialog.values()["compute/scheduler"] == "tcp://10.0.0.1:8786"
    dialog.scheduler.setText("  ")
    assert dialog.values()["compute/scheduler"] == ""
    dialog.grab().save(str(SCREENSHOTS / "healthfm_settings_compute.png"))


def test_importing_a_large_file_describes_it_on_the_cluster(qtbot, tmp_path, scheduler, compute, monkeypatch):
    """A table import past the worker-process threshold (2,000 molecules; 200 here, to keep the
    test short) is the molecule panel's batch describe: with a scheduler set it runs on the
    cluster, same rows as on this computer's worker processes."""
    from healthfm_desktop.core.chemistry import table

    monkeypatch.setattr(table, "_PARALLEL_FROM", 200)
    with gzip.open(LIBRARY, "rt") as handle:
        rows = [(r["id"], r["smiles"]) for r, _ in zip(csv.DictReader(handle), range(300))]
    library = tmp_path / "big.csv"
    library.write_text("id,smiles\n" + "".join(f"{i},{s}\n" for i, s in rows) + "broken,C1CC\n")

    def imported(address: str) -> tuple[list, list[str]]:
        compute(address)
        controller = MoleculesController()
        said: list[str] = []
        controller.progress.connect(lambda progress: said.append(progress.message))
        controller.open_paths([library])
        qtbot.waitUntil(lambda: len(controller.session.rows) == 301 and not controller.busy, timeout=180_000)
        table = [(r.id, r.smiles, r.error, r.properties, r.alert_atoms) for r in controller.session.rows]
        return table, said

    local, local_said = imported("")
    remote, remote_said = imported(scheduler)
    assert remote == local and sum(r[2] is not None for r in local) == 1
    assert sum(bool(r[3]) for r in local) == 300
    assert not any("Dask" in m for m in local_said)
    assert any("described 300 of 300 on the Dask cluster" in m for m in remote_said), remote_said[-3:]
