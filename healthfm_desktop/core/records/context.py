"""Assertion context with medspaCy's ConText: its packaged rules as the base, plus the rules
added after error analysis on the shared part of the NegEx/ConText test kit
(resources/terminology/context_rules_extra.json; figures in tests/core/test_records_context.py
and benchmarks/bench_notes.py). Each decision keeps its trigger and scope (Span._.modifiers).

Two changes to how the packaged rules are applied:
* every multi-word trigger tolerates runs of spaces and line breaks between its words
  ("negative   for"): spaCy makes those whitespace tokens, which a literal rule cannot match;
* a trigger that overlaps an entity is dropped (``prune_on_target_overlap``, which medspaCy
  1.3.1 passes to its graph as "prune modifiers overlapping targets"): "oral mucosa is moist
  with no erythema" as one finding is not negated, and its "no" does not cut other scopes."""

from __future__ import annotations

import json
from pathlib import Path

from medspacy.context import ConText, ConTextRule
from spacy.language import Language

from healthfm_desktop.core.records.terminology import terminology_dir

CATEGORY_TO_ASSERTION = {
    "NEGATED_EXISTENCE": "negated",
    "POSSIBLE_EXISTENCE": "uncertain",
    "HYPOTHETICAL": "uncertain",
    "HISTORICAL": "historical",
    "FAMILY": "family",
}
_SPACE = {"IS_SPACE": True, "OP": "?"}  # spaCy makes one token of a run of spaces


def _space_tolerant(pattern: list[dict]) -> list[dict]:
    out: list[dict] = []
    for k, token in enumerate(pattern):
        if k:
            out.append(dict(_SPACE))
        out.append(token)
    return out


def _rule_from_dict(item: dict, overrides: dict[str, dict]) -> ConTextRule | None:
    literal = item["literal"]
    change = overrides.get(literal.lower(), {})
    if change.get("drop"):
        return None
    pattern = item.get("pattern")
    if pattern is None and len(literal.split()) > 1:
        pattern = [{"LOWER": word} for word in literal.lower().split()]
    # ": no" (a BACKWARD "finding: no") must stay tight, or it would claim "Skin:  No rashes"
    if isinstance(pattern, list) and all(c.isalnum() or c in " '-" for c in literal):
        pattern = _space_tolerant(pattern)
    return ConTextRule(
        literal=literal,
        category=change.get("category", item["category"]),
        pattern=pattern,
        direction=change.get("direction", item.get("direction", "BIDIRECTIONAL")),
        max_scope=item.get("max_scope"),
        allowed_types=set(item["allowed_types"]) if item.get("allowed_types") else None,
        excluded_types=set(item["excluded_types"]) if item.get("excluded_types") else None,
    )


def context_rules(base_path: Path, extra_path: Path | None = None, extra: bool = True) -> list[ConTextRule]:
    """medspaCy's packaged rules (with our category overrides) followed by our extra rules."""
    extra_path = extra_path or terminology_dir() / "context_rules_extra.json"
    data = json.loads(extra_path.read_text(encoding="utf-8")) if extra and extra_path.is_file() else {}
    overrides = {k.lower(): v for k, v in data.get("overrides", {}).items()}
    base = json.loads(Path(base_path).read_text(encoding="utf-8"))["context_rules"]
    rules = [r for r in (_rule_from_dict(item, overrides) for item in base) if r is not None]
    rules += [r for r in (_rule_from_dict(item, {}) for item in data.get("context_rules", [])) if r is not None]
    return rules


def build_context(nlp: Language, extra: bool = True) -> ConText:
    context = nlp.add_pipe("medspacy_context", config={"rules": None, "prune_on_target_overlap": True})
    # the packaged rules file, found where medspaCy itself looks for it (also in a bundle)
    context.add(context_rules(Path(context.DEFAULT_RULES_FILEPATH), extra=extra))
    return context
