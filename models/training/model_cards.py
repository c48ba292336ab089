"""The "When not to use this" section every shipped model's card ends with: measured failure cases
kept as data (when_not_to_use/<model>.md), so a retrained card keeps them."""

from __future__ import annotations

from pathlib import Path

SECTIONS = Path(__file__).resolve().parent / "when_not_to_use"


def when_not_to_use(name: str) -> str:
    path = SECTIONS / f"{name}.md"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: every shipped model's card needs its measured failure cases")
    return path.read_text(encoding="utf-8")


def with_when_not_to_use(card: str, name: str) -> str:
    """``card`` followed by the model's "When not to use this" section."""
    return card.rstrip("\n") + "\n\n" + when_not_to_use(name)
