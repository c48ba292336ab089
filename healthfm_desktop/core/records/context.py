"""Assertion context with medspaCy's ConText: its packaged rules as the base, plus our rules as
data (resources/terminology/context_rules_extra.json; figures in docs/assertion_metrics.md), run
by the ``healthfm_context`` spaCy factory. Each decision keeps its trigger and scope
(Span._.modifiers).

Two changes to how the packaged rules are applied:
* every multi-word trigger tolerates runs of spaces and line breaks between its words
  ("negative   for"): spaCy makes those whitespace tokens, which a literal rule cannot match;
* a trigger that overlaps an entity is dropped (``prune_on_target_overlap``): "oral mucosa is
  moist with no erythema" as one finding is not negated, and its "no" does not cut other scopes.
How it is run fast is medspacy_adapter's business.

Target rules (``target_rules`` of the rules file, run by the ``healthfm_target_context`` factory
after ConText) assert the finding whose own words hold the cue: "psychiatric history", "status
post CABG", "tobacco use" (a social-history item wherever it is written); the cue is the trigger
and the finding its scope.

Chronic list items (``chronic_list_items`` of the rules file): a finding that is a whole
sentence by itself ("HYPERTENSION.", "2. Hyperlipidemia.") and names a chronic condition of the
list is historical: the kit's historical means begun more than two weeks before, which a chronic
condition named as a bare list item (a past-history or problem list whose header the sentence
does not carry) is by its nature. The finding is its own trigger and scope."""

import functools
import json
from bisect import bisect_right
from pathlib import Path

import numpy as np

from medspacy.context import ConText, ConTextModifier, ConTextRule
from medspacy.context.context import DEFAULT_ATTRIBUTES
from spacy.attrs import LOWER
from spacy.language import Language
from spacy.matcher import Matcher
from spacy.tokens import Doc

from healthfm_desktop.core.records.medspacy_adapter import make_context, plain_context
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


def _rule_from_dict(item: dict, overrides: dict[str, dict], terminated_by: dict[str, list[str]]) -> ConTextRule | None:
    literal = item["literal"]
    change = overrides.get(literal.lower(), {})
    if change.get("drop"):
        return None
    pattern = change.get("pattern", item.get("pattern"))
    category = change.get("category", item["category"])
    if pattern is None and len(literal.split()) > 1:
        pattern = [{"LOWER": word} for word in literal.lower().split()]
    # ": no" (a BACKWARD "finding: no") must stay tight, or it would claim "Skin:  No rashes"
    if isinstance(pattern, list) and all(c.isalnum() or c in " '-" for c in literal):
        pattern = _space_tolerant(pattern)
    return ConTextRule(
        literal=literal,
        category=category,
        pattern=pattern,
        direction=change.get("direction", item.get("direction", "BIDIRECTIONAL")),
        max_scope=change.get("max_scope", item.get("max_scope")),
        allowed_types=set(item["allowed_types"]) if item.get("allowed_types") else None,
        excluded_types=set(item["excluded_types"]) if item.get("excluded_types") else None,
        terminated_by=set(item.get("terminated_by", ())) | set(terminated_by.get(category, ())) or None,
    )


def default_extra_rules_path() -> Path:
    return terminology_dir() / "context_rules_extra.json"


def extra_rules_data(extra_path: Path | None = None) -> dict:
    """Our rules file (``extra_path`` or the bundled one) as read from JSON, {} when there is
    none. Cached by path and modification time: building a pipeline reads it for ConText, the
    target rules and the chronic list items, once. Callers must not change what it returns."""
    extra_path = Path(extra_path or default_extra_rules_path())
    try:
        modified = extra_path.stat().st_mtime_ns
    except OSError:
        return {}
    return _read_rules_file(str(extra_path), modified)


@functools.lru_cache(maxsize=8)
def _read_rules_file(path: str, _modified: int) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def context_rules(base_path: Path, extra_path: Path | None = None, extra: bool = True) -> list[ConTextRule]:
    """medspaCy's packaged rules (with our category overrides) followed by our extra rules."""
    data = extra_rules_data(extra_path) if extra else {}
    overrides = {k.lower(): v for k, v in data.get("overrides", {}).items()}
    terminated_by = data.get("terminated_by", {})
    base = json.loads(Path(base_path).read_text(encoding="utf-8"))["context_rules"]
    rules = [r for r in (_rule_from_dict(item, overrides, terminated_by) for item in base) if r is not None]
    rules += [r for r in (_rule_from_dict(item, {}, terminated_by) for item in data.get("context_rules", [])) if r is not None]
    return rules


@functools.lru_cache(maxsize=4)
def trigger_words(categories: frozenset[str]) -> frozenset[str]:
    """Lower-cased literals of the shipped ConText rules (medspaCy's and ours) of ``categories``:
    a cue of an assertion, which the entity finder never takes for a finding by itself."""
    import medspacy.context.context as medspacy_context

    # the packaged rules file where ConText's DEFAULT_RULES_FILEPATH points
    rules = context_rules(Path(medspacy_context.__file__).resolve().parents[2] / "resources" / "en" / "context_rules.json")
    return frozenset(" ".join(r.literal.lower().split()) for r in rules
                     if r.category in categories and r.literal and r.direction.upper() != "TERMINATE")


@Language.factory("healthfm_context", default_config={"extra_rules": True, "extra_rules_file": "", "fast": True})
def make_clinical_context(nlp: Language, name: str, extra_rules: bool, extra_rules_file: str, fast: bool) -> ConText:
    """ConText with medspaCy's packaged rules and (``extra_rules``) ours, from
    ``extra_rules_file`` or the bundled file; ``fast`` = medspacy_adapter's matcher and graph."""
    context = make_context(nlp, name) if fast else plain_context(nlp, name)
    # the packaged rules file, found where medspaCy itself looks for it (also in a bundle)
    context.add(context_rules(Path(context.DEFAULT_RULES_FILEPATH), Path(extra_rules_file) if extra_rules_file else None, extra=extra_rules))
    return context



def target_rules(extra_path: Path | None = None) -> list[ConTextRule]:
    """The rules file's ``target_rules``: cues that assert the finding they are part of."""
    items = extra_rules_data(extra_path).get("target_rules", [])
    return [r for r in (_rule_from_dict(item, {}, {}) for item in items) if r is not None]


def chronic_list_items(extra_path: Path | None = None) -> tuple[frozenset[str], ConTextRule | None]:
    """The rules file's chronic conditions (lower-cased, single spaces) and the rule that stands
    as their trigger; (empty, None) when the file has none."""
    item = extra_rules_data(extra_path).get("chronic_list_items")
    if not item or not item.get("terms"):
        return frozenset(), None
    terms = frozenset(" ".join(t.lower().split()) for t in item["terms"])
    return terms, ConTextRule(literal="chronic condition as a bare list item", category="HISTORICAL", pattern=None)


def _bare_list_item(doc: Doc, ent) -> bool:
    """True when the finding's sentence holds nothing else but punctuation, spaces, numbers and
    a one-letter list label ("B.", "03)", "1.")."""
    sent = doc[ent.start].sent
    for token in list(doc[sent.start : ent.start]) + list(doc[ent.end : sent.end]):
        if token.is_punct or token.is_space or token.like_num or (len(token.text) == 1 and token.is_alpha):
            continue
        if token.text.rstrip(".)").isdigit() or (len(token.text) == 2 and token.text[0].isalpha() and token.text[1] in ".)"):
            continue
        return False
    return True


def _assert(doc: Doc, ent, rule: ConTextRule, start: int, end: int) -> None:
    """Give the finding ``rule``'s category, with the cue ``doc[start:end]`` as its trigger and
    the finding as its scope (what ConText records for its own decisions)."""
    modifier = ConTextModifier(rule, start, end, doc)
    modifier.update_scope(ent)
    ent._.modifiers += (modifier,)
    for attribute, value in DEFAULT_ATTRIBUTES[rule.category].items():
        setattr(ent._, attribute, value)


def _words_of(pattern: list[dict]) -> set[str] | None:
    """Words of which every match of the pattern holds one: those of its required LOWER tokens
    (a match holds every required token); None when it has none."""
    words: set[str] = set()
    for token in pattern:
        lower = token.get("LOWER")
        if token.get("OP") in ("?", "*"):
            continue
        if isinstance(lower, str):
            words.add(lower)
        elif isinstance(lower, dict) and set(lower) == {"IN"}:
            words.update(lower["IN"])
    return words or None


class TargetContext:
    """Runs target rules inside each finding (not PHI) that ConText has not already given that
    category; the longest cue wins where two overlap. Findings (doc.ents) are disjoint."""

    def __init__(self, nlp: Language, rules: list[ConTextRule], chronic: frozenset[str] = frozenset(), chronic_rule: ConTextRule | None = None):
        self.rules = rules
        self.chronic, self.chronic_rule = chronic, chronic_rule
        self.matcher = Matcher(nlp.vocab)
        words: set[str] | None = set()  # every word a rule can match (None: not known)
        for k, rule in enumerate(rules):
            pattern = rule.pattern if isinstance(rule.pattern, list) else [{"LOWER": t.lower_} for t in nlp.make_doc(rule.literal)]
            self.matcher.add(str(k), [pattern])
            own = _words_of(pattern)
            words = None if words is None or own is None else words | own
        self._words = None if words is None else np.array([nlp.vocab.strings.add(w) for w in words], dtype=np.uint64)

    def __call__(self, doc: Doc) -> Doc:
        ents = [ent for ent in doc.ents if not ent.label_.startswith("PHI_")]
        if not ents:
            return doc
        if self.chronic_rule is not None:
            self._chronic_items(doc, ents)
        if not self.rules:
            return doc
        starts = [ent.start for ent in ents]
        if self._words is None:
            candidates = range(len(ents))
        else:  # only the findings that hold a word of some rule (few) go to the Matcher
            hits = np.flatnonzero(np.isin(doc.to_array(LOWER), self._words)).tolist()
            candidates = sorted({k for i in hits if (k := bisect_right(starts, i) - 1) >= 0 and i < ents[k].end})
        found: dict[int, list[tuple[int, int, int, int]]] = {}
        for k in candidates:
            offset = ents[k].start
            for match_id, start, end in self.matcher(ents[k]):
                found.setdefault(k, []).append((start - end, offset + start, offset + end, match_id))
        strings = doc.vocab.strings
        for k, matches in found.items():
            ent = ents[k]
            extension = ent._
            done = {m.category for m in extension.modifiers}
            for _longest_first, start, end, match_id in sorted(matches):
                rule = self.rules[int(strings[match_id])]
                if rule.category in done or rule.category not in DEFAULT_ATTRIBUTES:
                    continue
                done.add(rule.category)
                _assert(doc, ent, rule, start, end)
        return doc

    def _chronic_items(self, doc: Doc, ents) -> None:
        for ent in ents:
            if " ".join(ent.text.lower().split()) not in self.chronic:
                continue
            extension = ent._
            if extension.is_historical or extension.is_negated or any(m.category == "HISTORICAL" for m in extension.modifiers):
                continue
            if not _bare_list_item(doc, ent):
                continue
            _assert(doc, ent, self.chronic_rule, ent.start, ent.end)


@Language.factory("healthfm_target_context", default_config={"extra_rules": True, "extra_rules_file": ""})
def make_target_context(nlp: Language, name: str, extra_rules: bool, extra_rules_file: str) -> TargetContext:
    """TargetContext with the target rules of ``extra_rules_file`` or the bundled file (none
    without ``extra_rules``)."""
    path = Path(extra_rules_file) if extra_rules_file else None
    if not extra_rules:
        return TargetContext(nlp, [])
    return TargetContext(nlp, target_rules(path), *chronic_list_items(path))
