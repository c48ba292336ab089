"""`healthfm images classify|segment` to the CLI.md contract, on real images: JSON Lines on
stdout only, ``path: reason`` on stderr for bad files, the rest carried on, exit 1 at the end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from healthfm_desktop.cli import main
from healthfm_desktop.selftest import collect_checks
from tests.core.test_image_ai_helpers import IMAGE_SAMPLES, IMAGE_TEST_DATA, make_dicom

CASES = json.loads((IMAGE_TEST_DATA / "cases.json").read_text())


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_classify_png_jpeg_dicom_with_saliency(tmp_path, capsys):
    png = IMAGE_TEST_DATA / CASES["pneumoniamnist"][0]["file"]
    jpeg = tmp_path / "xray.jpg"
    Image.open(png).save(jpeg, quality=95)
    dicom = make_dicom(tmp_path / "xray.dcm", np.asarray(Image.open(png)), "CR")
    code = main(["images", "classify", str(png), str(jpeg), str(dicom), "--json", "--saliency", str(tmp_path / "sal")])
    out, err = capsys.readouterr()
    assert code == 0, err
    records = _json_lines(out)
    assert [r["path"] for r in records] == [str(png), str(jpeg), str(dicom)]
    for record in records:
        assert {"path", "label", "probabilities", "model"} <= set(record)
        assert record["model"] == "pneumonia_resnet"
        assert set(record["probabilities"]) == {"normal", "pneumonia"}
        assert record["label"] == max(record["probabilities"], key=record["probabilities"].get)
        heat = np.asarray(Image.open(record["saliency_path"]))
        assert heat.shape == (28, 28, 3)
    assert records[0]["probabilities"] == records[2]["probabilities"]  # PNG and DICOM: same pixels


def test_classify_labels_real_test_images_mostly_right(capsys):
    paths = [str(IMAGE_TEST_DATA / c["file"]) for c in CASES["pneumoniamnist"]]
    assert main(["images", "classify", *paths, "--json"]) == 0
    records = _json_lines(capsys.readouterr().out)
    truth = {str(IMAGE_TEST_DATA / c["file"]): c["label"] for c in CASES["pneumoniamnist"]}
    correct = sum(r["label"] == truth[r["path"]] for r in records)
    assert correct >= 8, f"only {correct}/10 right"


def test_bad_files_are_reported_and_the_rest_go_on(tmp_path, capsys):
    good = IMAGE_TEST_DATA / CASES["pneumoniamnist"][1]["file"]
    broken = tmp_path / "broken.png"
    broken.write_bytes(good.read_bytes()[:40])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    code = main(["images", "classify", str(broken), str(good), str(tmp_path / "missing.dcm"), str(text), "--json"])
    out, err = capsys.readouterr()
    assert code == 1
    assert [r["path"] for r in _json_lines(out)] == [str(good)]
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"{broken}: ") and lines[1].startswith(f"{tmp_path / 'missing.dcm'}: no such file")
    assert lines[2].startswith(f"{text}: ")
    assert "Traceback" not in err


def test_segment_writes_masks_at_input_size_and_measures_with_spacing(tmp_path, capsys):
    case = CASES["hc18"][0]
    png = IMAGE_TEST_DATA / case["file"]
    big = tmp_path / "full_size.png"
    Image.open(png).resize((416, 288), Image.BILINEAR).save(big)
    code = main(["images", "segment", str(png), str(big), "--out", str(tmp_path / "masks"), "--json",
                 "--pixel-spacing", str(case["pixel_spacing_mm"])])
    out, err = capsys.readouterr()
    assert code == 0, err
    first, second = _json_lines(out)
    assert {"path", "model", "mask_path", "measurements"} <= set(first)
    mask = np.asarray(Image.open(first["mask_path"]))
    assert mask.shape == (144, 208) and set(np.unique(mask)) == {0, 255}
    truth = np.asarray(Image.open(IMAGE_TEST_DATA / case["truth_mask"])) > 0
    assert 2 * np.sum((mask > 0) & truth) / (np.sum(mask > 0) + truth.sum()) > 0.9
    assert first["measurements"]["head_circumference_mm"] == pytest.approx(case["hc_mm"], rel=0.06)
    assert np.asarray(Image.open(second["mask_path"])).shape == (288, 416)
    # twice the pixels at the same --pixel-spacing: the head is twice as large in mm
    assert second["measurements"]["head_circumference_mm"] == pytest.approx(2 * first["measurements"]["head_circumference_mm"], rel=0.03)


def test_segment_dicom_spacing_and_no_spacing_note(tmp_path, capsys):
    sample = IMAGE_SAMPLES / "fetal_head_ultrasound.dcm"
    png = IMAGE_TEST_DATA / CASES["hc18"][1]["file"]
    same_stem = tmp_path / "sub"
    same_stem.mkdir()
    shutil.copy(png, same_stem / png.name)
    code = main(["images", "segment", str(sample), str(png), str(same_stem / png.name), "--out", str(tmp_path / "m"), "--json"])
    out, err = capsys.readouterr()
    assert code == 0
    dicom_record, png_record, copy_record = _json_lines(out)
    assert dicom_record["measurements"]["head_circumference_mm"] == pytest.approx(175.0, rel=0.06)
    assert "head_circumference_mm" not in png_record["measurements"]
    assert png_record["mask_path"] != copy_record["mask_path"]
    assert f"{png}: note: no pixel spacing" in err


def test_segment_bad_input_and_bad_spacing(tmp_path, capsys):
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    code = main(["images", "segment", str(empty), str(IMAGE_TEST_DATA / CASES["hc18"][2]["file"]), "--out", str(tmp_path / "o"), "--json"])
    out, err = capsys.readouterr()
    assert code == 1 and len(_json_lines(out)) == 1 and err.startswith(f"{empty}: ")
    assert main(["images", "segment", str(empty), "--out", str(tmp_path / "o"), "--pixel-spacing", "-1"]) == 2
    assert "pixel spacing must be a positive" in capsys.readouterr().err


def test_self_test_runs_both_models_on_the_bundled_samples():
    checks = dict(collect_checks())
    for name in ("model pneumonia_resnet", "model hc18_unet"):
        detail = checks[name]()
        assert "ms" in detail
    assert "head circumference" in checks["model hc18_unet"]()
