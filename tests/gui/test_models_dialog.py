"""The Models window as a user drives it: pick a labelled molecule file (ClinTox, a task no
shipped model was trained for), train, read the cross-validated metrics and label counts, run
the new model on molecules, export it and import it on a second workstation (another home)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PySide6.QtCore import QThreadPool, Qt

from healthfm_desktop.controllers.adaptation import AdaptationController
from healthfm_desktop.views.models.dialog import ModelsDialog

REPO = Path(__file__).resolve().parents[2]
CLINTOX = REPO / "tests" / "data" / "molecules" / "clintox_sample.csv"


@pytest.fixture
def dialog(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("HEALTHFM_HOME", str(tmp_path / "home"))
    # the shared thread pool (two threads on a 2-core machine) free of an earlier module's jobs,
    # so a click's job is not queued behind them past the waits below
    QThreadPool.globalInstance().waitForDone(60_000)
    controller = AdaptationController()
    window = ModelsDialog(controller)
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.models.rowCount() > 0, timeout=30000)
    return window


def _names(window) -> list[str]:
    return [window.models.item(r, 0).text() for r in range(window.models.rowCount())]


def test_label_train_see_metrics_run_export_import(dialog, qtbot, tmp_path, monkeypatch):
    assert "pneumonia_resnet" in _names(dialog) and "image_encoder" in _names(dialog)
    rows = list(csv.DictReader(CLINTOX.open()))
    data = tmp_path / "labels.csv"
    with data.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "smiles", "toxic"])
        writer.writerows((r["id"], r["smiles"], "yes" if r["CT_TOX"] == "1" else "no") for r in rows[:120])
    queries = tmp_path / "queries.csv"
    with queries.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "smiles"])
        writer.writerows((r["id"], r["smiles"]) for r in rows[120:130])

    dialog.kind.setCurrentText("molecule")
    dialog.data.setText(str(data))
    dialog.label_column.setText("toxic")
    dialog.name.setText("trial_toxicity")
    with qtbot.waitSignal(dialog.controller.trained, timeout=120000):
        qtbot.mouseClick(dialog.train_button, Qt.MouseButton.LeftButton)
    text = dialog.metrics.text()
    assert "trial_toxicity v1" in text and "auc" in text and "95 % CI" in text
    assert "no: " in text and "yes: " in text  # label counts
    assert dialog.progress.value() == 100
    qtbot.waitUntil(lambda: "trial_toxicity" in _names(dialog), timeout=30000)
    row = _names(dialog).index("trial_toxicity")
    assert dialog.models.item(row, 3).text() == "user" and dialog.models.item(row, 4).text() == "ok"
    dialog.grab().save(str(tmp_path / "models_dialog.png"))

    dialog.models.selectRow(row)
    dialog.run_paths.setText(str(queries))
    with qtbot.waitSignal(dialog.controller.predicted, timeout=60000):
        qtbot.mouseClick(dialog.run_button, Qt.MouseButton.LeftButton)
    assert dialog.results.rowCount() == 10
    assert dialog.results.item(0, 0).text() == rows[120]["id"]
    assert dialog.results.item(0, 1).text().split(" ")[0] in ("yes", "no")

    exported = tmp_path / "trial_toxicity.healthfm-model"
    with qtbot.waitSignal(dialog.controller.exported, timeout=30000):
        dialog.controller.export("trial_toxicity", str(exported))
    assert exported.is_file()
    monkeypatch.setenv("HEALTHFM_HOME", str(tmp_path / "colleague"))
    with qtbot.waitSignal(dialog.controller.imported, timeout=30000):
        dialog.controller.import_model(str(exported))
    assert dialog.status.text() == "Imported trial_toxicity 1"
    qtbot.waitUntil(lambda: "trial_toxicity" in _names(dialog), timeout=30000)


def test_bad_label_file_gives_a_message_and_nothing_is_saved(dialog, qtbot, tmp_path):
    data = tmp_path / "bad.csv"
    data.write_text("smiles\nCCO\n", encoding="utf-8")
    dialog.kind.setCurrentText("molecule")
    dialog.data.setText(str(data))
    dialog.name.setText("nothing")
    with qtbot.waitSignal(dialog.controller.failed, timeout=30000):
        qtbot.mouseClick(dialog.train_button, Qt.MouseButton.LeftButton)
    assert "no 'label' column" in dialog.status.text()
    qtbot.waitUntil(lambda: dialog.train_button.isEnabled(), timeout=10000)
    assert "nothing" not in _names(dialog)


def test_tools_menu_opens_the_models_window(qtbot):
    from healthfm_desktop.app import build_main_window

    window = build_main_window()
    qtbot.addWidget(window)
    window.show()
    action = next(a for a in window.tools_menu.actions() if a.text() == "&Models and Adaptation…")
    action.trigger()
    opened = [w for w in window.findChildren(ModelsDialog)]
    assert len(opened) == 1 and opened[0].isVisible()
    qtbot.waitUntil(lambda: opened[0].models.rowCount() > 0, timeout=30000)
    window.close()
