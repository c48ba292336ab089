"""The Data quality panel as a user meets it: drop a molecule file with a duplicate, an unreadable
SMILES and an empty record, and an ICU file with a stay too sparse to score; the dock opens and
lists each, under its kind, with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from healthfm_desktop.app import build_main_window
from tests.gui.test_main_window import drop
from tests.gui.screenshots import SCREENSHOTS

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    # a home of its own: the window saves its dock layout, which the restart test must not inherit
    monkeypatch.setenv("HEALTHFM_HOME", str(tmp_path / "home"))
    window = build_main_window()
    qtbot.addWidget(window)
    window.show()
    yield window
    window.close()


def _texts(item) -> list[str]:
    out = [f"{item.text(0)} | {item.text(1)}"]
    for index in range(item.childCount()):
        out += _texts(item.child(index))
    return out


def test_dropped_files_get_a_data_quality_report(window, qtbot, tmp_path):
    library = tmp_path / "library.csv"
    library.write_text("id,smiles\naspirin,CC(=O)Oc1ccccc1C(=O)O\nagain,OC(=O)c1ccccc1OC(C)=O\nbroken,C1CC\nempty,\n",
                       encoding="utf-8")
    drop(window, [library])
    panel = window.data_quality_dock.widget()
    qtbot.waitUntil(lambda: panel.tree.topLevelItemCount() == 1, timeout=60_000)
    qtbot.waitUntil(lambda: window.data_quality_dock.isVisible(), timeout=5_000)
    lines = _texts(panel.tree.topLevelItem(0))
    assert "4 records: 1 unreadable, 1 duplicated, 1 missing" in lines[0]
    assert "Duplicated (1) | " in lines and any(line.startswith("again | the same molecule as aspirin") for line in lines)
    assert any(line.startswith("broken | ") and "unclosed ring" in line for line in lines)
    assert "empty | no structure in this record" in lines

    stays = tmp_path / "stays.csv"
    stays.write_text("patient_id,time,variable,value\n7,0,HR,80\n7,5,SysABP,0\n", encoding="utf-8")
    drop(window, [stays])
    qtbot.waitUntil(lambda: panel.tree.topLevelItemCount() == 2, timeout=60_000)
    lines = _texts(panel.tree.topLevelItem(0))  # newest first
    assert "stays.csv (patients)" in lines[0] and "1 stay:" in lines[0] and "1 out of range" in lines[0] and "1 missing" in lines[0]
    assert any("not enough data to score" in line for line in lines)
    qtbot.wait(50)
    window.data_quality_dock.grab().save(str(SCREENSHOTS / "data_quality_panel.png"))
    for name in ("molecules", "patients"):
        qtbot.waitUntil(lambda n=name: not window.controllers[n].busy, timeout=60_000)


def test_a_dropped_series_is_reported_from_the_images_index(window, qtbot, tmp_path):
    # the report comes from what the Images workspace read (no second scan of the folder)
    import shutil

    series = tmp_path / "ct"
    shutil.copytree(REPO / "tests/data/dicom/series/CT_head_phantom_philips_1mm_20sl", series)
    (series / "I700.dcm").unlink()  # a slice in the middle of the stack
    (series / "zz_junk.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\0\x10\0UI\xff\xff" + b"x" * 64)
    images = window.controllers["images"]
    with qtbot.waitSignal(images.import_scanned, timeout=60_000) as scanned:
        drop(window, [series])
    panel = window.data_quality_dock.widget()
    qtbot.waitUntil(lambda: panel.tree.topLevelItemCount() == 1, timeout=30_000)
    lines = _texts(panel.tree.topLevelItem(0))
    assert "ct (images)" in lines[0] and "19 images: 1 unreadable, 1 missing" in lines[0], lines[0]
    assert any(line.startswith(f"{series / 'zz_junk.dcm'} | ") for line in lines), lines
    assert any("about 1 slice(s) missing" in line for line in lines)
    assert scanned.args[1] == [series]
    qtbot.waitUntil(lambda: not images.busy, timeout=60_000)
