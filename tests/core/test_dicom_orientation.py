"""Orientation letters from direction cosines (PS3.3 C.7.6.1.1.1), as viewers print them."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from healthfm_desktop.core.imaging.orientation import direction_letters, edge_letters, frame_edge_letters

OPPOSITE = str.maketrans("LRAPHF", "RLPAFH")


def test_the_six_patient_directions():
    assert [direction_letters(v) for v in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1))] == \
        ["L", "R", "P", "A", "H", "F"]


def test_an_axial_image_and_a_tilted_one():
    assert frame_edge_letters((1, 0, 0, 0, 1, 0)) == {"right": "L", "left": "R", "bottom": "P", "top": "A"}
    tilt = math.radians(30)
    letters = edge_letters((1, 0, 0), (0, math.cos(tilt), -math.sin(tilt)))
    assert letters["bottom"] == "PF" and letters["top"] == "AH"
    assert frame_edge_letters(None) is None and frame_edge_letters((0, 0, 0, 0, 0, 0)) is None


@given(st.tuples(*[st.floats(-1, 1, allow_nan=False)] * 3))
def test_opposite_directions_give_opposite_letters_strongest_first(vector):
    letters = direction_letters(vector)
    assert direction_letters([-v for v in vector]) == letters.translate(OPPOSITE)
    assert len(set(letters)) == len(letters) <= 3
    if letters:
        strongest = max(range(3), key=lambda axis: abs(vector[axis]))
        assert letters[0] in ("LR", "PA", "HF")[strongest]
