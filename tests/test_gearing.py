"""Counters in motion (edge_ocr/inference/gearing.py): a reading that takes the upper digit from one
drum and the lower from the next (01349 for a counter between 01339 and 01340) is a value the counter
never showed; the reader decides turning drums jointly. A still reading, a display's and a consistent
one are left as they are."""

from __future__ import annotations

import numpy as np
import pytest

from edge_ocr.inference.gearing import geared


def dist(**share: float) -> np.ndarray:
    """Probabilities over 0-9 from {"d3": 0.6, ...}; the rest spread evenly."""
    d = np.zeros(10)
    for k, v in share.items():
        d[int(k[1:])] = v
    rest = max(0.0, 1.0 - d.sum())
    d[d == 0] = rest / max(int((d == 0).sum()), 1)
    return d / d.sum()


def sharp(c: str) -> np.ndarray | None:
    return dist(**{f"d{c}": 0.995}) if c.isdigit() else None


def read(text: str, overrides: dict[int, np.ndarray]) -> str:
    digits = [overrides.get(i, sharp(c)) for i, c in enumerate(text)]
    return "".join(geared(list(text), digits))


def test_a_crossed_carry_becomes_one_of_the_two_true_readings() -> None:
    # tens between 3 and 4 (read 4), ones between 9 and 0 (read 9): 01349 was never on the counter
    got = read("01349", {3: dist(d3=0.35, d4=0.6), 4: dist(d9=0.7, d0=0.28)})
    assert got in ("01339", "01340")
    # the other crossing, the lower tens with the upper ones: 01320 for 01329 / 01330
    got = read("01320", {3: dist(d2=0.55, d3=0.42), 4: dist(d0=0.6, d9=0.38)})
    assert got in ("01329", "01330")
    # a geared reading is kept as it is
    assert read("01329", {3: dist(d2=0.55, d3=0.42), 4: dist(d9=0.6, d0=0.38)}) == "01329"


def test_a_carry_through_several_drums_is_resolved_as_a_whole() -> None:
    # 01299.5: the hundreds between 2 and 3, tens and ones between 9 and 0; read as 01390
    got = read("01390", {2: dist(d2=0.4, d3=0.55), 3: dist(d9=0.6, d0=0.38), 4: dist(d0=0.55, d9=0.43)})
    assert got in ("01299", "01300")


def test_a_confident_crossed_drum_is_still_caught_by_its_neighbour() -> None:
    # the ones drum looks like a clean 9, but the tens plainly shows two digits: it is turning, so the
    # ones are between 9 and 0 and the reading is the lower one
    assert read("03429", {3: dist(d1=0.43, d2=0.56), 4: dist(d9=0.95, d0=0.04)}) == "03419"


@pytest.mark.parametrize("text", ["03090", "10009", "99990", "0000", "7"])
def test_sharp_still_readings_are_left_alone(text: str) -> None:
    assert read(text, {}) == text


def test_a_blurred_digit_with_no_drum_turning_right_of_it_is_left_alone() -> None:
    # tens unsure between 3 and 4, but the ones clearly show a 5: nothing is carrying
    assert read("01345", {3: dist(d3=0.5, d4=0.48)}) == "01345"


def test_a_point_between_the_drums_is_skipped_and_kept() -> None:
    # 0382.9 | 9.57: the integer ones drum between 2 and 3, the fraction drum between 9 and 0
    got = read("00383.9", {4: dist(d3=0.6, d2=0.38), 6: dist(d9=0.54, d0=0.45)})
    assert got in ("00382.9", "00383.0")
