"""Substructure search over a library index from the Molecules workspace: the hits shown are
RDKit's (a plain MolFromSmiles + HasSubstructMatch loop over the library, in library order);
opening the index starts the substructure worker processes off the UI thread, a second search
reuses the opened index, and app quit stops the workers."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest
from PySide6.QtCore import QCoreApplication, Qt
from rdkit import Chem

from healthfm_desktop.controllers import molecules as molecules_controller
from healthfm_desktop.controllers.molecules import MoleculesController
from healthfm_desktop.core.chemistry import search_index
from healthfm_desktop.core.chemistry.search_index import build_index
from healthfm_desktop.views.molecule_panel.workspace import ID, MoleculesWorkspace

LIBRARY = Path(__file__).resolve().parents[1] / "data" / "molecules" / "moses_subset_10k.csv.gz"


@pytest.fixture(scope="module")
def library_index(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gui-index")
    with gzip.open(LIBRARY, "rt") as handle:
        rows = [(r["id"], r["smiles"]) for r, _ in zip(csv.DictReader(handle), range(3000))]
    path = folder / "library.csv"
    path.write_text("id,smiles\n" + "".join(f"{i},{s}\n" for i, s in rows))
    build_index([path], folder / "index", workers=2)
    return rows, folder / "index"


def _rdkit_hits(rows, smarts, top=100):
    query = Chem.MolFromSmarts(smarts)
    return [ident for ident, smiles in rows if Chem.MolFromSmiles(smiles).HasSubstructMatch(query)][:top]


def test_index_search_shows_rdkit_hits_and_starts_then_stops_the_workers(qtbot, library_index, monkeypatch):
    rows, index_folder = library_index
    search_index.shutdown_substructure_workers()
    # every search with candidates left after the first ones goes to the workers once they run
    monkeypatch.setattr(search_index, "_PARALLEL_MIN_CANDIDATES", 1)
    monkeypatch.setattr(search_index, "_TOP_HEAD", 50)
    on_workers = []
    match_in_workers = search_index._match_in_workers

    def spy(*args, **kwargs):
        found = match_in_workers(*args, **kwargs)
        on_workers.append(found is not None)
        return found

    monkeypatch.setattr(search_index, "_match_in_workers", spy)
    view = MoleculesWorkspace(MoleculesController())
    qtbot.addWidget(view)
    view.resize(1400, 900)
    view.show()
    app = QCoreApplication.instance()
    workers = molecules_controller.SUBSTRUCTURE_WORKERS
    assert workers in app._healthfm_pools_stopped_on_quit  # aboutToQuit is connected

    view.search_mode.setCurrentText("substructure")
    # selective (a few hits among many candidates: the workers match the rest) and a ring query
    for smarts in ("C1CCNCC1C(=O)N", "[r5;H0]@[r6]"):
        view.search_query.setText(smarts)
        view.session.hits = None
        view.run_search(index_folder)
        qtbot.waitUntil(lambda: view.session.hits is not None and not view.controller.busy, timeout=60_000)
        expected = _rdkit_hits(rows, smarts)
        assert expected
        assert [r.id for r in view.controller.rows] == expected
        assert [view.proxy.index(i, ID).data() for i in range(view.proxy.rowCount())] == expected
        view.show_all_button.click()
        # the worker processes were started by opening the index, on a worker thread
        qtbot.waitUntil(lambda: not workers.jobs, timeout=60_000)
        assert search_index._pool is not None
    assert any(on_workers)  # candidates were matched on the worker processes
    # the second search reused the index opened by the first (its atom types loaded once)
    assert view.session.index.reused and view.session.index.folder == str(index_folder)
    assert "reused" in view.index_status.text()

    workers.stop()  # what app quit runs
    assert search_index._pool is None


def test_table_search_equals_rdkit_on_the_table(qtbot):
    """Search table (no library): substructure hits are RDKit's HasSubstructMatch over the
    table's molecules in table order, similarity scores are BulkTanimotoSimilarity on Morgan
    r=2 2048-bit fingerprints, best first."""
    from rdkit import DataStructs
    from rdkit.Chem import rdFingerprintGenerator

    view = MoleculesWorkspace(MoleculesController())
    qtbot.addWidget(view)
    table = Path(__file__).resolve().parents[2] / "resources" / "samples" / "molecules" / "approved_drugs.csv"
    view.controller.open_paths([table])
    qtbot.waitUntil(lambda: len(view.controller.rows) > 10 and not view.controller.busy, timeout=60_000)
    rows = [(r.id, r.smiles) for r in view.controller.rows if r.mol is not None]
    view.search_mode.setCurrentText("substructure")
    view.search_query.setText("c1ccccc1")
    view.run_search(None)
    qtbot.waitUntil(lambda: view.session.table_search is not None and not view.controller.busy, timeout=60_000)
    expected_ids = _rdkit_hits(rows, "c1ccccc1")
    assert 0 < len(expected_ids) < len(rows)
    assert [view.proxy.index(i, ID).data() for i in range(view.proxy.rowCount())] == expected_ids
    assert len(view.controller.rows) == len(rows)  # the table is kept, the hits are a filter on it
    view.show_all_button.click()
    view.table.sortByColumn(ID, Qt.SortOrder.AscendingOrder)  # back to a known order for ties
    rows = [(r.id, r.smiles) for r in view.controller.rows if r.mol is not None]
    view.search_mode.setCurrentText("similar")
    view.search_query.setText("CC(=O)Oc1ccccc1C(=O)O")
    view.search_threshold.setValue(0.1)
    view.run_search(None)
    qtbot.waitUntil(lambda: view.session.table_search is not None and not view.controller.busy, timeout=60_000)
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    scores = DataStructs.BulkTanimotoSimilarity(generator.GetFingerprint(Chem.MolFromSmiles("CC(=O)Oc1ccccc1C(=O)O")),
                                                [generator.GetFingerprint(Chem.MolFromSmiles(s)) for _, s in rows])
    expected = sorted(((-score, i) for i, score in enumerate(scores) if score >= 0.1))[:100]
    shown = [view.controller.rows[view.proxy.mapToSource(view.proxy.index(i, 0)).row()] for i in range(view.proxy.rowCount())]
    assert [(r.id, view.session.score_of(r)) for r in shown] == [(rows[i][0], -negative) for negative, i in expected]
