"""Every shipped model's card ends with "When not to use this", built from measured failure cases
that a retrained card keeps: data files read by the training scripts, or (encoders) rendered from
the stored learning curves by evaluate_foundation.py."""

from __future__ import annotations

import json
import sys

import pytest

from healthfm_desktop.core.inference.registry import load_registry
from tests.core.test_image_ai_helpers import REPO

TRAINING = REPO / "models" / "training"
sys.path.insert(0, str(TRAINING))
import model_cards  # noqa: E402  (models/training)

SHIPPED = sorted(m.name for m in load_registry().manifests.values() if m.source == "shipped" and not m.name.endswith("_int8"))


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_card_ends_with_its_measured_failure_cases(name):
    card = (REPO / "models" / f"{name}.md").read_text(encoding="utf-8")
    head, _, section = card.partition("\n## When not to use this\n")
    assert section.strip(), f"{name}.md has no 'When not to use this' section"
    assert "\n## " not in section, "the section is the card's last"
    if name in ("image_encoder", "text_encoder"):
        import evaluate_foundation

        curves = json.loads((TRAINING / "foundation_curves.json").read_text(encoding="utf-8"))
        kind = name.split("_")[0]
        other = json.loads((REPO / "models" / f"{name}.json").read_text()).get("metrics", {}).get("modality_knn5_accuracy_other_scanners")
        assert card.endswith("\n".join(evaluate_foundation.when_not_to_use(curves[kind], other)))
    else:
        assert card == model_cards.with_when_not_to_use(head, name)


def test_a_card_without_its_failure_cases_cannot_be_written():
    with pytest.raises(SystemExit, match="measured failure cases"):
        model_cards.with_when_not_to_use("# a card\n", "no_such_model")
