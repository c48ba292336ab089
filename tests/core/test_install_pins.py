"""The declared dependency set is the installed one, and its hardest corner (medspaCy on
spaCy 3.7 with numpy 1.26) really runs a clinical pipeline."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _pins(group: list[str]) -> dict[str, str]:
    pins = {}
    for requirement in group:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^;\s]+)", requirement.strip())
        assert match, f"dependency not pinned exactly: {requirement}"
        pins[match.group(1)] = match.group(2)
    return pins


def test_every_runtime_dependency_is_pinned_and_installed_at_its_pin():
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    for name, pinned in _pins(project["dependencies"]).items():
        assert version(name) == pinned, f"{name}: installed {version(name)}, pinned {pinned}"
    for name, pinned in _pins(project["optional-dependencies"]["test"]).items():
        assert version(name) == pinned


def test_medspacy_pipeline_runs_on_the_pinned_stack():
    import medspacy
    import numpy
    import spacy
    from medspacy.ner import TargetRule

    assert numpy.__version__.startswith("1.26")
    assert spacy.__version__.startswith("3.7")
    nlp = medspacy.load()
    nlp.get_pipe("medspacy_target_matcher").add(
        [TargetRule("pneumonia", "PROBLEM"), TargetRule("chest pain", "PROBLEM")]
    )
    doc = nlp("Patient denies chest pain. Findings consistent with pneumonia.")
    found = {(ent.text, ent._.is_negated) for ent in doc.ents}
    assert found == {("chest pain", True), ("pneumonia", False)}
