"""The camera benchmark's meter scenario (edge_ocr/bench/camera.py) on a short video: a real daemon and a
real broker; no misread is ever a value, and each injected one is published invalid with its rule."""

from __future__ import annotations

import pytest

from edge_ocr.bench.camera import _misread, _segments, meter_scenario, run_meter
from edge_ocr.bench.devbroker import mosquitto_binary


def test_scenario_misreads_break_their_rule_and_are_plain_to_see() -> None:
    sc = meter_scenario(24, 2.0, misreads=4)
    assert len(sc.values) == 24 and len(sc.misreads) == 4
    keys = [s.key for s in sc.values]
    assert keys == sorted(set(keys))
    for i, s in enumerate(sc.shown):
        if s.misread is None:
            continue
        last = sc.shown[i - 1]
        assert last.misread is None
        if s.misread == "max_jump":
            assert s.key - last.key > 2000
        else:
            assert s.key < last.key
        changed = [(a, b) for a, b in zip(last.text, s.text, strict=True) if a != b]
        assert len(changed) == 1 and _segments(*changed[0]) >= 4
    assert 0 < sc.jump_frame < sc.frames
    assert _misread("00000.000", "max_jump", (3,)) != "00000.000"
    with pytest.raises(ValueError):
        _misread("00000.000", "monotonic", (7,))


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")
def test_short_meter_run_publishes_no_misread_as_a_value(models_dir) -> None:
    report = run_meter(values=6, period=1.5, misreads=2, misread_s=1.0, every_frame=False)
    run = report["runs"]["change_skipping"]
    assert run["wrong_valid_values"] == 0, run["wrong_valid"]
    assert run["misreads_accepted"] == 0
    assert run["misreads_rejected"] == run["misreads_injected"] == 2, run["rejections"]
    assert sorted(e["reason"] for e in run["rejections"]) == ["max_jump", "monotonic"]
    assert all(e["reason"] == e["breaks"] for e in run["rejections"])
    assert run["published_valid_once"] >= 3
    assert run["frames_not_aligned"] == 0 and run["alignment_reports"] == 0
    assert report["cpu"]["model"]
