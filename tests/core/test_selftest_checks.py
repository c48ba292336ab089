"""The self-test runs every shipped model on bundled sample data (none is fed zeros, none only
verified), and its checks live beside core, not in the command-line layer."""

from __future__ import annotations

from healthfm_desktop import checks
from healthfm_desktop.core.inference.registry import load_registry


def test_every_shipped_model_has_a_check_on_bundled_samples():
    shipped = [m.name for m in load_registry().manifests.values() if m.source == "shipped"]
    on_samples = checks._sample_model_checks()
    assert shipped and not [name for name in shipped if name not in on_samples]
    labels = dict(checks.collect_checks())
    assert all(f"model {name}" in labels for name in shipped)


def test_model_checks_report_what_they_ran_on():
    labels = dict(checks.collect_checks())
    assert "chest_xray_pneumonia.dcm" in labels["model pneumonia_resnet_int8"]()
    assert "words of a sample note" in labels["model ner_clinical"]()
    assert "sampled from a sample drug" in labels["model smiles_generator"]()
    assert "fetal_head_ultrasound.dcm" in labels["model image_encoder"]()
    assert "lines of a sample note" in labels["model text_encoder"]()


def test_run_checks_reports_every_check_once_with_the_notes_checks_on_a_worker():
    by_label = dict(checks.collect_checks())

    def broken() -> str:
        raise ValueError("sample unreadable")

    chosen = [("model ner_clinical", by_label["model ner_clinical"]), ("RDKit data", by_label["RDKit data"]),
              ("a broken check", broken)]
    for in_worker in (True, False):
        results = {label: (passed, detail) for label, passed, detail, _ in checks.run_checks(chosen, worker_process=in_worker)}
        assert set(results) == {"model ner_clinical", "RDKit data", "a broken check"}
        assert results["model ner_clinical"][0] and "words of a sample note" in results["model ner_clinical"][1]
        assert results["RDKit data"][0] and "fr_*" in results["RDKit data"][1]
        assert results["a broken check"] == (False, "ValueError: sample unreadable")


def test_an_int8_model_that_disagrees_with_its_float_model_on_this_cpu_fails_the_self_test(monkeypatch):
    from dataclasses import replace

    from healthfm_desktop.core.imaging.ai import classification

    real = classification.classify

    def saturated(image, model=None, force=False):
        # what the full-range INT8 copy said on an AVX2 CPU without VNNI: the labels flipped
        result = real(image, model, force)
        if model is not None and model.manifest.name.endswith("_int8"):
            result = replace(result, probabilities={label: 1 - p for label, p in result.probabilities.items()})
        return result

    monkeypatch.setattr(classification, "classify", saturated)
    label, passed, detail, _ = checks.run_check("model pneumonia_resnet_int8", checks._classifier_check(True))
    assert not passed and "INT8 variant gives p(pneumonia) 0.0" in detail and "float model gives 0.9" in detail
    assert checks.run_check("float", checks._classifier_check(False))[1]


def test_a_worker_label_whose_check_reports_a_manifest_problem_runs_here_and_fails():
    def problem() -> str:
        raise RuntimeError("ner_clinical.onnx: sha256 mismatch")

    results = list(checks.run_checks([("model ner_clinical", problem)], worker_process=True))
    assert [(label, passed, detail) for label, passed, detail, _ in results] == [
        ("model ner_clinical", False, "RuntimeError: ner_clinical.onnx: sha256 mismatch")]
