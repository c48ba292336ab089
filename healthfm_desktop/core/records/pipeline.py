"""The clinical-note pipeline: spaCy ``blank("en")`` + our sentence splitter, entities (user
terms > PHI rules > attribute/lab-value rules > bundled vocabularies > the trained ONNX tagger),
medspaCy's sectionizer (its rules + ours) and medspaCy's ConText (its rules + ours), then
medication attributes linked to their drug and lab values to their test.

Build it once per process (``build_pipeline``) and feed it many notes (``annotate_many``, which
batches through ``nlp.pipe``); it needs no network and no download."""

import functools
import gc
import itertools
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import spacy
from loguru import logger
from spacy.attrs import IDX, LENGTH, LOWER
from spacy.language import Language
from spacy.lang.en.stop_words import STOP_WORDS
from spacy.matcher import PhraseMatcher
from spacy.tokens import Doc, Span
from spacy.util import filter_spans, minibatch

from healthfm_desktop.core.records import context as _context  # noqa: F401  (registers healthfm_context)
from healthfm_desktop.core.records import sentences as _sentences  # noqa: F401  (registers healthfm_sentences)
from healthfm_desktop.core.records.annotation import AnnotatedNote, Entity, Section, Trigger
from healthfm_desktop.core.records.context import CATEGORY_TO_ASSERTION, trigger_words
from healthfm_desktop.core.records.labels import MEDICATION_ATTRIBUTES
from healthfm_desktop.core.records.phi import find_phi
from healthfm_desktop.core.records.rules import find_rule_spans
from healthfm_desktop.core.records.sections import SECTION_ASSERTIONS
from healthfm_desktop.core.records.terminology import TermMatcher, load_bundled_terms

logger.disable("PyRuSH")  # medspaCy's sentence splitter logs DEBUG lines through loguru

PRIORITY = {"user_terms": 0, "phi_rule": 1, "rule": 2, "vocabulary": 3, "model": 4}
# between two spans of one source and length, the label that wins: a value both rules match
# ("50%", "1.2 mg/L") is a LAB_VALUE rather than a DOSE (on the MACCROBAT train + dev documents
# 80 of 86 such "%" matches were lab values)
TIE_RANK = {"LAB_VALUE": 0}

if not Span.has_extension("hf_source"):
    Span.set_extension("hf_source", default="")
if not Span.has_extension("hf_confidence"):
    # the tagger's probability for a model span (the least of its tokens'); rules, vocabularies
    # and the user's terms have none (1.0: they are not guesses)
    Span.set_extension("hf_confidence", default=1.0)
if not Span.has_extension("hf_chars"):
    # exact character offsets of a match when they fall inside a token ("9.1 g/dL." is one
    # token but the value is "9.1 g/dL")
    Span.set_extension("hf_chars", default=None)

# never an entity by themselves: prescription words, ConText cue words the tagger sometimes tags
# ("Status post", "S/p"), pronouns and phrases of well-being (issue 21's precision problems)
NEVER_ENTITIES = frozenset(
    {"sig", "disp", "refills", "patient", "pt", "the patient", "case", "history", "course", "status", "status post", "s", "s/p", "prior",
     "them", "it", "they", "he", "she", "this", "that", "these", "those", "which", "doing well"}
)

# a model span that is only an assertion cue of these ConText categories ("redemonstrated",
# "previously") is the cue, not a finding: taken as an entity it would also hide the cue from ConText
CUE_CATEGORIES = frozenset({"HISTORICAL"})

# a section header line ("LABORATORY DATA:", "Imaging studies:") names a section, not a test
# (issue 21); a bare test name as its own line ("CBC:") is not a header: a header has a section word
_HEADER = re.compile(
    r"(?m)^[ \t]*((?:[A-Za-z/&-]+[ \t]+){0,4}?(?:data|results?|studies|findings|labs?|laboratory|imaging|exam(?:ination)?|workup|work-up)(?:[ \t]+[A-Za-z/&-]+){0,3})[ \t]*:",
    re.IGNORECASE,
)


def header_ranges(text: str) -> list[tuple[int, int]]:
    """Character ranges of section-header lines' names (before their colon): all capitals, or
    starting with the section word ("Laboratory data:"; "Blood culture results:" names a test)."""
    return [m.span(1) for m in _HEADER.finditer(text) if m.group(1).isupper() or _HEADER.match(m.group(1).split()[0] + ":")]


# function words ("via", "both", "again", "further"): a model span made only of these is not an
# entity (issue 21); body words and number words among spaCy's stop words are kept ("back",
# "two"), and so is an upper-case one ("US", ultrasound)
_NUMBER_WORDS = {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "fifteen", "twenty", "forty", "fifty", "sixty", "hundred"}
FUNCTION_WORDS = frozenset(STOP_WORDS - {"back", "front", "side", "top", "bottom"} - _NUMBER_WORDS)


def _only_function_words(original: str) -> bool:
    return original.islower() and all(w in FUNCTION_WORDS for w in original.split())


def _verb_as_medication(words: str, label: str) -> bool:
    """"cured", "prepped", "draped": a single lower-case past participle is not a drug."""
    return label == "MEDICATION" and " " not in words and words.endswith("ed") and words.isalpha()
# "negative"/"positive" right before "for" is ConText's trigger ("negative for cytokeratin"), not
# a lab value: as an entity it would prune the trigger and leave the finding unnegated
RESULT_CUES = frozenset({"negative", "positive", "neg", "pos"})
# strings (words, numbers, IDs) the notes may add to the spaCy vocabulary before the pipeline is
# rebuilt (~0.75 kB of memory each, StringStore + Lexeme + tokenizer cache: ~15 MB at most;
# a rebuild takes ~2-3 s, about once every 2,000 notes of a stream of real notes)
REFRESH_STRINGS = 20_000
SEGMENT_NOTES = 256  # notes per nlp.pipe run in a stream; the pipeline can be rebuilt between two


@functools.lru_cache(maxsize=4)
def shared_tagger(models_folder: str = ""):
    """The ONNX tagger of a models folder ("" = the app's), loaded once per process: a rebuilt
    pipeline reuses it."""
    from healthfm_desktop.core.records.ner_model import NerTagger

    registry = None
    if models_folder:
        from healthfm_desktop.core.inference.registry import ModelRegistry

        registry = ModelRegistry(Path(models_folder))
    return NerTagger(registry)


@functools.lru_cache(maxsize=1)
def bundled_terms() -> tuple[tuple[str, str], ...]:
    return tuple(load_bundled_terms())


def term_patterns(nlp: Language, terms: Sequence[tuple[str, str]]) -> dict[str, list[tuple[int, ...]]]:
    """Per label, each term's tokens as LOWER hashes, the form PhraseMatcher.add takes (and its
    pickles hold); the first list that names a term decides its label."""
    by_label: dict[str, list[str]] = {}
    seen = set()
    for term, label in terms:
        key = term.lower()
        if key in seen:
            continue
        seen.add(key)
        by_label.setdefault(label, []).append(term)
    return {label: [tuple(doc.to_array(LOWER).tolist()) for doc in nlp.tokenizer.pipe(label_terms)]
            for label, label_terms in by_label.items()}


def cached_term_patterns(nlp: Language, terms: Sequence[tuple[str, str]]) -> dict[str, list[tuple[int, ...]]]:
    """term_patterns from the user's cache folder, where they were built from the same terms by
    the same spaCy version and language, else built now and cached (tokenising the 17k bundled
    terms is ~1.6 s of every start; a cache that cannot be read or written is rebuilt or skipped)."""
    import hashlib
    import io

    from healthfm_desktop.core.paths import user_cache_dir
    from healthfm_desktop.core.storage.atomic import atomic_write_bytes

    digest = hashlib.sha256(f"{spacy.__version__}\t{nlp.lang}\n".encode())
    for term, label in terms:
        digest.update(f"{term}\t{label}\n".encode())
    digest = digest.hexdigest()
    path = None
    try:
        path = user_cache_dir() / f"term_patterns_{digest[:16]}.npz"
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["digest"]) == digest:
                patterns = {}
                for label, lengths, hashes in zip(stored["labels"].tolist(), np.split(stored["lengths"], stored["label_ends"][:-1]), np.split(stored["hashes"], stored["hash_ends"][:-1])):
                    flat, ends = hashes.tolist(), np.cumsum(lengths).tolist()
                    patterns[label] = [tuple(flat[a:b]) for a, b in zip([0, *ends[:-1]], ends)]
                return patterns
    except (OSError, ValueError, KeyError):  # missing, unreadable or not ours
        pass
    patterns = term_patterns(nlp, terms)
    lengths = [np.array([len(p) for p in label_patterns], dtype=np.int64) for label_patterns in patterns.values()]
    hashes = [np.array([h for p in label_patterns for h in p], dtype=np.uint64) for label_patterns in patterns.values()]
    buffer = io.BytesIO()
    np.savez(buffer, digest=np.array(digest), labels=np.array(list(patterns)), lengths=np.concatenate(lengths),
             label_ends=np.cumsum([len(x) for x in lengths]), hashes=np.concatenate(hashes), hash_ends=np.cumsum([len(x) for x in hashes]))
    if path is not None:
        try:
            atomic_write_bytes(path, buffer.getvalue())
        except OSError:
            pass
    return patterns


class EntityFinder:
    """Finds candidate spans from every source and keeps the best non-overlapping set as
    ``doc.ents`` (lower PRIORITY wins, then the longer span). A user term keeps its exact
    characters and is never trimmed."""

    def __init__(self, nlp: Language, user_terms: Sequence[tuple[str, str]], bundled: Sequence[tuple[str, str]], tagger=None,
                 cache_patterns: bool = False):
        self.user_terms = TermMatcher(user_terms)
        self.vocabulary_matcher = self._matcher(nlp, bundled, cached=cache_patterns)
        self._cue_ids = np.array([nlp.vocab.strings.add(cue) for cue in RESULT_CUES], dtype=np.uint64)
        self.tagger = tagger

    def set_user_terms(self, terms: Sequence[tuple[str, str]]) -> None:
        self.user_terms = TermMatcher(terms)

    @staticmethod
    def _matcher(nlp: Language, terms: Sequence[tuple[str, str]], cached: bool = False) -> PhraseMatcher | None:
        if not terms:
            return None
        matcher = PhraseMatcher(nlp.vocab, attr="LOWER")
        for label, patterns in (cached_term_patterns(nlp, terms) if cached else term_patterns(nlp, terms)).items():
            matcher.add(label, patterns)
        return matcher

    def candidates(self, doc: Doc, model_spans=None) -> list[tuple[int, int, str, str]]:
        found: list[tuple[int, int, str, str]] = []
        self._chars: dict[tuple[int, int, str], tuple[int, int]] = {}
        self._confidence: dict[tuple[int, int, str], float] = {}
        strings = doc.vocab.strings
        text = doc.text  # Doc.text joins every token on each access: read it once
        for source, spans in (("user_terms", self.user_terms.find(text)), ("phi_rule", find_phi(text)), ("rule", find_rule_spans(text))):
            for start, end, label in spans:
                span = doc.char_span(start, end, alignment_mode="expand")
                if span is not None and len(span):
                    found.append((span.start, span.end, label, source))
                    if (span.start_char, span.end_char) != (start, end):
                        self._chars[(span.start, span.end, label)] = (start, end)
        offsets = doc.to_array([IDX, LENGTH]).tolist()
        if self.vocabulary_matcher is not None:
            for m, s, e in self.vocabulary_matcher(doc):
                if text[offsets[s][0] : offsets[e - 1][0] + offsets[e - 1][1]].lower() not in NEVER_ENTITIES:
                    found.append((s, e, strings[m], "vocabulary"))
        cues = set()
        lowers = doc.to_array(LOWER)
        for i in np.flatnonzero(np.isin(lowers, self._cue_ids)).tolist():
            following = next((t for t in doc[i + 1 : i + 3] if not t.is_space), None)
            if following is not None and following.lower_ == "for":
                cues.add(i)
        if cues:
            found = [c for c in found if c[3] == "user_terms" or not (c[1] - c[0] == 1 and c[0] in cues)]
        if self.tagger is not None:
            cue_words = trigger_words(CUE_CATEGORIES)
            for s, e, label, confidence in (self.tagger.spans(doc) if model_spans is None else model_spans):
                original = text[offsets[s][0] : offsets[e - 1][0] + offsets[e - 1][1]]  # doc[s:e].text
                words = original.lower()
                # a bare number, or a prescription abbreviation, is never a TEST/PROBLEM by itself
                if any(c.isalpha() for c in words) and words not in NEVER_ENTITIES and " ".join(words.split()) not in cue_words and not (e - s == 1 and s in cues) and not (original.islower() and (_verb_as_medication(words, label) or _only_function_words(original))):
                    found.append((s, e, label, "model"))
                    self._confidence[(s, e, label)] = confidence
        headers = header_ranges(text)
        if headers:
            def in_header(s: int, e: int) -> bool:
                first, last = offsets[s][0], offsets[e - 1][0] + offsets[e - 1][1]
                return any(a <= first and last <= b for a, b in headers)

            found = [c for c in found if c[3] == "user_terms" or c[2] != "TEST" or not in_header(c[0], c[1])]
        return found

    def pipe(self, docs: Iterable[Doc], batch_size: int = 16) -> Iterator[Doc]:
        """nlp.pipe calls this: the tagger sees a batch of docs at once."""
        for batch in minibatch(docs, batch_size):
            model_spans = self.tagger.spans_many(batch) if self.tagger is not None else [None] * len(batch)
            for doc, spans in zip(batch, model_spans):
                yield self(doc, spans)

    def __call__(self, doc: Doc, model_spans=None) -> Doc:
        chosen: list[Span] = []
        taken = bytearray(len(doc))
        ranked = sorted(self.candidates(doc, model_spans), key=lambda c: (PRIORITY[c[3]], -(c[1] - c[0]), TIE_RANK.get(c[2], 1), c[0]))
        for start, end, label, source in ranked:
            if any(taken[start:end]):
                continue
            exact = self._chars.get((start, end, label)) if source in ("user_terms", "phi_rule", "rule") else None
            confidence = self._confidence.get((start, end, label)) if source == "model" else None
            if source != "user_terms":
                # a span never starts or ends on whitespace or bare punctuation
                while start < end and (doc[start].is_space or doc[start].is_punct and doc[start].text not in "([<>"):
                    start += 1
                while end > start and (doc[end - 1].is_space or doc[end - 1].is_punct and doc[end - 1].text not in ")%]"):
                    end -= 1
            if start >= end:
                continue
            span = Span(doc, start, end, label=label)
            span._.hf_source = source
            if confidence is not None:
                span._.hf_confidence = confidence
            if exact and span.start_char <= exact[0] < exact[1] <= span.end_char:
                span._.hf_chars = exact
            chosen.append(span)
            taken[start:end] = b"\x01" * (end - start)
        doc.ents = sorted(chosen, key=lambda s: s.start)
        return doc


@Language.factory(
    "healthfm_entities",
    default_config={"user_terms": [], "use_vocabulary": True, "use_model": True, "models_folder": ""},
)
def make_entity_finder(nlp: Language, name: str, user_terms: list[list[str]], use_vocabulary: bool, use_model: bool, models_folder: str) -> EntityFinder:
    """Entities from the user's terms ([term, label] pairs), the PHI and attribute rules, the
    bundled vocabularies (``use_vocabulary``) and the ONNX tagger of ``models_folder``
    ("" = the app's models; ``use_model``)."""
    terms = [(term, label) for term, label in user_terms]
    return EntityFinder(nlp, terms, bundled_terms() if use_vocabulary else (), shared_tagger(models_folder) if use_model else None,
                        cache_patterns=use_vocabulary)


def build_nlp(
    user_terms: Sequence[tuple[str, str]] = (),
    use_model: bool = True,
    use_vocabulary: bool = True,
    context_extra: bool = True,
    models_folder: str = "",
    fast_context: bool = True,
) -> Language:
    """The spaCy pipeline, every component from a registered factory with its config, so
    ``nlp.to_disk`` / ``spacy.load`` round-trip it and ``nlp.pipe(n_process=...)`` runs it."""
    nlp = spacy.blank("en")
    nlp.max_length = 1_100_000
    nlp.add_pipe("healthfm_sentences")
    nlp.add_pipe(
        "healthfm_entities",
        config={"user_terms": [[t, label] for t, label in user_terms], "use_vocabulary": use_vocabulary, "use_model": use_model, "models_folder": models_folder},
    )
    # named as medspaCy's components: code that looks them up by name finds them
    nlp.add_pipe("healthfm_sections", name="medspacy_sectionizer")
    nlp.add_pipe("healthfm_context", name="medspacy_context", config={"extra_rules": context_extra, "fast": fast_context})
    nlp.add_pipe("healthfm_target_context", config={"extra_rules": context_extra})
    nlp.add_pipe("healthfm_portable_doc")
    return nlp


if not Doc.has_extension("hf_sections"):
    Doc.set_extension("hf_sections", default=None)
if not Span.has_extension("hf_triggers"):
    Span.set_extension("hf_triggers", default=None)


@Language.component("healthfm_portable_doc")
def make_doc_portable(doc: Doc) -> Doc:
    """The last component: keeps the sections as plain (category, title_start, title_end,
    body_start, body_end) tuples and drops ConText's graph, so Doc.to_bytes can write the Doc
    and nlp.pipe(n_process=...) can send it back (medspaCy's graph holds Span objects, and its
    implicit first Section, with no rule, does not read back; its modifiers come back as dicts):
    each entity's modifiers become (category, trigger start, end, scope start, end) tuples."""
    for ent in doc.ents:
        extension = ent._
        extension.hf_triggers = [(m.category, *m.modifier_span, *m.scope_span) for m in extension.modifiers]
        extension.modifiers = ()
    doc._.hf_sections = [(s.category, *s.title_span, *s.body_span) for s in (getattr(doc._, "sections", None) or [])]
    doc._.sections = []
    doc._.context_graph = None
    return doc


class ClinicalPipeline:
    """A built pipeline. ``annotate`` / ``annotate_many`` return AnnotatedNote objects.

    Memory stays bounded over any number of notes: spaCy 3.7 (pinned by medSpaCy) has no
    ``memory_zone``, and its Vocab, StringStore and tokenizer cache keep every new word of every
    note for the life of the pipeline (an MRN, a date, a lab value: most notes bring new
    strings). So once the notes have added ``refresh_strings`` strings, the spaCy pipeline is
    built afresh between two segments of the stream (the ONNX tagger and the term lists are
    kept); the old one, with everything it learnt, is freed. Annotations do not depend on it.
    Changes made to ``nlp`` from outside last until the next rebuild."""

    def __init__(
        self,
        user_terms: Sequence[tuple[str, str]] = (),
        use_model: bool = True,
        use_vocabulary: bool = True,
        registry=None,
        context_extra: bool = True,
        refresh_strings: int = REFRESH_STRINGS,
    ):
        self._settings = {
            "user_terms": list(user_terms),
            "use_model": use_model,
            "use_vocabulary": use_vocabulary,
            "context_extra": context_extra,
            "models_folder": str(registry.folder) if registry is not None else "",
        }
        self.refresh_strings = refresh_strings
        self.segment_notes = SEGMENT_NOTES
        self.rebuilds = 0
        self._lock = threading.Lock()  # spaCy pipelines are not safe to share between threads
        self.nlp = build_nlp(**self._settings)
        self.tagger = self.nlp.get_pipe("healthfm_entities").tagger
        self._base_strings = len(self.nlp.vocab.strings)

    def set_user_terms(self, terms: Sequence[tuple[str, str]]) -> None:
        """Replace the user's terms (a rebuild keeps them); cheap, the rest of the pipeline stays."""
        with self._lock:
            self._settings["user_terms"] = list(terms)
            self.nlp.get_pipe("healthfm_entities").set_user_terms(terms)

    def _refresh_if_grown(self) -> None:
        """Called between segments of a stream, with the lock held."""
        if len(self.nlp.vocab.strings) - self._base_strings > self.refresh_strings:
            # free the old pipeline first (its components refer to each other: a collection
            # frees them now), so the two never sit in memory together
            self.nlp = None
            gc.collect()
            self.nlp = build_nlp(**self._settings)
            self._base_strings = len(self.nlp.vocab.strings)
            self.rebuilds += 1

    # --- running -----------------------------------------------------------------------
    def annotate(self, text: str, note_id: str = "note", source: str = "") -> AnnotatedNote:
        note = next(self.annotate_many([(note_id, text)]))
        note.source = source
        return note

    def annotate_many(self, notes: Iterable[tuple[str, str]], batch_size: int = 16) -> Iterator[AnnotatedNote]:
        """(id, text) pairs in, AnnotatedNote out, in order; batched through nlp.pipe, in
        segments of SEGMENT_NOTES notes (the pipeline may be rebuilt between two).

        A long note is cut into pieces of at most CHUNK_CHARS at line breaks and the pieces are
        joined again: ConText compares every trigger with every other trigger and target of a
        Doc, which is quadratic, so a 50-page note must not be one Doc."""
        notes = iter(notes)
        with self._lock:
            while True:
                segment = list(itertools.islice(notes, self.segment_notes))
                if not segment:
                    return
                self._refresh_if_grown()
                yield from self._annotate_segment(segment, batch_size)

    def _annotate_segment(self, notes: list[tuple[str, str]], batch_size: int) -> Iterator[AnnotatedNote]:
        pending: dict[int, list] = {}

        def pieces():
            for k, (note_id, text) in enumerate(notes):
                chunks = split_into_chunks(text)
                pending[k] = [note_id, text, len(chunks), []]
                for offset, chunk in chunks:
                    yield chunk, (k, offset)

        next_note = 0
        for doc, (k, offset) in self.nlp.pipe(pieces(), as_tuples=True, batch_size=batch_size):
            entry = pending[k]
            entry[3].append((offset, doc_to_note(doc, entry[0])))
            while next_note in pending and len(pending[next_note][3]) == pending[next_note][2]:
                note_id, text, _n, parts = pending.pop(next_note)
                yield merge_chunks(note_id, text, parts)
                next_note += 1

    def assert_spans(self, text: str, spans: Sequence[tuple[int, int, str]]) -> list[Entity]:
        """Run sentences, sections and ConText for spans the caller already has (a user's new
        span in the annotator, the NegEx kit's targets) and return them as entities."""
        with self._lock:
            doc = self.nlp.make_doc(text)
            doc = self.nlp.get_pipe("healthfm_sentences")(doc)
            ents = []
            for start, end, label in spans:
                span = doc.char_span(start, end, label=label, alignment_mode="expand")
                if span is not None:
                    ents.append(span)
            doc.ents = filter_spans(ents)
            for name in ("medspacy_sectionizer", "medspacy_context", "healthfm_target_context"):
                doc = self.nlp.get_pipe(name)(doc)
            return doc_to_note(doc, "spans").entities


def _trigger(doc: Doc, category: str, t_start: int, t_end: int, s_start: int, s_end: int) -> Trigger | None:
    attribute = CATEGORY_TO_ASSERTION.get(category)
    if attribute is None:
        return None
    trigger = doc[t_start:t_end]
    scope = doc[s_start:s_end]
    return Trigger(attribute, trigger.start_char, trigger.end_char, trigger.text, scope.start_char, scope.end_char, category)


def doc_to_note(doc: Doc, note_id: str, source: str = "") -> AnnotatedNote:
    text = doc.text  # Doc.text joins every token on each access: read it once
    note = AnnotatedNote(id=str(note_id), text=text, source=source)
    sections = doc._.hf_sections
    if sections is None:  # a Doc that did not run through healthfm_portable_doc
        sections = [(s.category, *s.title_span, *s.body_span) for s in (getattr(doc._, "sections", None) or [])]
    for category, title_start, title_end, body_start, body_end in sections:
        start = doc[title_start].idx if title_end > title_start else (doc[body_start].idx if body_start < len(doc) else len(doc.text))
        end = doc[body_end - 1].idx + len(doc[body_end - 1]) if body_end > 0 else 0
        if category is not None:
            note.sections.append(Section(start, end, category, doc[title_end - 1].idx + len(doc[title_end - 1]) if title_end > title_start else None))
    headers = [(s.start, s.header_end) for s in note.sections if s.header_end]
    for ent in doc.ents:
        extension = ent._  # each ``ent._`` builds a new accessor: build one per entity
        start, end = extension.hf_chars or (ent.start_char, ent.end_char)
        if extension.hf_source != "user_terms" and not ent.label_.startswith("PHI_") and any(h0 <= start and end <= h1 for h0, h1 in headers):
            continue  # words of a section header ("Discharge Medications:") are not findings
        entity = Entity(
            start=start,
            end=end,
            label=ent.label_,
            text=text[start:end],
            source=extension.hf_source or "annotator",
            confidence=extension.hf_confidence,
        )
        entity.section = note.section_at(ent.start_char)
        if not ent.label_.startswith("PHI_"):
            found = extension.hf_triggers
            if found is None:  # a Doc that did not run through healthfm_portable_doc
                found = [(m.category, *m.modifier_span, *m.scope_span) for m in extension.modifiers]
            triggers = [t for t in (_trigger(doc, *m) for m in found) if t]
            entity.negated = bool(extension.is_negated)
            entity.uncertain = bool(extension.is_uncertain or extension.is_hypothetical)
            entity.historical = bool(extension.is_historical)
            entity.family = bool(extension.is_family)
            for attribute in ("historical", "family"):
                if getattr(entity, attribute) and not any(t.attribute == attribute for t in triggers):
                    # set by the section the entity is in: the header is the trigger
                    for section in note.sections:
                        if section.start <= entity.start < section.end and section.header_end:
                            triggers.append(Trigger(attribute, section.start, section.header_end, text[section.start : section.header_end], section.start, section.end, "SECTION"))
                            break
            entity.triggers = triggers
        note.entities.append(entity)
    note.assign_ids()
    link_attributes(note, doc)
    return note


def link_attributes(note: AnnotatedNote, doc: Doc | None = None) -> None:
    """Medication attributes -> the nearest drug in the same sentence (the one before them,
    else the one after); LAB_VALUE -> the nearest TEST before it in the sentence, else after."""
    if doc is not None:
        sentence_of = {}
        for k, sentence in enumerate(doc.sents):
            sentence_of[k] = (sentence.start_char, sentence.end_char)
        bounds = sorted(sentence_of.values())
    else:
        bounds = [(0, len(note.text))]

    def sentence_index(offset: int) -> int:
        lo, hi = 0, len(bounds) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if bounds[mid][0] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo

    by_sentence: dict[int, list[Entity]] = {}
    for entity in note.entities:
        by_sentence.setdefault(sentence_index(entity.start), []).append(entity)
    for entities in by_sentence.values():
        for entity in entities:
            if entity.label in MEDICATION_ATTRIBUTES:
                target_label = "MEDICATION"
            elif entity.label == "LAB_VALUE":
                target_label = "TEST"
            else:
                continue
            before = [e for e in entities if e.label == target_label and e.end <= entity.start]
            after = [e for e in entities if e.label == target_label and e.start >= entity.end]
            if before:
                entity.linked_to = max(before, key=lambda e: e.end).id
            elif after:
                entity.linked_to = min(after, key=lambda e: e.start).id


CHUNK_CHARS = 6_000


def split_into_chunks(text: str, size: int = CHUNK_CHARS) -> list[tuple[int, str]]:
    """(offset, piece) covering the text, cut at a blank line, else a sentence end, else a
    line break, else whitespace, in the second half of every ``size`` characters."""
    if len(text) <= size:
        return [(0, text)]
    chunks, start = [], 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            window = text[start + size // 2 : end]
            for separator in ("\n\n", ".\n", ". ", "\n", " "):
                cut = window.rfind(separator)
                if cut >= 0:
                    end = start + size // 2 + cut + len(separator)
                    break
        chunks.append((start, text[start:end]))
        start = end
    return chunks


def merge_chunks(note_id: str, text: str, parts: list[tuple[int, AnnotatedNote]]) -> AnnotatedNote:
    """Join the pieces of a long note: shift offsets, and carry the open section (and the
    assertion it implies) into the next piece until that piece's first header."""
    if len(parts) == 1:
        note = parts[0][1]
        note.text = text
        return note
    merged = AnnotatedNote(id=note_id, text=text)
    carried = None  # the Section open at the end of the previous piece (already shifted)
    for offset, part in sorted(parts, key=lambda p: p[0]):
        first_header = min((s.start for s in part.sections), default=len(part.text))
        for section in part.sections:
            merged.sections.append(Section(section.start + offset, section.end + offset, section.title, section.header_end + offset if section.header_end is not None else None))
        if carried is not None:
            carried.end = offset + first_header
        for entity in part.entities:
            entity.start += offset
            entity.end += offset
            for trigger in entity.triggers:
                trigger.start += offset
                trigger.end += offset
                trigger.scope_start += offset
                trigger.scope_end += offset
            entity.id = f"{offset}:{entity.id}"
            if entity.linked_to:
                entity.linked_to = f"{offset}:{entity.linked_to}"
            if carried is not None and entity.start < offset + first_header and entity.section is None:
                entity.section = carried.title
                implied = SECTION_ASSERTIONS.get(carried.title or "", {})
                if not entity.label.startswith("PHI_"):
                    for attribute_name in implied:
                        attribute = attribute_name.replace("is_", "")
                        if attribute in ("historical", "family") and not getattr(entity, attribute):
                            setattr(entity, attribute, True)
                            entity.triggers.append(Trigger(attribute, carried.start, carried.header_end or carried.start, text[carried.start : carried.header_end or carried.start], carried.start, carried.end, "SECTION"))
            merged.entities.append(entity)
        if part.sections:
            last = part.sections[-1]
            carried = Section(last.start + offset, last.end + offset, last.title, last.header_end + offset if last.header_end is not None else None)
        elif carried is not None:
            carried.end = offset + len(part.text)
    merged.assign_ids()
    return merged


_PIPELINES: dict[tuple, ClinicalPipeline] = {}
_PIPELINES_LOCK = threading.Lock()


def build_pipeline(user_terms: Sequence[tuple[str, str]] = (), use_model: bool = True, use_vocabulary: bool = True) -> ClinicalPipeline:
    """A pipeline for these settings, built once per process (building takes seconds)."""
    key = (tuple(user_terms), use_model, use_vocabulary)
    with _PIPELINES_LOCK:
        if key not in _PIPELINES:
            if len(_PIPELINES) > 4:
                _PIPELINES.pop(next(iter(_PIPELINES)))
            _PIPELINES[key] = ClinicalPipeline(user_terms, use_model=use_model, use_vocabulary=use_vocabulary)
        return _PIPELINES[key]


@functools.lru_cache(maxsize=2)
def _pipeline_for_tasks(user_terms: tuple):
    return build_pipeline(list(user_terms))


def annotate_chunk(notes: list[tuple[str, str]], user_terms: tuple) -> list:
    """One cluster task (`notes annotate --scheduler`, and the Notes workspace's pre-annotation
    with Settings > Compute set): the annotated notes of a chunk of (id, text), by a pipeline
    kept per worker process for those user terms."""
    return list(_pipeline_for_tasks(user_terms).annotate_many(notes))
