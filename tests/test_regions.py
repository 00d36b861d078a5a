"""Regions of interest: crops, change skipping, debounce, validation, evidence, the message contract."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_ocr.bench.camera import FRAME, METER_BOX, meter_frame
from edge_ocr.evidence import EvidenceStore
from edge_ocr.regions import (
    WHOLE_FRAME,
    Region,
    RegionAnalyzer,
    RegionTracker,
    order_quad,
    value_message,
)
from edge_ocr.types import OcrResult, TextLine

READING = Region("reading", box=METER_BOX, pattern=r"\d{5}", charset="0123456789")


class FakeEngine:
    """Reads the value from a lookup of the crop's mean grey level; counts calls."""

    def __init__(self, texts: dict[int, str]) -> None:
        self.texts = texts
        self.calls = 0

    def _result(self, image: np.ndarray, charset: str | None = None, upright: bool = False) -> OcrResult:
        self.calls += 1
        text = self.texts.get(int(image[0, 0, 0]), "")
        h, w = image.shape[:2]
        box = ((0.0, 0.0), (float(w), 0.0), (float(w), float(h)), (0.0, float(h)))
        return OcrResult(lines=(TextLine(text, 0.9, box),) if text else (), width=w, height=h)

    run = run_line = _result


def flat(level: int) -> np.ndarray:
    return np.full((60, 80, 3), level, np.uint8)


# ------------------------------------------------------------------ with the real engine


def test_box_region_reads_the_meter(engine) -> None:
    tracker = RegionTracker(engine, [READING], debounce_frames=1)
    out = tracker.update(meter_frame("04512", noise=3))
    assert [(v.region, v.text, v.valid) for v in out.values] == [("reading", "04512", True)]
    assert out.values[0].confidence > 0.8


def test_tilted_polygon_is_perspective_corrected(engine) -> None:
    frame = meter_frame("07310")
    w, h = FRAME
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[30, 10], [w - 10, 35], [w - 25, h - 5], [5, h - 30]])
    m = cv2.getPerspectiveTransform(src, dst)
    tilted = cv2.warpPerspective(frame, m, (w, h), borderValue=(90, 90, 90))
    x, y, bw, bh = METER_BOX
    corners = np.float32([[[x, y]], [[x + bw, y]], [[x + bw, y + bh]], [[x, y + bh]]])
    poly = cv2.perspectiveTransform(corners, m).reshape(4, 2)
    shuffled = tuple((float(p[0]), float(p[1])) for p in poly[[2, 0, 3, 1]])  # any order is accepted
    region = Region("reading", polygon=shuffled, pattern=r"\d{5}")
    assert RegionTracker(engine, [region], debounce_frames=1).update(tilted).values[0].text == "07310"
    # the points were given in any order; order_quad puts them clockwise from top-left
    assert order_quad(poly[[2, 0, 3, 1]]).tolist() == poly.tolist()


def test_whole_frame_text_mode_when_no_region(engine) -> None:
    tracker = RegionTracker(engine, [], debounce_frames=1)
    (value,) = tracker.update(meter_frame("04512")).values
    assert value.region == WHOLE_FRAME
    assert "04512" in value.text


# ------------------------------------------------------------------ change handling and debounce


def test_unchanged_region_is_not_read_again_and_noise_does_not_count_as_change() -> None:
    engine = FakeEngine({100: "00001"})
    tracker = RegionTracker(
        engine, [Region("r", box=(0, 0, 80, 60))], change_threshold=2.0, debounce_frames=1
    )
    rng = np.random.default_rng(1)
    noisy = [np.clip(flat(100).astype(int) + rng.integers(-3, 4, (60, 80, 3)), 0, 255) for _ in range(5)]
    outs = [tracker.update(n.astype(np.uint8)) for n in noisy]
    assert engine.calls == 1
    assert [o.read for o in outs] == [1, 0, 0, 0, 0]
    assert [len(o.values) for o in outs] == [1, 0, 0, 0, 0]
    # threshold 0 reads every frame
    engine0 = FakeEngine({100: "00001"})
    tracker0 = RegionTracker(
        engine0, [Region("r", box=(0, 0, 80, 60))], change_threshold=0, debounce_frames=1
    )
    for n in noisy:
        tracker0.update(n.astype(np.uint8))
    assert engine0.calls == 5


def test_value_published_once_per_change_after_n_equal_readings() -> None:
    engine = FakeEngine({10: "00001", 20: "00002", 30: "0000?"})
    region = Region("r", box=(0, 0, 80, 60), pattern=r"\d{5}")
    tracker = RegionTracker(engine, [region], change_threshold=1.0, debounce_frames=3)
    # 00001 x4, a one-frame glitch, 00002 x2 (not enough), 00001 again, then 00002 x5
    levels = [10] * 4 + [30] + [20] * 2 + [10] + [20] * 5
    published = []
    for i, level in enumerate(levels):
        for v in tracker.update(flat(level)).values:
            published.append((i, v.text, v.previous))
    assert published == [(2, "00001", None), (10, "00002", "00001")]


def test_invalid_value_is_published_with_valid_false_and_charset_filters() -> None:
    engine = FakeEngine({10: "A12-345", 20: "12 34"})
    region = Region("r", box=(0, 0, 80, 60), pattern=r"^\d{5}$", charset="0123456789")
    tracker = RegionTracker(engine, [region], debounce_frames=1)
    (a,) = tracker.update(flat(10)).values
    assert (a.text, a.valid) == ("12345", True)  # letters and '-' filtered out
    (b,) = tracker.update(flat(20)).values
    assert (b.text, b.valid) == ("1234", False)  # published, not dropped


def test_empty_reading_is_not_published_and_forced_capture_republishes() -> None:
    engine = FakeEngine({10: "00001"})
    tracker = RegionTracker(engine, [Region("r", box=(0, 0, 80, 60))], debounce_frames=1)
    assert tracker.update(flat(0)).values == ()  # nothing read
    assert len(tracker.update(flat(10)).values) == 1
    assert tracker.update(flat(10)).values == ()
    (forced,) = tracker.update(flat(10), force=True).values
    assert forced.forced and forced.text == "00001"


def test_region_outside_the_frame_is_skipped() -> None:
    tracker = RegionTracker(FakeEngine({}), [Region("r", box=(500, 500, 50, 50))])
    assert tracker.update(flat(10)).values == ()


# ------------------------------------------------------------------ evidence and messages


def test_evidence_folder_is_bounded_by_count_and_bytes(tmp_path) -> None:
    other = tmp_path / "not-ours.jpg"
    other.write_bytes(b"x")
    store = EvidenceStore(tmp_path, "meter", max_files=3, max_bytes=10 << 20)
    paths = [
        store.save(meter_frame(f"{i:05d}", noise=20, seed=i), 1_700_000_000 + i, "reading") for i in range(6)
    ]
    kept = sorted(p.name for p in tmp_path.glob("meter-*.jpg"))
    assert kept == sorted(p.name for p in paths[-3:] if p)
    assert other.exists()  # files this store did not write are left alone
    size = paths[-1].stat().st_size
    small = EvidenceStore(tmp_path, "meter", max_files=100, max_bytes=int(size * 1.5))
    small.save(meter_frame("99999", noise=20), 1_800_000_000, "reading")
    assert len(list(tmp_path.glob("meter-*.jpg"))) == 1


def test_analyzer_names_the_evidence_in_the_message_and_ids_are_stable(tmp_path) -> None:
    engine = FakeEngine({10: "00001"})
    tracker = RegionTracker(engine, [Region("r", box=(0, 0, 80, 60), pattern=r"\d+")], debounce_frames=1)
    analyzer = RegionAnalyzer(
        "meter", "dev", tracker, model={"rec": "x"}, evidence=EvidenceStore(tmp_path, "meter")
    )
    (msg,) = analyzer.messages(flat(10), 1_700_000_000.25)
    assert set(msg) >= {"id", "device_id", "source", "region", "text", "valid", "confidence", "captured_at"}
    assert (msg["source"], msg["region"], msg["text"], msg["valid"]) == ("meter", "r", "00001", True)
    assert msg["captured_at"] == "2023-11-14T22:13:20.250Z"
    evidence = tmp_path / msg["evidence"].rsplit("/", 1)[1]
    assert evidence.is_file() and cv2.imread(str(evidence)) is not None
    again = value_message(
        device_id="dev",
        source="meter",
        value=tracker_value("r", "00001"),
        captured_at=1_700_000_000.25,
        model={},
    )
    assert again["id"] == msg["id"]
    other = value_message(
        device_id="dev",
        source="meter",
        value=tracker_value("r", "00002"),
        captured_at=1_700_000_000.25,
        model={},
    )
    assert other["id"] != msg["id"]


def tracker_value(region: str, text: str):
    from edge_ocr.regions import RegionValue

    return RegionValue(region=region, text=text, valid=True, confidence=1.0, previous=None)


def test_region_needs_box_or_polygon_not_both() -> None:
    with pytest.raises(ValueError):
        Region("r", box=(0, 0, 1, 1), polygon=((0, 0), (1, 0), (1, 1), (0, 1)))


def test_lcd_ghost_segments_are_not_read_as_digits(engine, tmp_path) -> None:
    """Blank leading cells of an LCD still show a faint 8: a numeric region reads the value, not them."""
    from edge_ocr.bench.meter import LCD_BOX, meter_frame
    from edge_ocr.plausibility import MeterMemory, NumericRules

    rules = NumericRules(decimals=1)
    wrong = 0
    for seed, text in enumerate(["4865.6", "9340.6", "318.7", "2681.1"]):
        frame = meter_frame(text, ghost=0.25, noise=4, seed=seed)
        read = {}
        for ghosts in (False, True):
            region = Region("r", box=LCD_BOX, charset="0123456789.", numeric=rules, suppress_ghosts=ghosts)
            memory = MeterMemory(tmp_path / f"{seed}-{ghosts}.json")
            (value,) = RegionTracker(engine, [region], debounce_frames=1, memory=memory).update(frame).values
            read[ghosts] = value.value if value.valid else None
        assert read[True] == pytest.approx(float(text)), (text, read)
        wrong += read[False] != pytest.approx(float(text))
    assert wrong >= 2  # raw, the ghosts are read (this is what suppression is for)


def test_a_one_segment_step_of_the_last_digit_is_read(engine, tmp_path) -> None:
    """8 -> 9 on an 8-digit LCD changes one segment: change skipping must still see it, and noise not."""
    from edge_ocr.bench.meter import LCD_BOX, meter_frame
    from edge_ocr.plausibility import MeterMemory, NumericRules

    rules = NumericRules(decimals=3)
    region = Region("r", box=LCD_BOX, charset="0123456789.", numeric=rules, suppress_ghosts=True)
    tracker = RegionTracker(engine, [region], debounce_frames=2, memory=MeterMemory(tmp_path / "m.json"))
    published, reads = [], 0
    for k, text in enumerate(["01234.778", "01234.779", "01235.715", "01235.716"]):
        for j in range(3):  # the same value on 3 frames, with fresh sensor noise each
            out = tracker.update(meter_frame(text, noise=4, ghost=0.2, seed=10 * k + j))
            reads += out.read
            published += [v.text for v in out.values]
    assert published == ["01234.778", "01234.779", "01235.715", "01235.716"]
    assert reads == 4  # once per value: noise alone is no change


def test_cli_reads_an_lcd_with_charset_and_ghost_suppression(tmp_path) -> None:
    """`edge-ocr ocr --line --charset ... --suppress-ghosts`: what a user tries on a saved meter crop."""
    import subprocess
    import sys
    from pathlib import Path

    from edge_ocr.bench.meter import LCD_BOX, meter_frame

    x, y, w, h = LCD_BOX
    crop = tmp_path / "lcd.png"
    cv2.imwrite(str(crop), meter_frame("48656", ghost=0.25, noise=4, seed=1)[y : y + h, x : x + w])
    exe = str(Path(sys.executable).with_name("edge-ocr"))
    plain = subprocess.run([exe, "ocr", "--line", str(crop)], capture_output=True, text=True, timeout=120)
    meter = subprocess.run(
        [exe, "ocr", "--line", "--charset", "0123456789", "--suppress-ghosts", str(crop)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert meter.returncode == 0, meter.stderr
    assert meter.stdout.strip() == "48656"
    assert plain.stdout.strip() != "48656"  # the blank cells ghost 8s and points, read raw
