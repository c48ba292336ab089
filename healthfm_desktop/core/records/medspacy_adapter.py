"""The one module that reaches into medSpaCy 1.3.1's private internals, for speed only: ConText
run with a pivoted trigger matcher and an indexed graph (same matches, same edges; tested against
medSpaCy's own ConText in tests/core/test_records_equivalence.py). Any other medSpaCy version gets
medSpaCy's plain ConText (``fast_context_supported``).

Measured by benchmarks/bench_context_adapter.py (40 MACCROBAT case reports, best of 2, same
process, identical annotations): the whole notes pipeline is 1.33x faster with it than with
medSpaCy's own ConText (4.61 s vs 6.13 s).

Private names used, all of medSpaCy 1.3.1: ``ConText._ConText__matcher`` (its MedspacyMatcher),
``MedspacyMatcher._MedspacyMatcher__matcher`` (the spaCy Matcher inside it),
``ConTextModifier._targets`` (read, as medSpaCy's own graph does), and ``ConText.__call__``'s body,
repeated in ``FastConText.__call__`` with the graph swapped."""

from __future__ import annotations

from bisect import bisect_left, bisect_right

import medspacy
import numpy as np
from medspacy.context import ConText, ConTextGraph, ConTextModifier
from spacy.attrs import LOWER
from spacy.language import Language
from spacy.matcher import Matcher
from spacy.tokens import Doc
from spacy.vocab import Vocab

SUPPORTED_MEDSPACY = "1.3.1"


def fast_context_supported() -> bool:
    return medspacy.__version__ == SUPPORTED_MEDSPACY


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


class FastConText(ConText):
    """medspaCy's ConText, run with PivotedMatcher and IndexedConTextGraph (its ``__call__``
    otherwise as in medspaCy 1.3.1)."""

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


def make_context(nlp: Language, name: str) -> ConText:
    """A ConText component with no rules yet: the fast one on medSpaCy 1.3.1, else medSpaCy's."""
    if not fast_context_supported():
        return ConText(nlp, name=name, rules=None, prune_on_target_overlap=True)
    context = FastConText(nlp, name=name, rules=None, prune_on_target_overlap=True)
    # swap the Matcher inside ConText's MedspacyMatcher before any rule is added
    context._ConText__matcher._MedspacyMatcher__matcher = PivotedMatcher(nlp.vocab)
    return context


def medspacy_matcher(nlp: Language, name: str, pivoted: bool):
    """A MedspacyMatcher with no rules, with spaCy's Matcher inside or (``pivoted``) ours."""
    from medspacy.common.medspacy_matcher import MedspacyMatcher

    matcher = MedspacyMatcher(nlp, name=name)
    if pivoted:
        matcher._MedspacyMatcher__matcher = PivotedMatcher(nlp.vocab)
    return matcher


def plain_context(nlp: Language, name: str) -> ConText:
    """medSpaCy's own ConText with no rules: the reference the fast one is tested against."""
    return ConText(nlp, name=name, rules=None, prune_on_target_overlap=True)
