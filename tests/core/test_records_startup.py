"""What the notes pipeline skips at start-up changes nothing it finds: the bundled terms' token
patterns come from a cache equal to tokenising them, and spaCy loads without torch and nltk."""

import json
import subprocess
import sys
from pathlib import Path

import spacy
from spacy.matcher import PhraseMatcher

from healthfm_desktop.core.paths import user_cache_dir
from healthfm_desktop.core.records.pipeline import EntityFinder, bundled_terms, cached_term_patterns, term_patterns

REPO = Path(__file__).resolve().parents[2]
NOTE = (REPO / "resources" / "samples" / "notes" / "discharge_summary.txt").read_text(encoding="utf-8")


def _doc_matcher(nlp, terms):
    """The matcher as built before the cache: every term tokenised into a Doc."""
    matcher = PhraseMatcher(nlp.vocab, attr="LOWER")
    by_label, seen = {}, set()
    for term, label in terms:
        if term.lower() not in seen:
            seen.add(term.lower())
            by_label.setdefault(label, []).append(term)
    for label, label_terms in by_label.items():
        matcher.add(label, list(nlp.tokenizer.pipe(label_terms)))
    return matcher


def test_cached_patterns_equal_tokenised_terms_and_find_the_same_matches():
    terms = bundled_terms()
    before = set(user_cache_dir().glob("term_patterns_*.npz"))
    built = cached_term_patterns(spacy.blank("en"), terms)  # built and written, unless a test before wrote it
    assert len(set(user_cache_dir().glob("term_patterns_*.npz")) - before) <= 1
    nlp = spacy.blank("en")
    read = cached_term_patterns(nlp, terms)  # cache hit
    assert read == built == term_patterns(spacy.blank("en"), terms)
    assert sum(len(p) for p in read.values()) > 15_000
    cached_matcher = EntityFinder._matcher(nlp, terms, cached=True)
    reference = _doc_matcher(spacy.blank("en"), terms)
    doc = nlp(NOTE)
    found = cached_matcher(doc)
    assert len(found) > 20
    assert found == reference(spacy.blank("en")(NOTE))


def test_a_changed_term_list_or_a_broken_cache_is_rebuilt():
    terms = [("chest pain", "PROBLEM"), ("Metoprolol", "MEDICATION"), ("chest  pain", "TEST")]
    before = set(user_cache_dir().glob("term_patterns_*.npz"))
    first = cached_term_patterns(spacy.blank("en"), terms)
    assert first == term_patterns(spacy.blank("en"), terms)
    changed = cached_term_patterns(spacy.blank("en"), terms[:2] + [("troponin", "TEST")])
    assert changed["TEST"] == term_patterns(spacy.blank("en"), [("troponin", "TEST")])["TEST"]
    written = set(user_cache_dir().glob("term_patterns_*.npz")) - before
    assert len(written) == 2  # one file per term list
    for path in written:
        path.write_bytes(b"not a cache")
    assert cached_term_patterns(spacy.blank("en"), terms) == first


def test_spacy_and_medspacy_load_without_torch_or_nltk_and_both_still_import():
    code = (
        "import sys, json\n"
        "import healthfm_desktop.core.records.pipeline\n"
        "import thinc.compat\n"
        "loaded = {m: m in sys.modules and type(sys.modules[m]) is type(sys) for m in ('torch', 'nltk', 'scipy.stats', 'sklearn')}  # a plain, run module\n"
        "from nltk.corpus import stopwords\n"
        "import nltk\n"
        "result = dict(loaded=loaded, has_torch=thinc.compat.has_torch, nltk=nltk.__version__, stopwords=type(stopwords).__name__)\n"
        "try:\n"
        "    import torch\n"
        "    result['torch'] = torch.__version__\n"
        "except ImportError:\n"
        "    result['torch'] = 'not installed'\n"
        "print(json.dumps(result))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["loaded"] == {"torch": False, "nltk": False, "scipy.stats": False, "sklearn": False}
    assert result["has_torch"] is False
    assert result["nltk"] and result["stopwords"] == "LazyCorpusLoader"  # nltk runs when used
    assert result["torch"]  # importable afterwards (a version), or not installed at all


def test_a_process_that_imported_torch_first_keeps_thincs_torch_support():
    code = ("import sys\ntry:\n    import torch\nexcept ImportError:\n    print('skip'); sys.exit(0)\n"
            "import healthfm_desktop.core.records.pipeline, thinc.compat\nprint(thinc.compat.has_torch)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] in ("True", "skip")
