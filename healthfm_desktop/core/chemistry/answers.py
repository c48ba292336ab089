"""The one withholding rule of the molecule models, for `molecules predict` and the panel alike:
a value outside its model's applicability domain is withheld unless the user asks for it."""

from __future__ import annotations


def shown_answers(values: dict, in_domain: dict, intervals: dict, prediction_sets: dict, force: bool) -> dict:
    """Values, intervals and sets as the user is given them: a key outside its model's
    applicability domain has all three withheld (None) unless ``force`` ("Run anyway")."""
    shown = {key: force or in_domain.get(key, True) for key in values}
    return {
        "predictions": {k: v if shown[k] else None for k, v in values.items()},
        "intervals": {k: v if shown.get(k, True) else None for k, v in intervals.items()},
        "prediction_sets": {k: v if shown.get(k, True) else None for k, v in prediction_sets.items()},
    }
