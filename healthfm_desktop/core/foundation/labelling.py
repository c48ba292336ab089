"""The labels a user gives in one workspace (item id -> label), autosaved atomically under the
user's folder and never sent anywhere; Qt-free, with an event a controller relays."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from healthfm_desktop.core.events import Event
from healthfm_desktop.core.foundation.datasets import Items


class LabelSession:
    """Labels of ``workspace`` (images, notes, molecules) kept in ``labels/<workspace>.json``."""

    def __init__(self, workspace: str, path: Path | None = None):
        from healthfm_desktop.core.paths import user_data_dir

        self.workspace = workspace
        self.path = Path(path) if path is not None else user_data_dir() / "labels" / f"{workspace}.json"
        self.changed = Event()  # () labels were added, changed or removed
        self.labels: dict[str, str] = {}
        self.load_problem: str | None = None
        try:
            stored = json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {}
            if not isinstance(stored, dict) or not all(isinstance(v, str) for v in stored.get("labels", {}).values()):
                raise ValueError("not a label file")
            self.labels = dict(stored.get("labels", {}))
        except (OSError, ValueError) as exc:  # kept aside, never overwritten silently
            self.load_problem = f"{self.path.name}: the saved labels could not be read ({type(exc).__name__})"
            self.path = self.path.with_name(self.path.stem + ".new.json")

    def tag(self, ids: list[str], label: str) -> None:
        label = label.strip()
        if not label or not ids:
            return
        for item_id in ids:
            self.labels[str(item_id)] = label
        self._save()

    def tag_each(self, labels: dict[str, str]) -> None:
        """Many items, each with its own label (a label column of the opened file)."""
        labels = {str(k): str(v).strip() for k, v in labels.items() if str(v).strip()}
        if labels:
            self.labels.update(labels)
            self._save()

    def untag(self, ids: list[str]) -> None:
        if any(self.labels.pop(str(i), None) is not None for i in list(ids)):
            self._save()

    def label_of(self, item_id: str) -> str | None:
        return self.labels.get(str(item_id))

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.labels.values()).items()))

    def labelled(self, items: Items) -> Items:
        """The items of ``items`` that carry a label here, with it."""
        out = Items(items.kind, errors=list(items.errors))
        for item_id, payload in zip(items.ids, items.payloads):
            label = self.labels.get(item_id)
            if label is not None:
                out.add(item_id, payload, label)
        return out

    def with_labels(self, items: Items) -> Items:
        """``items`` with each one's label here (or the one it came with, or None)."""
        out = Items(items.kind, errors=list(items.errors))
        for item_id, payload, label in zip(items.ids, items.payloads, items.labels):
            out.add(item_id, payload, self.labels.get(item_id, label))
        return out

    def _save(self) -> None:
        from healthfm_desktop.core.storage.atomic import atomic_write_text

        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps({"workspace": self.workspace, "labels": self.labels},
                                                ensure_ascii=False, indent=1, sort_keys=True))
        self.changed.emit()
