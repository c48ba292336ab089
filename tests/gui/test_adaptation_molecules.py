"""Adaptation inside the Molecules workspace, as a user does it: drop ClinTox molecules (a task no
shipped model was trained for), take the labels from the file's CT_TOX column and tag one more by
hand, train, read the cross-validated metrics, run the new model on selected rows (a molecule
unlike the training ones has its answer withheld until "Run anyway"), export and import it on a
second workstation, and find the molecules most similar to one with their labels, by cosine on
the embedding or by Tanimoto on Morgan bits, and select one by clicking it."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import QItemSelectionModel, Qt

from tests.gui.test_molecule_panel import REPO, drop_files, panel_view

CLINTOX = REPO / "tests" / "data" / "molecules" / "clintox_sample.csv"


@pytest.fixture
def view(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("HEALTHFM_HOME", str(tmp_path / "home"))
    widget = panel_view(qtbot)
    extra = tmp_path / "extra.csv"
    extra.write_text("id,smiles\nsodium-chloride,[Na+].[Cl-]\n", encoding="utf-8")
    drop_files(widget, [CLINTOX, extra])
    qtbot.waitUntil(lambda: widget.model.rowCount() == 201 and not widget.controller.busy, timeout=60_000)
    widget.plots.setCurrentIndex(widget.plots.count() - 1)
    return widget


def select_ids(view, ids: list[str]) -> None:
    selection = view.table.selectionModel()
    selection.clearSelection()
    for row, item in enumerate(view.session.shown):
        if item.id in ids:
            index = view.proxy.mapFromSource(view.model.index(row, 0))
            selection.select(index, QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows)


def test_label_train_metrics_run_export_import_similar(view, qtbot, tmp_path, monkeypatch):
    panel = view.adaptation
    assert "CT_TOX" in [panel.label_column.itemText(i) for i in range(panel.label_column.count())]
    panel.label_column.setCurrentText("CT_TOX")
    qtbot.mouseClick(panel.column_button, Qt.MouseButton.LeftButton)
    counts = panel.controller.labels.counts()
    assert sum(counts.values()) == 200 and set(counts) == {"0", "1"}
    saved = json.loads((tmp_path / "home" / "labels" / "molecules.json").read_text())
    assert saved["labels"]["clintox-380"] == "0"  # autosaved as the user labels

    first = next(row.id for row in view.session.shown if row.fields.get("CT_TOX") == "0")
    select_ids(view, [first])
    panel.label_edit.setCurrentText("1")
    qtbot.mouseClick(panel.tag_button, Qt.MouseButton.LeftButton)
    assert panel.controller.labels.label_of(first) == "1"
    assert panel.counts.text() == ", ".join(f"{k}: {v}" for k, v in panel.controller.labels.counts().items())

    panel.name.setText("clintox_tox")
    with qtbot.waitSignal(panel.controller.trained, timeout=180_000):
        qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
    text = panel.metrics.text()
    assert "clintox_tox v1" in text and "auc" in text and "95 % CI" in text and "on 200 items" in text
    assert panel.progress.value() == 100
    assert len(panel.reliability.getPlotItem().listDataItems()) == 2  # diagonal + the model's bins
    qtbot.waitUntil(lambda: panel.model.findText("clintox_tox") >= 0, timeout=30_000)
    view.grab().save(str(tmp_path / "molecules_adapt.png"))

    ids = [row.id for row in view.session.shown if row.id.startswith("clintox")][1:3] + ["sodium-chloride"]
    select_ids(view, ids)
    with qtbot.waitSignal(panel.controller.predicted, timeout=60_000):
        qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    answers = {panel.results.item(r, 0).text(): panel.results.item(r, 1).text() for r in range(panel.results.rowCount())}
    assert set(answers) == set(ids)
    assert answers[ids[0]].split(" ")[0] in ("0", "1") and "p = " in answers[ids[0]]
    rows = {panel.results.item(r, 0).text(): r for r in range(panel.results.rowCount())}
    assert all(panel.results.item(rows[i], 2).text() for i in ids[:2])  # the conformal set beside each answer
    # table salt is nothing like the training drugs: its answer is withheld until "Run anyway"
    salt = rows["sodium-chloride"]
    assert panel.results.item(salt, 1).text().startswith("withheld") and panel.results.item(salt, 2).text() == ""
    assert panel.anyway_button.isEnabled()
    qtbot.mouseClick(panel.anyway_button, Qt.MouseButton.LeftButton)
    assert "outside its domain" in panel.results.item(salt, 1).text()
    assert panel.results.item(salt, 3).text() == "no" and not panel.anyway_button.isEnabled()
    assert "outside its domain" not in panel.results.item(rows[ids[0]], 1).text()
    view.grab().save(str(tmp_path / "molecules_adapt_run.png"))

    exported = tmp_path / "clintox_tox.healthfm-model"
    with qtbot.waitSignal(panel.controller.exported, timeout=30_000):
        panel.controller.export("clintox_tox", str(exported))
    monkeypatch.setenv("HEALTHFM_HOME", str(tmp_path / "colleague"))
    with qtbot.waitSignal(panel.controller.imported, timeout=30_000):
        panel.controller.import_model(str(exported))
    assert panel.status.text() == "Imported clintox_tox 1"
    assert (tmp_path / "colleague" / "models").is_dir()

    select_ids(view, [ids[0]])
    with qtbot.waitSignal(panel.controller.similar_found, timeout=60_000):
        qtbot.mouseClick(panel.similar_button, Qt.MouseButton.LeftButton)
    assert panel.neighbours.rowCount() == 10
    neighbours = [panel.neighbours.item(r, 0).text() for r in range(10)]
    assert ids[0] not in neighbours
    scores = [float(panel.neighbours.item(r, 1).text()) for r in range(10)]
    assert scores == sorted(scores, reverse=True) and scores[0] <= 1.0
    labels = {panel.neighbours.item(r, 2).text() for r in range(10)}
    assert labels <= {"0", "1", ""} and labels - {""}
    assert ids[0] in panel.similar_caption.text() and "cosine" in panel.similar_caption.text()
    cosine = neighbours

    # the other metric: Tanimoto on the Morgan bits, as RDKit computes it
    from rdkit import DataStructs
    from rdkit.Chem import rdFingerprintGenerator

    assert [panel.similar_metric.itemData(i) for i in range(panel.similar_metric.count())] == ["cosine", "tanimoto"]
    panel.similar_metric.setCurrentIndex(1)
    with qtbot.waitSignal(panel.controller.similar_found, timeout=60_000):
        qtbot.mouseClick(panel.similar_button, Qt.MouseButton.LeftButton)
    assert "Tanimoto" in panel.similar_caption.text() and panel.neighbours.rowCount() == 10
    rows = [(panel.neighbours.item(r, 0).text(), float(panel.neighbours.item(r, 1).text()), panel.neighbours.item(r, 2).text())
            for r in range(10)]
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    mols = {row.id: row.mol for row in view.session.rows if row.mol is not None}
    query = generator.GetFingerprint(mols[ids[0]])
    others = [i for i in mols if i != ids[0]]
    expected = dict(zip(others, DataStructs.BulkTanimotoSimilarity(query, [generator.GetFingerprint(mols[i]) for i in others])))
    best = sorted(expected.values(), reverse=True)[:10]
    assert [score for _, score, _ in rows] == pytest.approx(best, abs=1e-3)
    assert all(expected[i] == pytest.approx(score, abs=1e-3) for i, score, _ in rows)
    assert {label for _, _, label in rows} <= {"0", "1", ""}
    assert [i for i, _, _ in rows] != cosine  # a different ranking from the embedding's
    qtbot.wait(100)  # the scroll area's relayout for the caption's lines
    view.grab().save(str(tmp_path / "molecules_similar_tanimoto.png"))

    # clicking a neighbour selects its row in the table
    qtbot.mouseClick(panel.neighbours.viewport(), Qt.MouseButton.LeftButton,
                     pos=panel.neighbours.visualItemRect(panel.neighbours.item(3, 0)).center())
    assert view.selected_ids() == [rows[3][0]]


def test_training_without_labels_says_so(view, qtbot):
    panel = view.adaptation
    panel.name.setText("nothing")
    with qtbot.waitSignal(panel.controller.failed, timeout=5_000):
        qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
    assert "Label some molecules first" in panel.status.text()


def test_head_libraries_are_warmed_up_once_there_are_labels(view, qtbot):
    """Opening a workspace does not import scikit-learn and SciPy (seconds of CPU at every start);
    the first label does, on a worker, ahead of the first training."""
    controller = view.adaptation.controller
    assert controller.warmed is None
    controller.tag([view.session.shown[0].id], "toxic")
    assert controller.warmed is not None
    qtbot.waitUntil(lambda: not controller.warmed.is_running, timeout=120_000)
