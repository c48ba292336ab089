"""The user's labels: tagged, counted, autosaved atomically and read back; a saved file that
cannot be read is left as it is (the new labels go beside it) and the reason is given."""

from __future__ import annotations

import json

from healthfm_desktop.core.foundation.datasets import Items
from healthfm_desktop.core.foundation.labelling import LabelSession


def test_tag_untag_counts_and_reload(tmp_path):
    path = tmp_path / "labels" / "notes.json"
    labels = LabelSession("notes", path)
    seen = []
    labels.changed.connect(lambda: seen.append(1))
    labels.tag(["a", "b", "c"], " cardiology ")
    labels.tag(["c"], "oncology")
    labels.tag_each({"d": "oncology", "e": " "})
    labels.untag(["b", "missing"])
    assert labels.counts() == {"cardiology": 1, "oncology": 2}
    assert len(seen) == 4
    again = LabelSession("notes", path)
    assert again.labels == {"a": "cardiology", "c": "oncology", "d": "oncology"} and again.load_problem is None
    items = Items("text")
    for item_id in "abcx":
        items.add(item_id, f"text {item_id}", None)
    chosen = again.labelled(items)
    assert chosen.ids == ["a", "c"] and chosen.labels == ["cardiology", "oncology"]
    assert again.with_labels(items).labels == ["cardiology", None, "oncology", None]


def test_an_unreadable_label_file_is_kept_and_said(tmp_path):
    path = tmp_path / "images.json"
    path.write_text("{not json", encoding="utf-8")
    labels = LabelSession("images", path)
    assert labels.labels == {} and "could not be read" in labels.load_problem
    labels.tag(["x"], "normal")
    assert path.read_text(encoding="utf-8") == "{not json"
    assert json.loads((tmp_path / "images.new.json").read_text())["labels"] == {"x": "normal"}
