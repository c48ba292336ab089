"""The Molecules workspace as a chemist meets it: drop a real SDF and a CSV, see the grid with
depictions and RDKit's properties, sort, filter, select (detail pane + scatter), type a SMILES,
search the table, predict (with applicability domain), export."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDropEvent
from rdkit import Chem
from rdkit.Chem import Descriptors

from healthfm_desktop.controllers.molecules import MoleculesController
from healthfm_desktop.views.molecule_panel.workspace import ID, MoleculesWorkspace, PROPERTY_COLUMNS, FIRST_PROPERTY, SCORE

REPO = Path(__file__).resolve().parents[2]
SDF = REPO / "tests" / "data" / "molecules" / "NCI_aids_few.sdf"
BAD_SDF = REPO / "tests" / "data" / "molecules" / "malformed" / "good_bad_good_bad.sdf"
CSV = REPO / "resources" / "samples" / "molecules" / "approved_drugs.csv"
MW = FIRST_PROPERTY + [c[1] for c in PROPERTY_COLUMNS].index("mw")

def drop_files(view, paths):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    view.dropEvent(event)

def panel_view(qtbot, controller=None) -> MoleculesWorkspace:
    """The Molecules workspace with its own controller, shown at a workstation size."""
    widget = MoleculesWorkspace(controller or MoleculesController())
    qtbot.addWidget(widget)
    widget.resize(1500, 950)
    widget.show()
    return widget

def drugs_panel(qtbot, controller=None) -> MoleculesWorkspace:
    """The panel with the 19 bundled approved drugs (id, name, smiles) dropped on it."""
    widget = panel_view(qtbot, controller)
    drop_files(widget, [CSV])
    qtbot.waitUntil(lambda: widget.model.rowCount() == 19 and not widget.controller.busy, timeout=60_000)
    return widget

@pytest.fixture
def view(qtbot):
    return panel_view(qtbot)

def test_drop_sdf_and_csv_sort_filter_select(view, qtbot, tmp_path):
    drop_files(view, [SDF, CSV, BAD_SDF])
    qtbot.waitUntil(lambda: view.model.rowCount() == 16 + 19 + 4 and not view.controller.busy, timeout=60_000)
    rows = view.controller.rows
    errors = [r for r in rows if r.error]
    assert len(errors) == 2 and "valence" in errors[0].error
    # MW column is RDKit's MolWt of the standardised molecule
    for row in rows:
        if row.mol is not None:
            assert row.properties["mw"] == pytest.approx(Descriptors.MolWt(Chem.MolFromSmiles(row.smiles)))
    view.table.sortByColumn(MW, Qt.SortOrder.DescendingOrder)
    shown = [float(view.proxy.index(i, MW).data()) for i in range(view.proxy.rowCount()) if view.proxy.index(i, MW).data()]
    assert shown == sorted(shown, reverse=True)
    view.filter_text.setText("CHEMBL25")
    assert {view.proxy.index(i, ID).data() for i in range(view.proxy.rowCount())} == {"CHEMBL25", "CHEMBL250"} or view.proxy.rowCount() >= 1
    view.filter_text.clear()
    view.valid_only.setChecked(True)
    assert view.proxy.rowCount() == 37
    view.no_alerts.setChecked(True)
    assert all(not view.controller.rows[view.proxy.mapToSource(view.proxy.index(i, 0)).row()].properties["alerts"]
               for i in range(view.proxy.rowCount()))
    view.no_alerts.setChecked(False)
    # select aspirin: detail pane, highlighted depiction, linked scatter point
    aspirin = next(i for i, r in enumerate(rows) if r.id == "CHEMBL25")
    view.select_source_row(aspirin)
    assert "Brenk:phenol_ester" in view.detail_text.toPlainText()
    assert not view.detail_picture.pixmap().isNull()
    xs, ys = view.selected_points.getData()
    assert list(xs) == pytest.approx([rows[aspirin].properties["mw"]])
    # the SMILES editor validates live
    view.smiles_editor.setText("C1CC")
    assert "SMILES Parse Error" in view.smiles_status.text()
    view.smiles_editor.setText("c1ccccc1O")
    assert view.smiles_status.text().startswith("valid") and not view.smiles_picture.pixmap().isNull()
    view.table.grab().save(str(tmp_path / "grid.png"))
    # export what is shown
    out = tmp_path / "out.csv"
    view.valid_only.setChecked(True)
    rows_shown = [view.proxy.mapToSource(view.proxy.index(i, 0)).row() for i in range(view.proxy.rowCount())]
    view.controller.export(out, rows_shown)
    qtbot.waitUntil(lambda: not view.controller.busy and out.exists(), timeout=30_000)
    assert "exported 37 molecules" in view.status.text()
    exported = list(csv.DictReader(open(out)))
    assert len(exported) == 37
    assert {r["id"] for r in exported} >= {"CHEMBL25"} and "qed" in exported[0]
    sdf_out = tmp_path / "out.sdf"
    view.controller.export(sdf_out, rows_shown)
    qtbot.waitUntil(lambda: not view.controller.busy and sdf_out.exists(), timeout=30_000)
    assert len([m for m in Chem.SDMolSupplier(str(sdf_out)) if m is not None]) == 37

def test_search_and_predict(view, qtbot):
    drop_files(view, [CSV])
    qtbot.waitUntil(lambda: view.model.rowCount() == 19 and not view.controller.busy, timeout=60_000)
    view.search_mode.setCurrentText("substructure")
    view.search_query.setText("c1ccccc1C(=O)[OH]")
    view.run_search(None)
    qtbot.waitUntil(lambda: view.session.table_search is not None and not view.controller.busy, timeout=60_000)
    ids = {view.proxy.index(i, ID).data() for i in range(view.proxy.rowCount())}
    assert "CHEMBL25" in ids and {view.proxy.index(i, SCORE).data() for i in range(view.proxy.rowCount())} == {"1.000"}
    view.show_all_button.click()
    assert view.proxy.rowCount() == 19
    view.search_mode.setCurrentText("similar")
    view.search_query.setText("CC(=O)Oc1ccccc1C(=O)O")
    view.run_search(None)
    qtbot.waitUntil(lambda: view.session.table_search is not None and not view.controller.busy, timeout=60_000)
    assert view.proxy.index(0, ID).data() == "CHEMBL25" and view.proxy.index(0, SCORE).data() == "1.000"
    view.predict_button.click()
    qtbot.waitUntil(lambda: bool(view.controller.rows[0].predictions) and not view.controller.busy, timeout=120_000)
    first = view.controller.rows[0]
    assert set(first.predictions) >= {"solubility_logS", "tox21:SR-p53"}
    assert set(first.in_domain) == set(first.predictions)
    view.select_source_row(0)
    text = view.detail_text.toPlainText()
    assert "solubility_logS" in text and "Nearest training molecules" in text
    assert "90% interval" in text and "90% set {" in text  # calibrated uncertainty beside each answer

def test_a_large_library_imports_on_worker_processes(view, qtbot, tmp_path):
    import gzip

    # 2,500 rows: above the size from which the import describes on worker processes
    with gzip.open(REPO / "tests" / "data" / "molecules" / "moses_subset_10k.csv.gz", "rt") as handle:
        head = [next(handle) for _ in range(2501)]
    library = tmp_path / "library.csv"
    library.write_text("".join(head))
    fractions = []
    view.controller.progress.connect(lambda p: p.fraction is not None and fractions.append(p.fraction))
    view.controller.open_paths([library])
    qtbot.waitUntil(lambda: view.model.rowCount() == 2500 and not view.controller.busy, timeout=240_000)
    assert fractions and fractions == sorted(fractions)
    rows = view.controller.rows
    probe = rows[1234]
    assert probe.properties["mw"] == pytest.approx(Descriptors.MolWt(Chem.MolFromSmiles(probe.smiles)))
    with_alerts = next(r for r in rows if r.alert_atoms)
    atoms = {a for matches in with_alerts.alert_atoms.values() for m in matches for a in m}
    assert max(atoms) < with_alerts.mol.GetNumAtoms()
    view.table.sortByColumn(MW, Qt.SortOrder.AscendingOrder)
    assert float(view.proxy.index(0, MW).data()) <= float(view.proxy.index(2499, MW).data())


def test_sorting_reorders_rows_and_the_selection_follows(view, qtbot):
    """A header click sorts the rows themselves (one Python sort, not a proxy calling data()
    per comparison); the selected molecule stays selected and shown, filters still apply."""
    view.controller.open_paths([CSV])
    qtbot.waitUntil(lambda: len(view.controller.rows) >= 10 and not view.controller.busy, timeout=60_000)
    view.table.selectRow(3)
    chosen = view.controller.rows[view.selected_rows()[0]]
    view.table.sortByColumn(MW, Qt.SortOrder.DescendingOrder)
    weights = [r.properties["mw"] for r in view.controller.rows]
    assert weights == sorted(weights, reverse=True)
    assert [view.controller.rows[r] for r in view.selected_rows()] == [chosen]
    assert chosen.id in view.detail_text.toPlainText()
    view.table.sortByColumn(ID, Qt.SortOrder.AscendingOrder)
    assert [r.id for r in view.controller.rows] == sorted(r.id for r in view.controller.rows)
    view.filter_text.setText(chosen.id)
    assert [view.proxy.index(i, ID).data() for i in range(view.proxy.rowCount())] == [chosen.id]


def test_predictions_outside_the_domain_are_withheld_until_run_anyway(view, qtbot, tmp_path):
    from healthfm_desktop.views.molecule_panel.workspace import SOLUBILITY

    table = tmp_path / "odd.csv"
    table.write_text("id,smiles\naspirin,CC(=O)Oc1ccccc1C(=O)O\niron,[Fe]\nwater,O\n", encoding="utf-8")
    drop_files(view, [table])
    qtbot.waitUntil(lambda: view.model.rowCount() == 3 and not view.controller.busy, timeout=60_000)
    view.predict_button.click()
    qtbot.waitUntil(lambda: all(r.predictions for r in view.controller.rows) and not view.controller.busy, timeout=120_000)
    cell = {view.model.index(r, ID).data(): view.model.index(r, SOLUBILITY).data() for r in range(3)}
    assert cell["iron"] == "withheld" and cell["water"] == "withheld"
    assert cell["aspirin"] not in ("withheld", None) and float(cell["aspirin"]) < 0
    iron = next(r for r in range(3) if view.model.index(r, ID).data() == "iron")
    view.select_source_row(iron)
    detail = view.detail_text.toPlainText()
    assert "solubility_logS: withheld: unlike the training molecules: Tanimoto 0.07 to the nearest, below the 0.28" in detail
    assert "tox21 (12 assays): withheld: unlike the training molecules" in detail
    view.grab().save(str(tmp_path / "molecules_withheld.png"))

    out = tmp_path / "withheld.csv"
    view.controller.export(out)
    qtbot.waitUntil(lambda: out.exists() and not view.controller.busy, timeout=30_000)
    rows = {r["id"]: r for r in csv.DictReader(out.open())}
    assert rows["iron"]["solubility_logS"] == "" and rows["iron"]["solubility_logS in_domain"] == "False"
    assert rows["aspirin"]["solubility_logS"] != ""

    view.show_withheld.setChecked(True)  # Run anyway: shown, and marked
    assert view.model.index(iron, SOLUBILITY).data().endswith("(out of domain, run anyway)")
    view.select_source_row(iron)
    assert "run anyway, out of domain: unlike the training molecules" in view.detail_text.toPlainText()
    view.grab().save(str(tmp_path / "molecules_run_anyway.png"))
    forced = tmp_path / "forced.csv"
    view.controller.export(forced)
    qtbot.waitUntil(lambda: forced.exists() and not view.controller.busy, timeout=30_000)
    assert next(r for r in csv.DictReader(forced.open()) if r["id"] == "iron")["solubility_logS"] != ""
    print("screenshots:", tmp_path)
