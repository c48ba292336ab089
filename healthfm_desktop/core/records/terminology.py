"""Term lists: the bundled vocabularies in resources/terminology/*.tsv (licenses in its README)
and the user's own terms (``--terms FILE`` or the dictionary in the Notes workspace): one term a
line, optionally ``term<TAB>LABEL`` (default PROBLEM)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from healthfm_desktop.core.errors import UnreadableFileError
from healthfm_desktop.core.paths import resources_dir
from healthfm_desktop.core.records.labels import LABELS, normalise_label

DEFAULT_TERM_LABEL = "PROBLEM"
MAX_TERMS_FILE_BYTES = 20 * 1024 * 1024
MAX_TERM_CHARS = 200


def terminology_dir() -> Path:
    return resources_dir() / "terminology"


def load_bundled_terms(folder: Path | None = None) -> list[tuple[str, str]]:
    """(term, label) from every bundled TSV, in file-name order (later files do not override)."""
    folder = folder or terminology_dir()
    terms: list[tuple[str, str]] = []
    for path in sorted(folder.glob("*.tsv")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            term, _, label = line.partition("\t")
            label = label.strip() or DEFAULT_TERM_LABEL
            if label in LABELS:
                terms.append((term.strip(), label))
    return terms


def parse_terms_text(text: str, source: str = "terms") -> list[tuple[str, str]]:
    """Parse a user terms list; an unknown label is an error naming the line."""
    terms: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        term, tab, label_text = line.partition("\t")
        term = " ".join(term.split())
        if not term:
            raise UnreadableFileError(f"line {number}: the term is empty")
        if len(term) > MAX_TERM_CHARS:
            raise UnreadableFileError(f"line {number}: the term is longer than {MAX_TERM_CHARS} characters")
        label = DEFAULT_TERM_LABEL
        if tab and label_text.strip():
            label = normalise_label(label_text)
            if label is None:
                raise UnreadableFileError(
                    f"line {number}: unknown label {label_text.strip()!r} (use one of {', '.join(LABELS)})"
                )
        terms.append((term, label))
    return terms


def read_terms_file(path: Path | str) -> list[tuple[str, str]]:
    path = Path(path)
    try:
        if path.stat().st_size > MAX_TERMS_FILE_BYTES:
            raise UnreadableFileError("the terms file is larger than 20 MB")
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableFileError(f"cannot be read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFileError(f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    if "\x00" in text:
        raise UnreadableFileError("the terms file contains NUL bytes: it is not a text file")
    terms = parse_terms_text(text, str(path))
    if not terms:
        raise UnreadableFileError("the terms file holds no terms")
    return terms


def term_key(text: str) -> str:
    """How two spellings of a term are compared: lower case, any run of whitespace as one space."""
    return " ".join(text.lower().split())


class TermMatcher:
    """Finds the user's terms in raw text as exact character spans, case-insensitively and
    with any run of whitespace (spaces, tabs, line breaks) between their words; at each place the
    longest term wins. Terms are filed by their first word, so a text is scanned once whatever the
    size of the dictionary. The first entry of a term decides its label."""

    _WORD = re.compile(r"\w+|[^\w\s]")

    def __init__(self, terms: Sequence[tuple[str, str]]):
        self.labels: dict[str, str] = {}
        for term, label in terms:
            key = term_key(term)
            if key:
                self.labels.setdefault(key, label)
        by_first: dict[str, list[str]] = {}
        for key in self.labels:
            by_first.setdefault(self._WORD.match(key).group(), []).append(key)
        self._patterns = {first: self._compile(keys) for first, keys in by_first.items()}

    @staticmethod
    def _compile(keys: list[str]) -> re.Pattern:
        alternatives = []
        for key in sorted(keys, key=len, reverse=True):
            body = r"\s+".join(re.escape(word) for word in key.split(" "))
            alternatives.append(body + (r"(?!\w)" if key[-1].isalnum() or key[-1] == "_" else ""))
        return re.compile("|".join(alternatives), re.IGNORECASE)

    def __bool__(self) -> bool:
        return bool(self.labels)

    def find(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, label) of every match, left to right, never overlapping."""
        found: list[tuple[int, int, str]] = []
        if not self._patterns:
            return found
        cursor = 0
        for word in self._WORD.finditer(text):  # not over text.lower(): lower-casing can change lengths
            start = word.start()
            if start < cursor:
                continue
            pattern = self._patterns.get(word.group().lower())
            if pattern is None:
                continue
            match = pattern.match(text, start)
            if match:
                found.append((start, match.end(), self.labels[term_key(match.group())]))
                cursor = match.end()
        return found
