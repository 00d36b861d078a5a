"""Alignment of frames to a reference: shift and turn found, regions read where they were, bounds refused."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_ocr.alignment import Aligner, load_reference, save_reference
from edge_ocr.bench.meter import LCD_BOX, PATCHES, meter_frame


def aligner(reference: np.ndarray) -> Aligner:
    return Aligner(reference, PATCHES, max_shift_px=80, max_angle_deg=10, min_score=0.5)


@pytest.mark.parametrize("drift", [(30.0, 0.0, 3.0), (-25.0, 18.0, -4.0), (12.5, -7.0, 0.0)])
def test_a_shifted_and_turned_frame_is_found_and_warped_back(drift) -> None:
    reference = meter_frame("00123.456", noise=0, seed=1)
    frame = meter_frame("00123.456", drift=drift, noise=3, seed=2)
    a = aligner(reference).align(frame)
    assert a.ok, a.reason
    assert a.angle == pytest.approx(drift[2], abs=0.3)
    assert a.score > 0.8
    back = aligner(reference).warp(frame, a)
    x, y, w, h = LCD_BOX
    before = np.abs(frame[y : y + h, x : x + w].astype(int) - reference[y : y + h, x : x + w]).mean()
    after = np.abs(back[y : y + h, x : x + w].astype(int) - reference[y : y + h, x : x + w]).mean()
    assert after < 8 < before  # the digits' window holds the digits again


def test_bounds_and_a_foreign_view_are_refused_with_the_reason() -> None:
    reference = meter_frame("00123.456", noise=0)
    al = aligner(reference)
    moved = al.align(meter_frame("00123.456", drift=(0.0, 0.0, 0.0), noise=2))
    assert moved.ok and moved.shift < 1
    far = al.align(meter_frame("00123.456", drift=(150.0, 0.0, 0.0), noise=2))
    assert not far.ok and far.reason
    blank = al.align(np.full_like(reference, 128))
    assert not blank.ok and "poorly" in (blank.reason or "")
    small = al.align(cv2.resize(reference, (320, 240)))
    assert not small.ok and "320x240" in (small.reason or "")


def test_a_flat_patch_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="flat"):
        Aligner(np.full((480, 640, 3), 90, np.uint8), [(10, 10, 50, 50)])


def test_reference_round_trip_and_damage(tmp_path) -> None:
    image = meter_frame("00001.000", noise=0)
    path = tmp_path / "reference" / "meter.png"
    assert load_reference(path) is None
    assert save_reference(path, image)
    assert np.array_equal(load_reference(path), image)  # lossless
    path.write_bytes(b"\x89PNG broken")
    assert load_reference(path) is None


def test_alignment_and_region_validity_are_exported_as_metrics() -> None:
    """What a fleet dashboard scrapes: the shift per camera, and which region is invalid and why."""
    from prometheus_client import CollectorRegistry, generate_latest

    from edge_ocr.web.metrics import StatusCollector

    reference = meter_frame("00123.456", noise=0)
    a = aligner(reference).align(meter_frame("00123.456", drift=(20.0, 0.0, 2.0), noise=2))
    status = {
        "sources": {
            "meter": {
                "type": "camera",
                "alignment": a.to_dict(),
                "regions": {"reading": {"valid": False, "reason": "monotonic"}, "unit": {"valid": True}},
            },
            "inbox": {"type": "folder"},
        }
    }
    registry = CollectorRegistry()
    registry.register(StatusCollector(lambda: status, lambda: True, "dev1"))
    text = generate_latest(registry).decode()
    shift = next(ln for ln in text.splitlines() if ln.startswith("edge_ocr_camera_alignment_shift_px{"))
    assert 'source="meter"' in shift and float(shift.split()[-1]) == pytest.approx(a.shift, abs=0.1)
    assert a.shift > 15
    invalid = [ln for ln in text.splitlines() if ln.startswith("edge_ocr_region_invalid{")]
    reading = next(ln for ln in invalid if 'region="reading"' in ln)
    assert 'reason="monotonic"' in reading and reading.endswith(" 1.0")
    assert any('region="unit"' in ln and ln.endswith(" 0.0") for ln in invalid)
