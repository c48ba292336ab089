"""The measurements file saved with a study is user data on disk: whatever it holds (damaged,
edited by hand, from another version), loading it never raises and keeps only sound entries."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from healthfm_desktop.core.imaging.viewer_session import measurement_records_from_json
from healthfm_desktop.core.imaging.measure import Measurement, measurements_to_json

GOOD = Measurement(kind="distance", points=[[1.0, 2.0], [30.5, 40.0]], study_uid="1.2", series_uid="1.2.3",
                   sop_instance_uid="1.2.3.4", frame_index=0, label="Distance 1", values={"length": 12.0}, text="12.0 mm")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)


def test_a_saved_file_round_trips():
    records, dropped = measurement_records_from_json(measurements_to_json([GOOD, GOOD]))
    assert dropped == 0 and len(records) == 2
    assert records[0]["points"] == GOOD.points and records[0]["label"] == "Distance 1"
    assert records[0]["id"] != records[1]["id"]


def test_damaged_entries_are_counted_and_left_out():
    entries = [GOOD.to_dict(), {**GOOD.to_dict(), "points": [[1, 2]]}, {**GOOD.to_dict(), "kind": "volume"},
               {**GOOD.to_dict(), "points": [[1, float("inf")], [2, 3]]}, "text", {**GOOD.to_dict(), "frame_index": -1}]
    records, dropped = measurement_records_from_json(json.dumps({"version": 1, "measurements": entries}))
    assert len(records) == 1 and dropped == 5


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_any_json_loads_without_raising(value):
    records, dropped = measurement_records_from_json(json.dumps(value))
    assert dropped >= 0
    for record in records:
        assert record["kind"] in ("distance", "angle", "rectangle", "ellipse")


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_any_text_loads_without_raising(text):
    records, dropped = measurement_records_from_json(text)
    try:
        payload = json.loads(text)
    except ValueError:
        assert (records, dropped) == ([], 1)  # not JSON: nothing kept, the file counted as damaged
        return
    items = payload.get("measurements") if isinstance(payload, dict) else None
    if isinstance(items, list):
        assert len(records) + dropped == len(items)
    else:
        assert records == [] and dropped == (0 if isinstance(payload, dict) and "measurements" not in payload else 1)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(list(GOOD.to_dict())), json_values, max_size=9))
def test_entries_with_any_field_values_load_without_raising(fields):
    entry = {**GOOD.to_dict(), **fields}
    records, dropped = measurement_records_from_json(json.dumps({"measurements": [entry]}))
    assert len(records) + dropped == 1
