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
