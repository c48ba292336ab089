"""Analogue generation as a chemist uses it: select a real molecule, pick source, count and
minimum similarity, press Analogues; valid, new, scored rows appear with their origin and
similarity. A long generation can be cancelled and leaves the table as it was."""

from __future__ import annotations

import pytest
from rdkit import Chem

from healthfm_desktop.core.chemistry.session import HITS, TABLE
from healthfm_desktop.views.molecule_panel.workspace import ORIGIN
from tests.gui.test_molecule_panel import drugs_panel
from tests.gui.screenshots import SCREENSHOTS


@pytest.fixture
def view(qtbot):
    return drugs_panel(qtbot)


def test_model_and_mutation_analogues_of_the_selected_molecule(view, qtbot):
    known_order = [r.smiles for r in view.controller.rows]
    known = set(known_order)
    ibuprofen = next(i for i, r in enumerate(view.controller.rows) if r.id == "CHEMBL521")
    view.select_source_row(ibuprofen)
    view.analogue_source.setCurrentText("model + mutations")
    view.analogue_count.setValue(12)
    view.analogue_similarity.setValue(0.3)
    view.analogues_button.click()
    qtbot.waitUntil(lambda: view.session.view == HITS and not view.controller.busy, timeout=180_000)
    rows = view.controller.rows
    assert len(rows) == 12
    smiles = [r.smiles for r in rows]
    assert len(set(smiles)) == 12 and not set(smiles) & known
    assert all(Chem.MolFromSmiles(s) is not None for s in smiles)
    assert [r.score for r in rows] == sorted((r.score for r in rows), reverse=True)
    assert all("solubility_logS" in r.predictions and "tox21:SR-p53" in r.predictions for r in rows)
    assert all(float(r.fields["similarity to seed"]) >= 0.3 for r in rows)
    origins = [view.model.index(i, ORIGIN).data() for i in range(12)]
    assert all(o.split(" (")[0] in ("model", "mutation") for o in origins)
    assert any(o.startswith("model") for o in origins)
    view.grab().save(str(SCREENSHOTS / "molecule_analogues.png"))
    # the table is kept beside the analogues, one click away; analogues can join it
    view.show_all_button.click()
    assert [r.smiles for r in view.controller.rows] == list(known_order)
    view.hit_list_button.click()
    view.add_hits_button.click()
    assert len(view.controller.rows) == 19 + 12 and view.session.view == TABLE


def test_cancelling_a_generation_keeps_the_table(view, qtbot):
    before = [r.smiles for r in view.controller.rows]
    view.select_source_row(0)
    view.analogue_source.setCurrentText("model")
    view.analogue_count.setValue(500)  # 20,000 samples: long enough to be stopped midway
    view.analogues_button.click()
    qtbot.waitUntil(lambda: view.cancel_button.isVisible() and view.progress.value() > 0, timeout=60_000)
    view.cancel_button.click()
    qtbot.waitUntil(lambda: not view.controller.busy, timeout=30_000)
    assert [r.smiles for r in view.controller.rows] == before
    assert view.session.view == TABLE and view.session.hits is None
    assert "Cancelled" in view.status.text()


def test_generating_without_a_selection_says_what_to_do(view):
    view.table.clearSelection()
    view.analogues_button.click()
    assert "Select a molecule" in view.status.text()
    assert not view.controller.busy
