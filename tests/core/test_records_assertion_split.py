"""The NegEx/ConText kit's seeded dev / held-out test split is disjoint, stable and grouped by
sentence, and the assertion evaluation script runs on a small portion of it."""

from __future__ import annotations

import json
import subprocess
import sys

from healthfm_desktop.core.records.evaluation import (
    bootstrap_binary_f1,
    negex_split_group,
    read_negex_kit,
    split_negex_kit,
)


def _kit(repo_root):
    return read_negex_kit(repo_root / "models" / "training" / "data" / "text" / "negex_context.jsonl")


def test_split_is_disjoint_complete_and_grouped_by_sentence(repo_root):
    records = _kit(repo_root)
    dev, test = split_negex_kit(records)
    dev_ids, test_ids = {r["id"] for r in dev}, {r["id"] for r in test}
    assert not dev_ids & test_ids
    assert dev_ids | test_ids == {r["id"] for r in records}
    assert not {negex_split_group(r) for r in dev} & {negex_split_group(r) for r in test}
    assert 0.4 < len(test) / len(records) < 0.6
    # both portions have the rare attributes to score
    for portion in (dev, test):
        assert sum(r["spans"][0]["attrs"]["is_negated"] for r in portion) > 100
        assert sum(r["spans"][0]["attrs"]["is_historical"] for r in portion) > 50


def test_split_does_not_depend_on_order_or_on_other_records(repo_root):
    records = _kit(repo_root)
    dev, test = split_negex_kit(records)
    dev_again, test_again = split_negex_kit(list(reversed(records[::3])))
    assert {r["id"] for r in test_again} == {r["id"] for r in test} & {r["id"] for r in records[::3]}
    assert {r["id"] for r in dev_again} <= {r["id"] for r in dev}
    # another seed gives another split
    _, other = split_negex_kit(records, seed=1)
    assert {r["id"] for r in other} != {r["id"] for r in test}


def test_bootstrap_interval_brackets_the_score():
    gold = [True] * 30 + [False] * 70
    pred = [True] * 25 + [False] * 5 + [True] * 4 + [False] * 66
    low, high = bootstrap_binary_f1(gold, pred, seed=3)
    f1 = 2 * 25 / (2 * 25 + 4 + 5)
    assert low < f1 < high and 0 < low and high <= 1
    assert bootstrap_binary_f1([True] * 10, [True] * 10) == (1.0, 1.0)


def test_evaluation_script_reports_dev_and_test_on_a_small_portion(repo_root, tmp_path):
    out = tmp_path / "figures.json"
    page = tmp_path / "assertions.md"
    result = subprocess.run(
        [sys.executable, str(repo_root / "models" / "training" / "evaluate_assertions.py"), "--limit", "40", "--json", str(out), "--markdown", str(page)],
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "held-out test: negation F1" in result.stdout
    figures = json.loads(out.read_text())
    for rules in ("medspaCy packaged rules", "shipped rules"):
        for portion in ("dev", "test"):
            scores = figures[rules][portion]
            assert scores["sentences"] == 40
            for key in ("negated", "historical", "hypothetical", "family"):
                assert 0.0 <= scores[key]["ci95"][0] <= scores[key]["ci95"][1] <= 1.0
    assert figures["shipped rules"]["test"]["negated"]["positives"] > 0
    assert "held-out test portion" in page.read_text()
