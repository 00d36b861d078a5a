"""Meter plausibility: number parsing, each rule alone, the remembered value, agreement, the CTC mask."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from edge_ocr.inference.ctc import class_mask, greedy_decode
from edge_ocr.plausibility import MeterMemory, NumericCheck, NumericRules, Remembered, parse_number

T0 = 1_700_000_000.0


def check(tmp_path: Path, **rules: object) -> NumericCheck:
    return NumericCheck("reading", NumericRules(**rules), MeterMemory(tmp_path / "meters" / "cam.json"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "rules", "value"),
    [
        ("00123456", {"decimals": 3}, 123.456),
        ("00123.456", {"decimals": 3}, 123.456),
        ("0012.3456", {"decimals": 3}, 123.456),  # a ghost point in the wrong place is ignored
        ("12,5", {}, 12.5),
        ("0042", {}, 42.0),
        ("-3.5", {"signed": True}, -3.5),
    ],
)
def test_numbers_are_parsed_with_a_fixed_point_and_leading_zeros(text, rules, value) -> None:
    assert parse_number(text, NumericRules(**rules)) == (pytest.approx(value), None)


@pytest.mark.parametrize(("text", "rules"), [("", {}), ("1.2.3", {}), ("-3", {}), ("12a", {}), (".", {})])
def test_what_is_not_a_number_says_why(text, rules) -> None:
    value, why = parse_number(text, NumericRules(**rules))
    assert value is None and why


def test_only_configured_rules_apply(tmp_path) -> None:
    c = check(tmp_path, monotonic="increasing")
    assert c.check("100", T0).kind == "accept"
    assert c.check("5000", T0 + 1).kind == "accept"  # no rate limit, no jump limit by default
    v = c.check("4999", T0 + 2)
    assert (v.kind, v.reason, v.value) == ("reject", "monotonic", None)
    assert v.last is not None and v.last.value == 5000


def test_max_jump_and_max_rate_per_reading(tmp_path) -> None:
    c = check(tmp_path, max_jump=10)
    c.check("100", T0)
    assert c.check("111", T0 + 1).reason == "max_jump"
    assert c.check("90", T0 + 2).kind == "accept"  # no monotonic rule: a decrease within the jump is fine
    r = check(tmp_path / "b", max_rate=2, rate_per="reading")
    r.check("10", T0)
    assert r.check("13", T0 + 3600).reason == "max_rate"  # per reading: time does not help
    assert r.check("12", T0 + 3601).kind == "accept"


def test_rate_per_minute_grows_with_elapsed_time_and_allows_one_step(tmp_path) -> None:
    c = check(tmp_path, decimals=2, monotonic="increasing", max_rate=0.01)
    assert c.check("10000", T0).kind == "accept"  # 100.00
    # One step of the last digit a second later is the display rolling over, not a rate of 0.6/min.
    assert c.check("10001", T0 + 1).kind == "accept"
    assert c.check("10003", T0 + 2).reason == "max_rate"
    # After an hour away the meter may have moved on by 0.6.
    assert c.check("10060", T0 + 3601).kind == "accept"


def test_hysteresis_ignores_jitter_of_the_last_digit(tmp_path) -> None:
    c = check(tmp_path, decimals=3, monotonic="increasing", hysteresis=0.001)
    c.check("00100000", T0)
    v = c.check("00099999", T0 + 1)  # the last digit flickers back: not a decrease
    assert (v.kind, v.value) == ("same", 100.0)
    assert c.check("00099998", T0 + 2).reason == "monotonic"


def test_the_remembered_value_survives_a_new_memory_and_damage_is_survived(tmp_path) -> None:
    path = tmp_path / "meters" / "cam.json"
    NumericCheck("reading", NumericRules(monotonic="increasing"), MeterMemory(path)).check("500", T0)
    assert json.loads(path.read_text())["regions"]["reading"]["value"] == 500
    again = NumericCheck("reading", NumericRules(monotonic="increasing"), MeterMemory(path))
    assert again.check("499", T0 + 10).reason == "monotonic"  # the first reading after a restart is checked
    path.write_text("{not json")
    assert MeterMemory(path).get("reading") is None  # logged; starts afresh instead of crashing


def test_an_unwritable_memory_keeps_checking_in_memory(tmp_path) -> None:
    if os.geteuid() == 0:
        blocker = tmp_path / "meters"
        blocker.write_text("a file where the folder should be")  # even root cannot mkdir through it
    else:
        blocker = tmp_path / "meters"
        blocker.mkdir()
        blocker.chmod(0o500)
    memory = MeterMemory(tmp_path / "meters" / "c.json")
    c = NumericCheck("reading", NumericRules(monotonic="increasing"), memory)
    assert c.check("10", T0).kind == "accept"
    assert c.check("9", T0 + 1).reason == "monotonic"


def test_rejected_readings_that_agree_long_enough_become_the_value(tmp_path) -> None:
    c = check(tmp_path, monotonic="increasing", accept_after_s=60)
    c.check("90000", T0)
    # A meter swap: the new one shows 12 and counts up slowly.
    assert c.check("12", T0 + 1).kind == "reject"
    assert c.check("12", T0 + 30).kind == "reject"
    v = c.check("13", T0 + 62)
    assert (v.kind, v.value, v.rebased) == ("accept", 13.0, True)
    assert "agreed" in (v.detail or "")
    assert c.memory.get("reading").source == "agreement"  # type: ignore[union-attr]


def test_a_short_glare_never_gets_through(tmp_path) -> None:
    c = check(tmp_path, monotonic="increasing", accept_after_s=60)
    c.check("500", T0)
    for t in range(0, 300, 20):  # a misread that comes and goes, with valid readings between
        assert c.check("88", T0 + t).kind == "reject"
        assert c.check("500", T0 + t + 10).kind == "same"
    # Readings that disagree with each other never build up agreement either.
    for k, t in enumerate(range(400, 800, 20)):
        assert c.check(str(400 - k * 7), T0 + t).kind == "reject"


def test_set_value_is_a_new_baseline(tmp_path) -> None:
    c = check(tmp_path, monotonic="increasing")
    c.check("900", T0)
    c.memory.set("reading", Remembered(5.0, T0 + 1, "", "command"))  # cmd/set_value after a swap
    assert c.check("7", T0 + 2).kind == "accept"


def test_constrained_ctc_takes_the_best_allowed_class_and_renormalizes() -> None:
    charset = ("O", "0", "B", "8")
    # Two time steps: "O" (0.7) over "0" (0.2); then "B" (0.6) over "8" (0.3); blank otherwise.
    probs = np.array([[[0.05, 0.7, 0.2, 0.03, 0.02], [0.05, 0.02, 0.03, 0.6, 0.3]]], np.float32)
    (free,) = greedy_decode(probs, charset)
    (digits,) = greedy_decode(probs, charset, class_mask(charset, "0123456789"))
    assert free.text == "OB"
    assert digits.text == "08"
    # Among the blank and the digits only: "0" 0.2 of (0.05 + 0.2 + 0.02), "8" 0.3 of (0.05 + 0.03 + 0.3).
    assert digits.char_confidences == pytest.approx((0.2 / 0.27, 0.3 / 0.38), rel=1e-5)
    assert digits.confidence == pytest.approx(np.mean(digits.char_confidences))
