"""Images workspace: a de-identified export of a series that may show burned-in text asks first
(default No, nothing written before the answer), and 1x2 / 2x2 layouts scroll series of the
same frame of reference to the same place in the patient, not the same index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from PySide6.QtWidgets import QMessageBox

from tests.gui.test_image_viewer import open_and_wait, shown_images_harness
from tests.gui.screenshots import SCREENSHOTS

REPO = Path(__file__).resolve().parents[2]
DICOM = REPO / "tests" / "data" / "dicom"
CT_SERIES = DICOM / "series" / "CT_head_phantom_philips_1mm_20sl"
MR_SERIES = DICOM / "series" / "MR_T1_3D_MPRAGE_sag_philips_1mm_170sl"


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    yield from shown_images_harness(qtbot, tmp_path, monkeypatch)


# --------------------------------------------------------------------- burned-in annotation
def _marked_ct(tmp_path: Path) -> Path:
    ds = pydicom.dcmread(DICOM / "single" / "CT_small.dcm")
    ds.BurnedInAnnotation = "YES"
    path = tmp_path / "in" / "burned.dcm"
    path.parent.mkdir()
    ds.save_as(path)
    return path


def test_burned_in_series_asks_before_writing_and_no_writes_nothing(window, qtbot, tmp_path):
    controller, workspace, _ = open_and_wait(window, qtbot, [_marked_ct(tmp_path)])
    out = tmp_path / "out"
    workspace.request_deidentified_export(out)
    box = workspace.burned_in_question
    assert box is not None and box.isVisible()
    assert "burned into its pixels" in box.text() and "Export anyway?" in box.informativeText()
    assert box.defaultButton() is box.button(QMessageBox.StandardButton.No)  # Enter says No
    assert not out.exists() or not any(out.iterdir())  # nothing written while the question is open
    box.grab().save(str(SCREENSHOTS / "image_viewer_burned_in_question.png"))
    box.button(QMessageBox.StandardButton.No).click()
    qtbot.waitUntil(lambda: workspace.burned_in_question is None, timeout=5_000)
    qtbot.wait(200)
    assert not controller.busy and not out.exists()
    assert "cancelled" in workspace.status_label.text()


def test_burned_in_series_exported_after_yes(window, qtbot, tmp_path):
    controller, workspace, _ = open_and_wait(window, qtbot, [_marked_ct(tmp_path)])
    out = tmp_path / "out"
    workspace.request_deidentified_export(out)
    with qtbot.waitSignal(controller.status, timeout=30_000, check_params_cb=lambda t: "De-identified" in t):
        workspace.burned_in_question.button(QMessageBox.StandardButton.Yes).click()
    written = list(out.glob("*.dcm"))
    assert len(written) == 1
    copy = pydicom.dcmread(written[0])
    assert copy.BurnedInAnnotation == "YES" and copy.PatientIdentityRemoved == "YES"


def test_ultrasound_asks_too_and_a_plain_ct_exports_without_a_question(window, qtbot, tmp_path):
    controller, workspace, _ = open_and_wait(window, qtbot, [DICOM / "single" / "US_RGB_explicit_LE_cropped.dcm"])
    workspace.request_deidentified_export(tmp_path / "us")
    assert workspace.burned_in_question is not None  # US: burned-in text by modality
    workspace.burned_in_question.button(QMessageBox.StandardButton.No).click()
    qtbot.waitUntil(lambda: workspace.burned_in_question is None, timeout=5_000)
    open_and_wait(window, qtbot, [DICOM / "single" / "CT_small.dcm"])
    ct_key = next(s.key for s in controller.series if s.modality == "CT")
    workspace.show_series(ct_key)
    with qtbot.waitSignal(controller.status, timeout=30_000, check_params_cb=lambda t: "De-identified" in t):
        workspace.request_deidentified_export(tmp_path / "ct")
    assert workspace.burned_in_question is None
    assert len(list((tmp_path / "ct").glob("*.dcm"))) == 1
    assert not (tmp_path / "us").exists()


# --------------------------------------------------------------------- synchronised scrolling
def _every_other_slice(tmp_path: Path) -> Path:
    """A second real series of the same study and frame of reference: every other slice of
    the CT series (2 mm apart instead of 1), under a new Series Instance UID."""
    folder = tmp_path / "ct_2mm"
    folder.mkdir()
    series_uid = generate_uid()
    slices = sorted((pydicom.dcmread(p) for p in CT_SERIES.glob("*.dcm")), key=lambda d: float(d.ImagePositionPatient[2]))
    for number, ds in enumerate(slices[::2], start=1):
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesNumber, ds.SeriesDescription, ds.InstanceNumber = 99, "every other slice", number
        ds.save_as(folder / f"{number:03d}.dcm")
    return folder


def _position_along_normal(ds) -> float:
    row, col = np.array(ds.ImageOrientationPatient[:3], float), np.array(ds.ImageOrientationPatient[3:], float)
    return float(np.dot(np.array(ds.ImagePositionPatient, float), np.cross(row, col)))


def test_same_frame_of_reference_scrolls_to_the_nearest_position(window, qtbot, tmp_path):
    derived = _every_other_slice(tmp_path)
    controller, workspace, _ = open_and_wait(window, qtbot, [CT_SERIES, derived])
    by_count = {s.frame_count: s for s in controller.series}
    full, half = by_count[20], by_count[10]
    assert full.frame_of_reference_uid == half.frame_of_reference_uid and full.series_uid != half.series_uid
    workspace.set_layout("1x2")
    left, right = workspace.slots[0], workspace.slots[1]
    workspace._activate(0)
    workspace.show_series(full.key)
    workspace._activate(1)
    workspace.show_series(half.key)
    workspace._activate(0)
    # positions by hand from the files, in display order
    full_z = [_position_along_normal(f.instance.header) for f in full.frames]
    half_z = np.array([_position_along_normal(f.instance.header) for f in half.frames])
    for target in (7, 12, 19, 0):
        workspace.scroll(left, target - left.index)
        assert left.index == target
        expected = int(np.argmin(np.abs(half_z - full_z[target])))
        assert right.index == expected, (target, right.index, expected)
        assert abs(half_z[right.index] - full_z[target]) <= 1.0 + 1e-6  # within half the 2 mm spacing
    workspace.scroll(left, 7 - left.index)
    assert right.index != left.index  # the same place in the patient, not the same index
    # and the other way round: scrolling the 2 mm series moves the 1 mm one to the same slice
    workspace._activate(1)
    assert right.index != 8
    workspace.scroll(right, 8 - right.index)
    assert full_z[left.index] == pytest.approx(half_z[8], abs=1e-6)
    assert "Synced" in left.viewport.badges()["sync"]
    qtbot.waitUntil(lambda: left.viewport.frame() is not None and right.viewport.frame() is not None, timeout=30_000)
    qtbot.wait(100)  # the new layout settles
    workspace.grab().save(str(SCREENSHOTS / "image_viewer_1x2_synced.png"))


def test_other_frame_of_reference_is_not_synchronised_and_says_so(window, qtbot, tmp_path):
    controller, workspace, _ = open_and_wait(window, qtbot, [CT_SERIES, MR_SERIES])
    ct = next(s for s in controller.series if s.modality == "CT")
    mr = next(s for s in controller.series if s.modality == "MR")
    workspace.set_layout("1x2")
    left, right = workspace.slots[0], workspace.slots[1]
    workspace._activate(0)
    workspace.show_series(ct.key, 0)
    workspace._activate(1)
    workspace.show_series(mr.key, 40)
    workspace._activate(0)
    workspace.scroll(left, 5)
    assert left.index == 5 and right.index == 40  # not moved
    assert right.viewport.badges()["sync"] == "Not synced: other frame of reference"
    assert controller.sync_relation(ct.key, mr.key) == (False, "other frame of reference")
    workspace.sync_check.setChecked(False)
    assert right.viewport.badges()["sync"] == "Sync off"
    workspace.set_layout("1x1")
    assert "sync" not in workspace.slots[0].viewport.badges()


def test_two_series_of_a_study_exported_one_after_the_other_stay_one_study(window, qtbot, tmp_path):
    derived = _every_other_slice(tmp_path)
    controller, workspace, _ = open_and_wait(window, qtbot, [CT_SERIES, derived])
    for n, series in enumerate(controller.series):
        workspace.show_series(series.key)
        with qtbot.waitSignal(controller.status, timeout=30_000, check_params_cb=lambda t: "De-identified" in t):
            workspace.request_deidentified_export(tmp_path / f"export{n}")
        assert workspace.burned_in_question is None  # CT, no burned-in flag: no question
    first = [pydicom.dcmread(p) for p in (tmp_path / "export0").glob("*.dcm")]
    second = [pydicom.dcmread(p) for p in (tmp_path / "export1").glob("*.dcm")]
    assert sorted([len(first), len(second)]) == [10, 20]
    studies = {d.StudyInstanceUID for d in first + second}
    assert len(studies) == 1 and studies.isdisjoint({controller.series[0].study_uid})
    assert len({d.FrameOfReferenceUID for d in first + second}) == 1  # still one frame of reference
    assert len({str(d.PatientID) for d in first + second}) == 1


# ------------------------------------------------------------------- export options dialog
def test_the_export_dialog_keeps_dates_shifted_and_writes_patient_study_series_folders(window, qtbot, tmp_path):
    controller, workspace, _ = open_and_wait(window, qtbot, [CT_SERIES])
    workspace.request_deidentified_export()  # Export > Series as de-identified DICOM…
    dialog = workspace.export_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.shift_dates.isChecked()  # dates are not blanked unless the user asks
    assert not dialog.keep_descriptions.isChecked()
    assert dialog.layout_choice.currentData() is True
    ok = dialog.buttons.button(dialog.buttons.StandardButton.Ok)
    assert not ok.isEnabled()  # no folder yet
    dialog.folder_edit.setText(str(tmp_path / "export"))
    dialog.keep_descriptions.setChecked(True)
    dialog.grab().save(str(SCREENSHOTS / "image_viewer_export_dialog.png"))
    with qtbot.waitSignal(controller.status, timeout=60_000, check_params_cb=lambda t: "De-identified" in t):
        ok.click()
    written = sorted((tmp_path / "export").rglob("*.dcm"))
    assert len(written) == 20
    assert len({p.parent for p in written}) == 1 and len(written[0].relative_to(tmp_path / "export").parts) == 4
    original = pydicom.dcmread(sorted(CT_SERIES.glob("*.dcm"))[0])
    copy = pydicom.dcmread(written[0])
    assert copy.StudyDate and copy.StudyDate != original.StudyDate
    assert copy.LongitudinalTemporalInformationModified == "MODIFIED"
    assert copy.SeriesDescription == original.SeriesDescription
    patient, study, series = written[0].parent.relative_to(tmp_path / "export").parts
    assert patient == copy.PatientID and copy.SeriesDescription.split()[0].replace(",", "_") in series
