"""Assertion context with medspaCy's ConText: its packaged rules as the base, plus the rules
added after error analysis on the shared part of the NegEx/ConText test kit
(resources/terminology/context_rules_extra.json; figures in tests/core/test_records_context.py
and benchmarks/bench_notes.py). Each decision keeps its trigger and scope (Span._.modifiers).

Two changes to how the packaged rules are applied:
* every multi-word trigger tolerates runs of spaces and line breaks between its words
  ("negative   for"): spaCy makes those whitespace tokens, which a literal rule cannot match;
* a trigger that overlaps an entity is dropped (``prune_on_target_overlap``, which medspaCy
  1.3.1 passes to its graph as "prune modifiers overlapping targets"): "oral mucosa is moist
  with no erythema" as one finding is not negated, and its "no" does not cut other scopes.

Two changes to how they are run, for speed only (same results, tested against medspaCy's own
code in tests/core/test_records_equivalence.py):
* spaCy's Matcher tries every token pattern at every token, which made ConText's trigger search
  ~30% of the pipeline's time. ``PivotedMatcher`` tries a pattern only around the tokens that
  carry one of its required words (see its docstring);
* medspaCy's graph checks every (target, modifier) pair of a Doc; ``IndexedConTextGraph``
  checks each modifier only against the targets its scope can reach (found by bisection)."""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from pathlib import Path

import numpy as np
from medspacy.context import ConText, ConTextGraph, ConTextModifier, ConTextRule
from spacy.attrs import LOWER
from spacy.language import Language
from spacy.matcher import Matcher
from spacy.tokens import Doc
from spacy.vocab import Vocab

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


def _pivot(pattern: list[dict]) -> tuple[int, set[str], int, int] | None:
    """(index, words, before, after) of the first required token of a pattern that names its
    lower-case word(s): every match holds one of ``words`` at most ``before`` tokens after its
    start and ``after`` tokens before its end. None when there is no such token, or when a
    repeated token ("*", "+") leaves the match length unbounded."""
    if any(token.get("OP") in ("*", "+") for token in pattern):
        return None
    for index, token in enumerate(pattern):
        if token.get("OP") in ("?", "!"):
            continue
        lower = token.get("LOWER")
        if isinstance(lower, str):
            words = {lower}
        elif isinstance(lower, dict) and set(lower) == {"IN"}:
            words = set(lower["IN"])
        else:
            continue
        return index, words, index, len(pattern) - index - 1
    return None


def _required_words(pattern: list[dict]) -> list[set[str]]:
    """For each required token that names its word(s): the words; a match needs one of each."""
    required = []
    for token in pattern:
        lower = token.get("LOWER")
        if token.get("OP") in ("?", "*", "!"):
            continue
        if isinstance(lower, str):
            required.append({lower})
        elif isinstance(lower, dict) and set(lower) == {"IN"}:
            required.append(set(lower["IN"]))
    return required


class PivotedMatcher:
    """Drop-in for the spaCy Matcher inside medspaCy's MedspacyMatcher, with the same matches.

    spaCy's Matcher starts every pattern at every token. Here each pattern is filed under its
    pivot, the first required token that names its word(s) (``_pivot``), and is tried only in a
    window around the tokens carrying one of those words: as a token pattern only looks at the
    tokens it matches, a match found in a window is a match in the Doc, and every match in the
    Doc lies in the window of its pivot token. Patterns without a pivot (unbounded repeats, or
    no required word) run over the whole Doc, but only when the Doc holds all their required
    words. Matches come out ordered by (start, end, order the rules were added), which is the
    order spaCy's Matcher gives after medspaCy's stable sort by (start, end)."""

    def __init__(self, vocab: Vocab):
        self.vocab = vocab
        self._by_pivot: dict[int, Matcher] = {}
        self._reach: dict[int, tuple[int, int]] = {}  # pivot word -> (most tokens before, after)
        self._whole_doc: list[tuple[Matcher, list[np.ndarray]]] = []
        self._order: dict[int, int] = {}
        self._pivot_ids = np.zeros(0, dtype=np.uint64)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, key: str, patterns: list[list[dict]], on_match=None) -> None:
        key_id = self.vocab.strings.add(key)
        self._order.setdefault(key_id, len(self._order))
        for pattern in patterns:
            self._count += 1
            pivot = _pivot(pattern) if on_match is None else None  # a callback expects whole-Doc matching
            if pivot is None:
                matcher = Matcher(self.vocab)
                matcher.add(key, [pattern], on_match=on_match)
                required = [np.array([self.vocab.strings.add(w) for w in words], dtype=np.uint64) for words in _required_words(pattern)]
                self._whole_doc.append((matcher, required))
                continue
            _index, words, before, after = pivot
            for word in words:
                word_id = self.vocab.strings.add(word)
                self._by_pivot.setdefault(word_id, Matcher(self.vocab)).add(key, [pattern])
                most_before, most_after = self._reach.get(word_id, (0, 0))
                self._reach[word_id] = (max(most_before, before), max(most_after, after))
        self._pivot_ids = np.fromiter(self._by_pivot, dtype=np.uint64, count=len(self._by_pivot))

    def __call__(self, doc: Doc) -> list[tuple[int, int, int]]:
        length = len(doc)
        if not length:
            return []
        lowers = doc.to_array(LOWER)
        found: set[tuple[int, int, int]] = set()
        for matcher, required in self._whole_doc:
            if all(np.isin(words, lowers).any() for words in required):
                found.update(matcher(doc))
        for i in np.flatnonzero(np.isin(lowers, self._pivot_ids)).tolist():
            word_id = int(lowers[i])
            before, after = self._reach[word_id]
            start = max(0, i - before)
            window = doc[start : min(length, i + after + 1)]
            for key, s, e in self._by_pivot[word_id](window):
                found.add((key, start + s, start + e))
        order = self._order
        return sorted(found, key=lambda m: (m[1], m[2], order[m[0]]))


class IndexedConTextGraph(ConTextGraph):
    """medspaCy's ConTextGraph with the same edges, in the same order, found faster.

    medspaCy tests every target against every modifier (``modifier.modifies(target)``). A
    modifier can only modify a target that ``tuple_overlaps(scope, target)``: one that starts
    in [scope start, scope end) or ends in (scope start, scope end]. Targets (doc.ents) are
    sorted and disjoint, so both sets are index ranges found by bisection, and only those
    targets are handed to the unchanged ``modifies``; the same bisection finds the targets a
    modifier overlaps (prune_on_modifier_overlap). Anything else falls back to medspaCy."""

    def apply_modifiers(self):
        targets = list(self.targets)
        starts = [t.start for t in targets]
        ends = [t.end for t in targets]
        if any(starts[i] >= starts[i + 1] or ends[i] > starts[i + 1] for i in range(len(targets) - 1)):
            return super().apply_modifiers()
        if self.prune_on_modifier_overlap:
            for i in range(len(self.modifiers) - 1, -1, -1):
                m_start, m_end = self.modifiers[i].modifier_span
                # tuple_overlaps((t.start, t.end), span): t.start <= m_start < t.end or t.start < m_end <= t.end
                j = bisect_right(starts, m_start) - 1
                k = bisect_left(ends, m_end)
                if (j >= 0 and m_start < ends[j]) or (k < len(targets) and starts[k] < m_end):
                    self.modifiers.pop(i)
        for modifier in self.modifiers:
            s_start, s_end = modifier.scope_span
            reachable = set(range(bisect_left(starts, s_start), bisect_left(starts, s_end)))
            reachable.update(range(bisect_right(ends, s_start), bisect_right(ends, s_end)))
            for i in sorted(reachable):
                if modifier.modifies(targets[i]):
                    modifier.modify(targets[i])
        edges = []
        for modifier in self.modifiers:
            modifier.reduce_targets()
            for target in modifier._targets:
                edges.append((target, modifier))
        self.edges = edges


class ClinicalConText(ConText):
    """medspaCy's ConText, run with IndexedConTextGraph (its ``__call__`` otherwise as in
    medspaCy 1.3.1)."""

    def __call__(self, doc, targets: str | None = None):
        if not targets and self.input_span_type == "ents":
            targets = doc.ents
        elif not targets and self.input_span_type == "group":
            targets = doc.spans[self.span_group_name]
        elif targets:
            targets = getattr(doc._, targets)
        graph = IndexedConTextGraph(prune_on_modifier_overlap=self.prune_on_target_overlap)
        graph.targets = targets
        graph.modifiers = []
        matcher = self._ConText__matcher
        for match_id, start, end in matcher(doc):
            rule = matcher.rule_map[self.nlp.vocab[match_id].text]
            graph.modifiers.append(ConTextModifier(rule, start, end, doc, max_scope=self.max_scope))
        graph.update_scopes()
        graph.apply_modifiers()
        for target, modifier in graph.edges:
            target._.modifiers += (modifier,)
        if self.context_attributes_mapping:
            self.set_context_attributes(graph.edges)
        doc._.context_graph = graph
        return doc


Language.factory("healthfm_context")(ClinicalConText)


def build_context(nlp: Language, extra: bool = True) -> ConText:
    # named as medspaCy's component: code that looks ConText up by name finds it
    context = nlp.add_pipe("healthfm_context", name="medspacy_context", config={"rules": None, "prune_on_target_overlap": True})
    # ConText keeps its MedspacyMatcher, which keeps a spaCy Matcher for token patterns: swap
    # that one for the pivoted matcher before any rule is added (medspaCy 1.3.1 names them so)
    rule_matcher = context._ConText__matcher
    rule_matcher._MedspacyMatcher__matcher = PivotedMatcher(nlp.vocab)
    # the packaged rules file, found where medspaCy itself looks for it (also in a bundle)
    context.add(context_rules(Path(context.DEFAULT_RULES_FILEPATH), extra=extra))
    return context
