"""The annotation data model shared by the pipeline, the exports, the project store and the
annotator UI: plain dataclasses (no spaCy, no Qt), JSON round-trippable."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Any

from healthfm_desktop.core.records.labels import ASSERTIONS

# where an entity came from: the UI colours pre-annotations and the user's own work apart
SOURCES = ("user_terms", "phi_rule", "rule", "vocabulary", "model", "annotator", "import")
# per-entity review state: "pre" = machine pre-annotation not reviewed yet
STATUSES = ("pre", "accepted", "manual")
NOTE_STATUSES = ("todo", "in_progress", "done")


@dataclass
class Trigger:
    """Why an assertion attribute is set: the ConText trigger (or section header) and its scope."""

    attribute: str  # negated / uncertain / historical / family
    start: int
    end: int
    text: str
    scope_start: int
    scope_end: int
    category: str = ""  # ConText category, or "SECTION"


@dataclass
class Entity:
    start: int
    end: int
    label: str
    text: str
    negated: bool = False
    uncertain: bool = False
    historical: bool = False
    family: bool = False
    section: str | None = None
    source: str = "annotator"
    status: str = "pre"
    triggers: list[Trigger] = field(default_factory=list)
    linked_to: str | None = None  # id of the drug (for DOSE...) or test (for LAB_VALUE)
    id: str = ""
    confidence: float = 1.0  # the tagger's probability for a model span; 1.0 for rules, terms and people

    def key(self) -> tuple[int, int, str]:
        return (self.start, self.end, self.label)

    def to_cli_json(self) -> dict[str, Any]:
        """The span object of CLI.md's JSONL schema."""
        return {
            "start": self.start,
            "end": self.end,
            "label": self.label,
            "text": self.text,
            "negated": self.negated,
            "uncertain": self.uncertain,
            "historical": self.historical,
            "family": self.family,
            "section": self.section,
        }

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Entity":
        data = dict(data)
        data["triggers"] = [Trigger(**t) for t in data.get("triggers", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def set_assertion(self, attribute: str, value: bool) -> None:
        if attribute not in ASSERTIONS:
            raise ValueError(f"unknown assertion {attribute!r}")
        setattr(self, attribute, bool(value))


@dataclass
class Section:
    start: int
    end: int
    title: str | None
    header_end: int | None = None


@dataclass
class AnnotatedNote:
    id: str
    text: str
    entities: list[Entity] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    source: str = ""

    def assign_ids(self) -> None:
        """T1, T2, ... in text order (links are rewritten to the new ids)."""
        self.entities.sort(key=lambda e: (e.start, -e.end, e.label))
        counter = itertools.count(1)
        renamed = {}
        for entity in self.entities:
            new = f"T{next(counter)}"
            if entity.id:
                renamed[entity.id] = new
            entity.id = new
        for entity in self.entities:
            if entity.linked_to:
                entity.linked_to = renamed.get(entity.linked_to, entity.linked_to)

    def section_at(self, offset: int) -> str | None:
        for section in self.sections:
            if section.start <= offset < section.end:
                return section.title
        return None

    def to_cli_json(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "spans": [e.to_cli_json() for e in sorted(self.entities, key=lambda e: (e.start, e.end))]}

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "source": self.source,
            "entities": [e.to_json() for e in self.entities],
            "sections": [asdict(s) for s in self.sections],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "AnnotatedNote":
        return cls(
            id=str(data["id"]),
            text=data["text"],
            source=data.get("source", ""),
            entities=[Entity.from_json(e) for e in data.get("entities", [])],
            sections=[Section(**s) for s in data.get("sections", [])],
        )
