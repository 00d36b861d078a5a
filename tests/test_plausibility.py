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


# ------------------------------------------------------------------ carry


@pytest.mark.parametrize(
    ("last", "reading", "digit"),
    [
        ("01239", "01249", "tens"),  # the tens drum read mid-roll as 4 while the units still show 9
        ("01239", "01230", "tens"),  # the units wrapped 9 -> 0, the tens did not follow
        ("01239.9", "01240.9", "ones"),  # the ones drum ahead while the tenths still show 9
        ("01299", "01399", "hundreds"),
        ("01237", "01230", "tens"),  # the units passed 9 -> 0 (three steps on), the tens stayed
    ],
)
def test_carry_rejects_a_premature_or_a_missed_carry(tmp_path, last, reading, digit) -> None:
    c = check(tmp_path, monotonic="increasing")
    assert c.check(last, T0).kind == "accept"
    v = c.check(reading, T0 + 5)
    assert (v.kind, v.reason, v.value) == ("reject", "carry", None)
    assert f"the {digit} digit" in (v.detail or ""), v.detail
    assert c.memory.get("reading").text == last  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("last", "reading"),
    [
        ("01239", "01240"),
        ("01239.9", "01240.0"),
        ("00999", "01000"),
        ("01239", "01241"),  # the units wrapped and the tens followed
        ("01238", "01239"),
        ("00123456", "00123517"),  # more than a turn of the last digit, not ending at 9: not a carry
    ],
)
def test_carry_accepts_true_carries(tmp_path, last, reading) -> None:
    c = check(tmp_path, monotonic="increasing")
    c.check(last, T0)
    v = c.check(reading, T0 + 5)
    assert (v.kind, v.reason) == ("accept", None), v.detail


def test_either_reading_of_a_drum_in_motion_passes(tmp_path) -> None:
    # 01239.9 rolling over: the tenths between 9 and 0, and so the ones and the tens drums too.
    c = check(tmp_path, monotonic="increasing")
    c.check("01239.9", T0)
    assert c.check("01239.9", T0 + 5).kind == "same"  # still the old digits
    assert c.check("01240.0", T0 + 10).kind == "accept"  # all drums already on
    assert c.check("01240.0", T0 + 15).kind == "same"
    # Mixed readings of the same moment are not a counter's state at any time.
    d = check(tmp_path / "b", monotonic="increasing")
    d.check("01239.9", T0)
    assert [d.check(t, T0 + 5 + k).reason for k, t in enumerate(["01249.9", "01240.9", "01230.0"])] == [
        "carry", "carry", "carry",
    ]  # fmt: skip


def test_carry_is_on_for_increasing_counters_unless_set(tmp_path) -> None:
    from edge_ocr.config.schema import NumericConfig

    assert NumericRules(monotonic="increasing").checks_carry
    assert not NumericRules(monotonic="none").checks_carry
    assert not NumericRules(monotonic="decreasing").checks_carry
    assert not NumericRules.from_config(NumericConfig(monotonic="increasing", carry=False)).checks_carry
    assert NumericRules.from_config(NumericConfig(carry=True)).checks_carry

    plain = check(tmp_path / "none")  # monotonic none: no carry rule
    plain.check("01239", T0)
    assert plain.check("01249", T0 + 5).kind == "accept"
    off = check(tmp_path / "off", monotonic="increasing", carry=False)
    off.check("01239", T0)
    assert off.check("01230", T0 + 5).reason == "monotonic"
    assert off.check("01249", T0 + 10).kind == "accept"
    # Set for monotonic none, the direction is the change's: a premature carry up (or borrow down).
    both = check(tmp_path / "both", carry=True)
    both.check("01239", T0)
    assert both.check("01249", T0 + 5).reason == "carry"
    assert both.check("01238", T0 + 10).kind == "accept"  # a decrease is no carry
    down = check(tmp_path / "down", monotonic="decreasing", carry=True)  # a counter counting down
    down.check("01240", T0)
    assert down.check("01230", T0 + 5).reason == "carry"  # the tens went down before the units wrapped
    assert down.check("01249", T0 + 10).reason == "carry"  # the units wrapped 0 -> 9, the tens stayed
    assert down.check("01239", T0 + 15).kind == "accept"


def test_a_full_turn_after_an_outage_comes_back_through_agreement(tmp_path) -> None:
    c = check(tmp_path, monotonic="increasing", accept_after_s=60)
    c.check("01239", T0)
    # An hour without readings: the units really turned once, and the meter stands at 01249; that looks
    # like a premature carry until the readings have agreed for accept_after_s.
    assert c.check("01249", T0 + 3600).reason == "carry"
    assert c.check("01249", T0 + 3630).reason == "carry"
    v = c.check("01249", T0 + 3665)
    assert (v.kind, v.value, v.rebased) == ("accept", 1249.0, True)
    assert "first rejected by carry" in (v.detail or "")


def test_the_rate_allowance_grows_from_the_last_confirmation(tmp_path) -> None:
    c = check(tmp_path, decimals=2, monotonic="increasing", max_rate=0.01)
    c.check("10000", T0)  # 100.00
    for t in range(10, 3600, 10):  # read again every 10 s for an hour: the value is confirmed
        assert c.check("10000", T0 + t).kind == "same"
    v = c.check("10050", T0 + 3600)  # +0.50 in 10 s since the last confirmation, not in an hour
    assert (v.kind, v.reason) == ("reject", "max_rate")
    assert "in 10 s" in (v.detail or "")
    assert c.check("10001", T0 + 3610).kind == "accept"  # one step of the last digit is always allowed
    # After an outage (no readings) the allowance grows as before.
    assert c.check("10060", T0 + 3610 + 3600).kind == "accept"


# A counter read every 5 s for an hour: 0.1 per minute (one step of the last digit), standing still from
# minute 15 to 40 (nobody draws water), passing 1239.9 -> 1240.0 near the end.
START = 12366  # 1236.6, in tenths
MAX_RATE = 0.5  # per minute


def true_tenths(t: float) -> int:
    minute = int(t // 60)
    return START + min(minute, 15) + max(0, minute - 40)


def tenths_text(u: int) -> str:
    return f"{u // 10:05d}.{u % 10}"


def premature(u: int) -> int:
    """`u` with its highest drum in motion (all drums right of it at 9) read one ahead; without a 9 at
    the end, the tens of the last digit read one too high (a plain misread of that digit)."""
    nines = len(str(u)) - len(str(u).rstrip("9"))
    return u + 10 ** max(1, nines)


@pytest.mark.parametrize("misread", ["premature", "stuck"])
def test_a_steady_misread_beside_the_true_value_is_never_accepted(tmp_path, misread) -> None:
    """Every third frame is wrong: a premature carry (or a misread of the same digit), or one value
    stuck 10 above where the counter started. The true readings in between keep confirming the
    value, so the rate allowance never grows to cover the misread (AI-on-the-edge-device #4112),
    and they end every agreement of the wrong readings before accept_after_s."""
    c = check(tmp_path, monotonic="increasing", max_rate=MAX_RATE, accept_after_s=600)
    accepted, reasons, old_rule_lets_through = [], [], []
    for i, t in enumerate(range(0, 3600, 5)):
        u = true_tenths(t)
        if i % 3 == 2:
            wrong = premature(u) if misread == "premature" else START + 100
            v = c.check(tenths_text(wrong), T0 + t)
            assert v.kind == "reject", (t, tenths_text(u), tenths_text(wrong), v)
            reasons.append(v.reason)
            assert v.last is not None
            # The allowance as it was: grown since the remembered value was first accepted.
            old_allowed = MAX_RATE * (T0 + t - v.last.at) / 60 + 0.1
            if v.reason != "carry" and abs(wrong / 10 - v.last.value) <= old_allowed:
                old_rule_lets_through.append((t, tenths_text(wrong)))
        else:
            v = c.check(tenths_text(u), T0 + t)
            assert v.kind in ("accept", "same"), (t, tenths_text(u), v)
            assert v.value == pytest.approx(u / 10)
            if v.kind == "accept":
                assert not v.rebased
                accepted.append(tenths_text(u))
    truth = sorted({tenths_text(true_tenths(t)) for t in range(0, 3600, 5)})
    assert accepted == truth  # every true change, once, in order (the first reading included)
    assert "01239.9" in accepted and "01240.0" in accepted
    assert c.memory.get("reading").value == pytest.approx(1240.0)  # type: ignore[union-attr]
    if misread == "premature":
        assert {"carry", "max_rate"} == set(reasons)
    else:
        assert set(reasons) == {"max_rate"}
    # Without the confirmation, the allowance would have let the misread through while the counter stood.
    assert old_rule_lets_through and all(15 * 60 <= t < 41 * 60 for t, _ in old_rule_lets_through)
