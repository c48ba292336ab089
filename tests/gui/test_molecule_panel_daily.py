"""The Molecules panel as a DataWarrior user expects it: a search filters the table ("Show all"
one click away) and the hit limit is a setting; the file's ids and names are shown, searched
and exported; duplicates are marked and merged; a structure grid; scatter axes and colour by
any column; a histogram per column; "Search library…" on a 400k-molecule file reports progress
(count, rate, time left), stops within a second of Cancel, and a built index is reused."""

from __future__ import annotations

import csv
import gzip
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from rdkit import Chem

from healthfm_desktop.controllers.molecules import MoleculesController
from healthfm_desktop.core.chemistry.session import HITS
from healthfm_desktop.core.chemistry.workspace_search import IndexCache
from healthfm_desktop.views.molecule_panel.workspace import DUPLICATES, GRID_LABEL_ROLE, ID
from tests.gui.test_molecule_panel import drop_files, drugs_panel, panel_view as _panel
from tests.gui.screenshots import SCREENSHOTS

REPO = Path(__file__).resolve().parents[2]
CSV = REPO / "resources" / "samples" / "molecules" / "approved_drugs.csv"
MOSES = REPO / "tests" / "data" / "molecules" / "moses_subset_10k.csv.gz"


def _shown_ids(view) -> list[str]:
    return [view.proxy.index(i, ID).data() for i in range(view.proxy.rowCount())]


def _column(view, header: str) -> int:
    return next(c for c in range(view.model.columnCount()) if view.model.headerData(c, Qt.Orientation.Horizontal) == header)


@pytest.fixture
def drugs(qtbot):
    return drugs_panel(qtbot)


def test_a_search_filters_the_table_and_show_all_brings_it_back(drugs, qtbot):
    view = drugs
    everything = _shown_ids(view)
    view.search_mode.setCurrentText("substructure")
    view.search_query.setText("C(=O)[OH]")
    view.search_button.click()
    qtbot.waitUntil(lambda: view.session.table_search is not None and not view.controller.busy, timeout=60_000)
    pattern = Chem.MolFromSmarts("C(=O)[OH]")
    acids = [r.id for r in view.controller.rows if r.mol is not None and Chem.MolFromSmiles(r.smiles).HasSubstructMatch(pattern)]
    assert 0 < len(acids) < 19 and _shown_ids(view) == acids
    assert len(view.controller.rows) == 19  # the table is still all there
    assert view.view_status.text().startswith(f"{len(acids)} of 19 rows") and view.show_all_button.isEnabled()
    view.grab().save(str(SCREENSHOTS / "molecule_panel_search_filter.png"))
    view.show_all_button.click()
    assert sorted(_shown_ids(view)) == sorted(everything) and not view.show_all_button.isEnabled()


def test_the_hit_limit_is_a_setting_and_a_search_can_be_narrowed(drugs, qtbot):
    view = drugs
    try:
        view.hit_limit.setValue(3)
        assert MoleculesController().session.hit_limit == 3  # kept in Settings
        view.search_mode.setCurrentText("similar")
        view.search_query.setText("CC(=O)Oc1ccccc1C(=O)O")
        view.search_button.click()
        qtbot.waitUntil(lambda: view.session.table_search is not None and not view.controller.busy, timeout=60_000)
        assert len(_shown_ids(view)) == 3 and _shown_ids(view)[0] == "CHEMBL25"
        # narrowed: only the rows shown by the filter are searched
        view.show_all_button.click()
        view.hit_limit.setValue(0)  # "all"
        view.filter_text.setText("CHEMBL1")
        narrowed = set(_shown_ids(view))
        view.search_only_shown.setChecked(True)
        view.search_button.click()
        qtbot.waitUntil(lambda: view.session.table_search is not None and not view.controller.busy, timeout=60_000)
        assert view.session.table_search.searched == len(narrowed)
        assert set(_shown_ids(view)) <= narrowed and "CHEMBL25" not in _shown_ids(view)
    finally:
        view.controller.set_hit_limit(100)


def test_ids_and_names_are_shown_searched_and_exported(drugs, qtbot, tmp_path):
    view = drugs
    name_column = _column(view, "name")
    file_rows = {r["id"]: r["name"] for r in csv.DictReader(open(CSV, encoding="utf-8"))}
    assert {view.proxy.index(i, ID).data(): view.proxy.index(i, name_column).data()
            for i in range(view.proxy.rowCount())} == file_rows
    view.filter_text.setText("omeprazole")
    assert _shown_ids(view) == ["CHEMBL1503"]
    view.filter_text.clear()
    view.grid_button.click()
    assert view.views.currentWidget() is view.grid
    label = view.grid.model().index(0, 0).data(GRID_LABEL_ROLE)
    assert label == f"{view.proxy.index(0, ID).data()} · {view.proxy.index(0, name_column).data()}"
    view.grab().save(str(SCREENSHOTS / "molecule_panel_grid.png"))
    out = tmp_path / "drugs.csv"
    view.controller.export(out)
    qtbot.waitUntil(lambda: not view.controller.busy and out.exists(), timeout=30_000)
    assert {r["id"]: r["name"] for r in csv.DictReader(open(out, encoding="utf-8"))} == file_rows


def test_duplicates_are_marked_and_merged(qtbot, tmp_path):
    path = tmp_path / "duplicates.csv"
    path.write_text("chembl_id,name,smiles\nCHEMBL25,ASPIRIN,CC(=O)Oc1ccccc1C(=O)O\n"
                    "CHEMBL2260549,ASPIRIN SODIUM,CC(=O)Oc1ccccc1C(=O)[O-].[Na+]\nCHEMBL545,ETHANOL,CCO\n",
                    encoding="utf-8")
    view = _panel(qtbot)
    drop_files(view, [path])
    qtbot.waitUntil(lambda: view.model.rowCount() == 3 and not view.controller.busy, timeout=60_000)
    assert [r.id for r in view.controller.rows] == ["CHEMBL25", "CHEMBL2260549", "CHEMBL545"]  # chembl_id is the id
    marks = [view.proxy.index(i, DUPLICATES).data() for i in range(3)]
    assert marks == ["2× (first: CHEMBL25)", "2× (first: CHEMBL25)", None]
    view.duplicates_only.setChecked(True)
    assert _shown_ids(view) == ["CHEMBL25", "CHEMBL2260549"]
    view.duplicates_only.setChecked(False)
    view.merge_button.click()
    assert _shown_ids(view) == ["CHEMBL25; CHEMBL2260549", "CHEMBL545"]
    assert view.proxy.index(0, _column(view, "name")).data() == "ASPIRIN; ASPIRIN SODIUM"
    assert "merged 1 duplicate" in view.status.text()


def test_scatter_axes_colour_and_histogram_follow_any_column(drugs, qtbot):
    view = drugs
    rows = view.controller.rows
    view.x_column.setCurrentText("TPSA")
    view.y_column.setCurrentText("QED")
    xs, ys = view.scatter.getData()
    expected = sorted((r.properties["tpsa"], r.properties["qed"]) for r in rows)
    assert np.allclose(sorted(zip(xs, ys)), expected)
    view.colour_column.setCurrentText("Lipinski")
    brushes = [p.brush().color().getRgb()[:3] for p in view.scatter.points()]
    by_row = {int(p.data()): colour for p, colour in zip(view.scatter.points(), brushes)}
    failing = {i for i, r in enumerate(rows) if not r.properties["lipinski_pass"]}
    assert failing and {by_row[i] for i in failing}.isdisjoint({by_row[i] for i in set(by_row) - failing})
    assert "pass" in view.colour_legend.text() and "fail" in view.colour_legend.text()
    view.colour_column.setCurrentText("MW")
    assert "MW from" in view.colour_legend.text()
    view.plots.setCurrentIndex(1)
    view.histogram_column.setCurrentText("MW")
    counts, _ = np.histogram([r.properties["mw"] for r in rows], bins=min(30, max(5, len({r.properties["mw"] for r in rows}))))
    assert view.histogram_counts() == list(map(float, counts))
    view.histogram_column.setCurrentText("Lipinski")
    assert sorted(view.histogram_counts()) == sorted([float(len(failing)), float(19 - len(failing))])
    view.grab().save(str(SCREENSHOTS / "molecule_panel_histogram.png"))


def _large_library(folder: Path, copies: int, first: int | None = None) -> Path:
    """MOSES molecules (the ``first`` ones, else all 10k) repeated ``copies`` times under
    distinct ids."""
    with gzip.open(MOSES, "rt") as handle:
        rows = list(csv.DictReader(handle))[:first]
    path = folder / "library.csv"
    with open(path, "w", encoding="utf-8") as out:
        out.write("id,smiles\n")
        for copy in range(copies):
            out.writelines(f"{copy}-{r['id']},{r['smiles']}\n" for r in rows)
    return path


def test_library_search_on_400k_molecules_reports_progress_and_cancels_within_a_second(qtbot, tmp_path):
    library = _large_library(tmp_path, 40)
    cache = IndexCache(tmp_path / "indexes")
    view = _panel(qtbot, MoleculesController(index_cache=cache))
    messages = []
    view.controller.progress.connect(lambda p: messages.append(p.message))
    view.search_mode.setCurrentText("similar")
    view.search_query.setText("CC(=O)Oc1ccccc1C(=O)O")
    view.run_search(library)
    # the build reports molecules indexed of the ~400k, a rate and the time left
    qtbot.waitUntil(lambda: any("indexed" in m and "/s" in m and "left" in m for m in messages), timeout=20_000)
    text = next(m for m in messages if "/s" in m)
    assert "of about 400,000 molecules" in text and view.cancel_button.isVisible()
    assert "indexed" in view.status.text()
    started = time.perf_counter()
    view.cancel_button.click()
    qtbot.waitUntil(lambda: not view.controller.busy, timeout=10_000)
    latency = time.perf_counter() - started
    print(f"cancel latency during a 400k-molecule index build: {latency * 1000:.0f} ms")
    assert latency < 1.0
    assert view.status.text() == "Cancelled." and view.session.hits is None
    assert list(cache.root.iterdir()) == []  # nothing half-built is kept


def test_a_built_library_index_is_reused_with_its_state_shown(qtbot, tmp_path):
    library = _large_library(tmp_path, 1, first=2000)
    cache = IndexCache(tmp_path / "indexes")
    view = _panel(qtbot, MoleculesController(index_cache=cache))
    view.search_mode.setCurrentText("substructure")
    view.search_query.setText("c1ccncc1")
    view.run_search(library)
    qtbot.waitUntil(lambda: view.session.hits is not None and not view.controller.busy, timeout=300_000)
    assert view.session.view == HITS and "built in" in view.index_status.text()
    assert "2,000 molecules" in view.index_status.text()
    pattern = Chem.MolFromSmarts("c1ccncc1")
    with open(library, encoding="utf-8") as handle:
        expected = [r["id"] for r in csv.DictReader(handle) if Chem.MolFromSmiles(r["smiles"]).HasSubstructMatch(pattern)]
    assert _shown_ids(view) == expected[:100]
    # a new session (the app started again) reuses the index kept for the unchanged file
    again = _panel(qtbot, MoleculesController(index_cache=cache))
    again.search_mode.setCurrentText("similar")
    again.search_query.setText("c1ccncc1")
    again.run_search(library)
    qtbot.waitUntil(lambda: again.session.hits is not None and not again.controller.busy, timeout=60_000)
    assert "reused" in again.index_status.text()
    again.grab().save(str(SCREENSHOTS / "molecule_panel_library_hits.png"))
