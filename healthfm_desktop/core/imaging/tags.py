"""The tag tree for the tag browser: every element of a dataset (File Meta first), sequences
expanded into items, values shortened to something readable, plus a filter over the tree."""

from __future__ import annotations

from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

MAX_VALUE_CHARS = 200
_BINARY_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}


def _value_text(element: DataElement) -> str:
    try:
        if element.VR in _BINARY_VRS:
            value = element.value
            length = len(value) if value is not None else 0
            return f"<{length} bytes>"
        value = element.value
    except Exception as exc:  # an invalid value must not break the browser
        return f"<unreadable: {type(exc).__name__}>"
    if value is None:
        return ""
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    text = "\\".join(str(v) for v in value) if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _element_dict(element: DataElement) -> dict[str, Any]:
    tag = element.tag
    record: dict[str, Any] = {
        "tag": f"({tag.group:04X},{tag.element:04X})",
        "keyword": element.keyword or (element.name if element.is_private else "") or "",
        "name": element.name,
        "vr": element.VR,
        "private": bool(tag.is_private),
    }
    if element.VR == "SQ":
        items = element.value or []
        record["value"] = f"{len(items)} item(s)"
        record["items"] = [element_tree(item, include_meta=False) for item in items]
    else:
        record["value"] = _value_text(element)
    return record


def element_tree(ds: Dataset, include_meta: bool = True) -> list[dict[str, Any]]:
    """All elements as dicts: ``tag`` "(gggg,eeee)", ``keyword``, ``name``, ``vr``, ``value``
    (text), ``private`` and, for sequences, ``items`` (a list of element lists)."""
    elements: list[dict[str, Any]] = []
    meta = getattr(ds, "file_meta", None) if include_meta else None
    for source in ([meta] if meta is not None else []) + [ds]:
        # fetch element by element: a corrupt value raises on conversion, and must not hide
        # the rest of the header
        for tag in list(source.keys()):
            try:
                elements.append(_element_dict(source[tag]))
            except Exception as exc:  # one bad element is shown as such, the rest goes on
                elements.append({
                    "tag": f"({tag.group:04X},{tag.element:04X})", "keyword": "", "name": "", "vr": "",
                    "value": f"<unreadable: {type(exc).__name__}>", "private": bool(tag.is_private),
                })
    return elements


def filter_tree(elements: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """Elements whose tag, keyword, name or value contains ``text`` (case-insensitive); a
    sequence is kept when anything inside it matches, with only the matching items."""
    needle = text.strip().lower()
    if not needle:
        return elements
    kept = []
    for element in elements:
        own = any(needle in str(element.get(k, "")).lower() for k in ("tag", "keyword", "name", "value"))
        items = element.get("items")
        if items:
            matching = [filter_tree(item, text) for item in items]
            if own:
                kept.append(element)
            elif any(matching):
                kept.append({**element, "items": [m for m in matching if m]})
        elif own:
            kept.append(element)
    return kept
