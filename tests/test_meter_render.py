"""The generated 7-segment meter (edge_ocr/bench/meter.py): videos decode, drift moves the face, and the
LCD window reads as its text through the real engine."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_ocr.bench.meter import (
    CELLS,
    LCD_BOX,
    PATCHES,
    counter_schedule,
    drifted_point,
    meter_frame,
    seven_segment,
    write_meter_video,
)


def crop(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = box
    return img[y : y + h, x : x + w]


def find(frame: np.ndarray, template: np.ndarray) -> tuple[tuple[int, int], float]:
    """Top-left corner of the best normalized-correlation match of `template` in `frame`, and its score."""
    scores = cv2.matchTemplate(frame, template, cv2.TM_CCOEFF_NORMED)
    _, best, _, loc = cv2.minMaxLoc(scores)
    return (int(loc[0]), int(loc[1])), float(best)


def overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def test_video_has_a_frame_per_tick_and_decodes(tmp_path):
    path = tmp_path / "meter.avi"
    schedule = counter_schedule(123.456, 3, increment=0.5, seconds=0.5)
    assert [text for text, _ in schedule] == ["00123.456", "00123.956", "00124.456"]
    # the camera jumps by (24, -16) px at frame 12, during the last reading
    starts = write_meter_video(
        path, schedule, fps=10.0, drift=lambda i: (24, -16, 0) if i >= 12 else (0, 0, 0)
    )
    assert starts == [0, 5, 10]

    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 15
    assert all(f.shape == (480, 640, 3) for f in frames)

    lcd = crop(meter_frame("00124.456", noise=0), LCD_BOX)
    x, y = LCD_BOX[:2]
    assert find(frames[11], lcd)[0] == (x, y)
    assert find(frames[12], lcd)[0] == (x + 24, y - 16)

    # a new reading changes the LCD; frames of one reading differ by sensor noise only
    def changed(a: np.ndarray, b: np.ndarray) -> float:
        return float((np.abs(crop(a, LCD_BOX).astype(int) - crop(b, LCD_BOX)) > 60).mean())

    assert changed(frames[1], frames[2]) == 0
    assert changed(frames[4], frames[5]) > 0.003  # 4 -> 9 in one cell: segments a and d appear


@pytest.mark.parametrize("drift", [(30.0, -20.0, 0.0), (-25.0, 15.0, 3.0), (10.0, 25.0, -4.0)])
def test_drift_moves_the_lcd_and_the_marks_with_it(drift):
    """The face turns by the angle about the frame centre, then shifts: each box's content, turned by the
    angle about its own centre, is found around where that centre went."""
    still = meter_frame("04711.815", noise=0)
    moved = meter_frame("04711.815", drift=drift, noise=4, seed=1)
    for box in (LCD_BOX, *PATCHES):
        x, y, w, h = box
        centre = (x + w / 2, y + h / 2)
        turned = cv2.warpAffine(still, cv2.getRotationMatrix2D(centre, drift[2], 1.0), (640, 480))
        inner = (x + 12, y + 12, w - 24, h - 24)
        (fx, fy), score = find(moved, crop(turned, inner))
        cx, cy = drifted_point(centre, drift)
        assert score > 0.8, box
        assert abs(fx + inner[2] / 2 - cx) <= 2 and abs(fy + inner[3] / 2 - cy) <= 2, (
            box,
            (fx, fy),
            (cx, cy),
        )
        if drift[2] == 0:
            assert (fx, fy) == (round(inner[0] + drift[0]), round(inner[1] + drift[1]))


def test_marks_are_textured_and_away_from_the_digits():
    frame = meter_frame("00123.456", noise=0)
    for box in PATCHES:
        assert not overlaps(box, LCD_BOX)
        assert crop(frame, box).std() > 30, box  # something for a template matcher to lock onto
    (ax, ay, _, _), (bx, by, _, _) = PATCHES
    assert abs(ax - bx) > 200 and abs(ay - by) > 200


def test_lcd_has_ghost_segments_a_decimal_point_and_fixed_size():
    def grey_std(img: np.ndarray) -> float:
        return float(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).std())

    assert grey_std(seven_segment("        ", ghost=0.15)) > 5  # the unlit segments show faintly
    assert grey_std(seven_segment("        ", ghost=0.0)) < 3
    assert seven_segment("00123.456").shape == seven_segment("00123456").shape  # '.' takes no cell
    assert not np.array_equal(seven_segment("00123.456"), seven_segment("00123456"))
    assert seven_segment("", cells=CELLS).shape[:2] == (LCD_BOX[3], LCD_BOX[2])  # drawn 1:1 in the frame
    # in a frame, shorter readings are right-aligned in CELLS cells: the window never moves or resizes
    assert seven_segment("42", cells=CELLS).shape == seven_segment("00000042", cells=CELLS).shape
    with pytest.raises(ValueError):
        seven_segment("12a4")
    with pytest.raises(ValueError):
        seven_segment("123456789", cells=CELLS)


def test_frames_are_deterministic_for_a_seed():
    a = meter_frame("00123.456", glare=0.4, noise=5, blur=0.8, seed=3)
    assert np.array_equal(a, meter_frame("00123.456", glare=0.4, noise=5, blur=0.8, seed=3))
    assert not np.array_equal(a, meter_frame("00123.456", glare=0.4, noise=5, blur=0.8, seed=4))


def test_counter_readings_keep_their_leading_zeros_and_roll_over():
    readings = [t for t, _ in counter_schedule(99999.998, 3, increment=0.001)]
    assert readings == ["99999.998", "99999.999", "00000.000"]
    texts = [t for t, _ in counter_schedule(42.5, 50, increment=(0.001, 0.9), seed=2)]
    assert all(len(t) == 9 and t[5] == "." for t in texts)
    assert [float(t) for t in texts] == sorted({float(t) for t in texts})


@pytest.mark.parametrize(
    "text, conditions",
    [
        ("00123.456", {}),
        ("04711.815", {"ghost": 0.15, "noise": 4, "glare": 0.3, "blur": 0.8}),
    ],
)
def test_lcd_crop_reads_as_its_text(engine, text, conditions):
    frame = meter_frame(text, **conditions)
    assert engine.run_line(crop(frame, LCD_BOX)).text == text


def test_lcd_reads_from_a_decoded_video_frame(engine, tmp_path):
    path = tmp_path / "meter.avi"
    write_meter_video(path, [("00042.137", 0.2)], fps=10.0, noise=4, ghost=0.15)
    cap = cv2.VideoCapture(str(path))
    ok, frame = cap.read()
    cap.release()
    assert ok
    assert engine.run_line(crop(frame, LCD_BOX)).text == "00042.137"
