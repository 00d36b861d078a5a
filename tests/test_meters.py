"""Meter readings users can trust (issue 11), end to end: generated 7-segment meter videos -> a real
daemon (camera source, regions, plausibility, alignment) -> a real mosquitto -> a subscriber.

Every daemon runs in a thread of this process on a video file played in real time (10 fps, a frame
analysed every 0.2 s, a value counted once read on 2 analysed frames). The broker is shared by the
module; each test uses its own device id, so retained state topics never leak between tests. The engine
is pinned to FP32: `precision: auto` would measure INT8 against FP32 at every daemon start (seconds).
Every wait is a condition with a deadline.

Most scenarios change several digits at a time; `test_every_step_of_a_slowly_counting_meter_is_published`
steps the last digit by one (8 -> 9 flips one segment), which the change detection must still see.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from mqtt_broker import Mosquitto, Subscriber, mosquitto_binary, wait_until

from edge_ocr.bench.meter import LCD_BOX, PATCHES, write_meter_video
from edge_ocr.config import parse_config
from edge_ocr.regions import Region, RegionTracker

FPS = 10
INTERVAL_S = 0.2
SOURCE = "meter"
REGION = "reading"
NUMERIC = "{decimals: 3, monotonic: increasing, max_jump: 1.0, unit: m³}"
# A second region (the printed unit beside the LCD): alignment failures are reported once *per region*.
UNIT_BOX = (510, 200, 80, 48)
# The camera knocked mid-video: 45 px to the right and turned 3 degrees, which moves the last digit out of
# the region's box. (The meter model reads a box knocked 30 px to the left right without alignment: only
# leading zeros leave it. The general model read 2 of 4 values right even 30 px to the right.)
SHIFT = (45.0, 0.0, 3.0)
KNOCK = (150.0, 0.0, 0.0)  # beyond max_shift_px (80): cannot be aligned


# ------------------------------------------------------------------ helpers


def box(b: tuple[int, int, int, int]) -> str:
    return "[" + ", ".join(str(v) for v in b) + "]"


def config(
    tmp: Path,
    device: str,
    video: Path,
    broker: Mosquitto,
    *,
    numeric: str = NUMERIC,
    alignment: bool = False,
    unit_region: bool = False,
    change_threshold: float | None = None,
) -> str:
    more = f"\n    alignment: {{patches: [{box(PATCHES[0])}, {box(PATCHES[1])}]}}" if alignment else ""
    if change_threshold is not None:
        more += f"\n    change_threshold: {change_threshold}"
    unit = f"\n      - {{name: unit, box: {box(UNIT_BOX)}}}" if unit_region else ""
    return f"""
device_id: {device}
state_dir: {tmp / "state"}
engine: {{precision: fp32}}
sources:
  - name: {SOURCE}
    type: camera
    url: {video}
    interval_s: {INTERVAL_S}
    debounce_frames: 2
    backoff_min_s: 0.2
    backoff_max_s: 1{more}
    regions:
      - name: {REGION}
        box: {box(LCD_BOX)}
        numeric: {numeric}{unit}
mqtt:
  url: {broker.url}
"""


def parse_time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def remembered(tmp: Path) -> dict[str, Any]:
    """The region's entry in <state_dir>/meters/<source>.json."""
    doc = json.loads((tmp / "state" / "meters" / f"{SOURCE}.json").read_text(encoding="utf-8"))
    return doc["regions"][REGION]


class MeterDaemon:
    """A real Daemon in a thread on one video, and a subscriber to its results, states and replies."""

    def __init__(self, tmp: Path, device: str, video: Path, broker: Mosquitto, **kw: Any) -> None:
        from edge_ocr.daemon import Daemon

        self.tmp, self.device = tmp, device
        self.prefix = f"edge-ocr/{device}"
        self.result_topic = f"{self.prefix}/result/{SOURCE}"
        self.sub = Subscriber(
            broker, [f"{self.prefix}/result/#", f"{self.prefix}/state/#", f"{self.prefix}/cmd/+/reply"]
        )
        self.daemon = Daemon(parse_config(config(tmp, device, video, broker, **kw), base_dir=tmp))
        self.thread = threading.Thread(target=self.daemon.run, daemon=True)
        self.thread.start()
        ok = wait_until(lambda: self.daemon.gen is not None and SOURCE in self.daemon.gen.cameras, timeout=60)
        if not ok:
            self.stop()
            pytest.fail("the daemon did not start its camera within 60 s")

    def __enter__(self) -> MeterDaemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.daemon.request_stop()
        self.thread.join(30)
        self.sub.close()
        assert not self.thread.is_alive(), "the daemon did not stop within 30 s"

    def camera(self) -> dict[str, Any]:
        return self.daemon.status()["sources"][SOURCE]

    def messages(self, region: str | None = REGION) -> list[dict[str, Any]]:
        """The result messages received so far (of one region, or all with None), in order."""
        out = [json.loads(p) for p in self.sub.payloads(self.result_topic)]
        return [m for m in out if region is None or m["region"] == region]

    def wait_messages(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 30) -> bool:
        topic = self.result_topic

        def check(ms: list[Any]) -> bool:
            return predicate([json.loads(m.payload) for m in ms if m.topic == topic])

        return self.sub.wait_for(check, timeout)

    def run_to_end(self, timeout: float = 90) -> list[dict[str, Any]]:
        """Until the video ended, its last frame was analysed, the outbox is empty and the subscriber
        got every message (each result also went to its retained state topic): the messages."""
        assert wait_until(lambda: self.camera()["state"] == "ended", timeout=timeout), self.camera()

        def drained() -> bool:
            st = self.daemon.status()
            cam = st["sources"][SOURCE]
            handled = cam["frames_analysed"] + cam["frames_skipped"] + cam["frames_dropped"]
            return handled >= cam["frames_sampled"] and st["outbox_depth"] == 0

        assert wait_until(drained, timeout=30), self.daemon.status()

        def counts() -> tuple[int, int]:
            ms = [m for m in list(self.sub.messages) if not m.retain]
            results = sum(1 for m in ms if m.topic == self.result_topic)
            states = sum(1 for m in ms if m.topic.startswith(f"{self.prefix}/state/{SOURCE}/"))
            return results, states

        seen: dict[str, Any] = {"counts": None, "since": 0.0}

        def settled() -> bool:  # every result's state copy is in, and nothing new came for 0.3 s
            now = counts()
            if now != seen["counts"]:
                seen.update(counts=now, since=time.monotonic())
                return False
            return now[0] == now[1] and time.monotonic() - seen["since"] >= 0.3

        assert wait_until(settled, timeout=15), counts()
        return self.messages(None)

    def command(self, verb: str, args: dict[str, Any], timeout: float = 15) -> dict[str, Any]:
        """Publish `args` on cmd/<verb> with a fresh id; the reply carrying that id."""
        cid = f"t-{time.monotonic_ns()}"
        topic = f"{self.prefix}/cmd/{verb}"
        self.sub.client.publish(topic, json.dumps({**args, "id": cid}).encode(), qos=1)

        def reply() -> dict[str, Any] | None:
            for p in self.sub.payloads(f"{topic}/reply"):
                doc = json.loads(p)
                if doc.get("id") == cid:
                    return doc
            return None

        assert wait_until(lambda: reply() is not None, timeout=timeout), f"no reply to {verb} {args}"
        doc = reply()
        assert doc is not None
        return doc


def valid_values(msgs: list[dict[str, Any]]) -> list[float]:
    return [m["value"] for m in msgs if m["valid"]]


# ------------------------------------------------------------------ shared broker and videos


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    if mosquitto_binary() is None:
        pytest.fail("mosquitto is not installed: apt-get install mosquitto (MQTT tests need a real broker)")
    b = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    yield b
    b.kill()


def video(tmp_path_factory: pytest.TempPathFactory, name: str, schedule, **kw: Any) -> Path:
    path = tmp_path_factory.mktemp("videos") / f"{name}.avi"
    write_meter_video(path, schedule, fps=FPS, **kw)
    return path


MISREAD_SCHEDULE = [
    ("00123.456", 2.0),
    ("00123.517", 2.0),
    ("00987.517", 1.5),  # a misread: +864 at once (max_jump 1)
    ("00123.682", 2.0),
    ("00111.682", 1.5),  # a misread: a counter that ran backwards (monotonic: increasing)
    ("00123.740", 2.0),
    ("00123.861", 2.0),
]
TRUE_VALUES = [123.456, 123.517, 123.682, 123.740, 123.861]


@dataclass
class Run:
    tmp: Path
    device: str
    messages: list[dict[str, Any]]  # every result message, in order
    status: dict[str, Any]  # the camera's status at the end


@pytest.fixture(scope="module")
def misread_run(tmp_path_factory: pytest.TempPathFactory, broker: Mosquitto) -> Run:
    """One daemon over a counter with two misreads injected (tests 1, 2 and the retained state)."""
    path = video(tmp_path_factory, "misread", MISREAD_SCHEDULE)
    tmp = tmp_path_factory.mktemp("misread")
    with MeterDaemon(tmp, "misread", path, broker) as d:
        msgs = d.run_to_end()
        status = d.camera()
    return Run(tmp, "misread", msgs, status)


SHIFTED_VALUES = ("456", "517", "682", "740")


def align_drift(n: int) -> tuple[float, float, float]:
    return SHIFT if n >= 30 else (0.0, 0.0, 0.0)  # frame 30: halfway through the second value


@pytest.fixture(scope="module")
def shifted_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    schedule = [(f"00123.{v}", 2.0) for v in SHIFTED_VALUES]
    return video(tmp_path_factory, "shifted", schedule, drift=align_drift)


# ------------------------------------------------------------------ plausibility


def test_an_injected_jump_is_never_published_as_a_value(misread_run: Run) -> None:
    msgs = misread_run.messages
    assert all(m["region"] == REGION and m["source"] == SOURCE for m in msgs)
    # The misread is never the value: no valid message carries it, as text or as number.
    valid = [m for m in msgs if m["valid"]]
    assert not [m for m in valid if m["text"] == "00987517" or m["value"] == pytest.approx(987.517)], valid
    assert all(isinstance(m["value"], float) and 123 < m["value"] < 124 for m in valid), valid
    # It is reported once, invalid, naming the rule; the value stands.
    jumps = [m for m in msgs if m["text"] == "00987517"]
    assert len(jumps) == 1, jumps
    (jump,) = jumps
    assert (jump["valid"], jump["reason"], jump["value"]) == (False, "max_jump", None)
    assert jump["last_value"] == pytest.approx(123.517)
    assert "max_jump" in jump["detail"]
    # The true values are each published once, in order, valid.
    assert valid_values(msgs) == pytest.approx(TRUE_VALUES)
    assert [m["text"] for m in valid] == ["00123456", "00123517", "00123682", "00123740", "00123861"]
    assert all(m["unit"] == "m³" and not m.get("rebased") for m in valid)
    after = valid[2]  # the first value after the misread is checked against the last *accepted* one
    assert after["last_value"] == pytest.approx(123.517)
    assert remembered(misread_run.tmp)["value"] == pytest.approx(123.861)


def test_a_decreasing_reading_is_published_invalid_with_monotonic(misread_run: Run) -> None:
    msgs = misread_run.messages
    drops = [m for m in msgs if m["text"] == "00111682"]
    assert len(drops) == 1, [(m["text"], m["valid"], m["reason"]) for m in msgs]
    (drop,) = drops
    assert (drop["valid"], drop["reason"], drop["value"]) == (False, "monotonic", None)
    assert drop["last_value"] == pytest.approx(123.682)  # the remembered value, not the misread
    assert "below" in drop["detail"]
    i = msgs.index(drop)
    assert msgs[i - 1]["valid"] and msgs[i - 1]["value"] == pytest.approx(123.682)
    following = msgs[i + 1]
    assert following["valid"] and following["value"] == pytest.approx(123.740)
    assert following["last_value"] == pytest.approx(123.682)
    assert [(m["valid"], m["reason"]) for m in msgs if not m["valid"]] == [
        (False, "max_jump"),
        (False, "monotonic"),
    ]


def test_the_retained_state_topic_holds_the_latest_message(misread_run: Run, broker: Mosquitto) -> None:
    topic = f"edge-ocr/{misread_run.device}/state/{SOURCE}/{REGION}"
    fresh = Subscriber(broker, [topic])  # a consumer that starts after the daemon stopped
    try:
        assert fresh.wait_for(lambda ms: any(m.topic == topic for m in ms), timeout=10)
        (msg,) = fresh.on(topic)
        assert msg.retain
        latest = json.loads(msg.payload)
        assert latest == misread_run.messages[-1]
        assert (latest["valid"], latest["text"]) == (True, "00123861")
        assert latest["value"] == pytest.approx(123.861)
        assert misread_run.status["regions"][REGION]["value"] == pytest.approx(123.861)
    finally:
        fresh.close()


def test_the_remembered_value_survives_a_restart(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, broker: Mosquitto
) -> None:
    first = video(tmp_path_factory, "restart-a", [("00200.000", 2.0), ("00200.111", 2.5)])
    with MeterDaemon(tmp_path, "restart", first, broker) as d:
        msgs = d.run_to_end()
    assert valid_values(msgs) == pytest.approx([200.0, 200.111])
    saved = remembered(tmp_path)
    assert saved["value"] == pytest.approx(200.111) and saved["text"] == "00200111"

    # A new daemon (a restart) on a camera showing less: its first reading is checked against 200.111.
    second = video(tmp_path_factory, "restart-b", [("00150.000", 3.0)])
    with MeterDaemon(tmp_path, "restart", second, broker) as d:
        msgs = d.run_to_end()
    assert msgs, "the restarted daemon published nothing"
    assert len(msgs) == 1, msgs  # reported once, not every frame
    (msg,) = msgs
    assert (msg["text"], msg["valid"], msg["reason"], msg["value"]) == ("00150000", False, "monotonic", None)
    assert msg["last_value"] == pytest.approx(200.111)
    assert remembered(tmp_path)["value"] == pytest.approx(200.111)


def test_rejected_readings_that_agree_long_enough_are_accepted(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, broker: Mosquitto
) -> None:
    # A meter swap: 500 m³, then a new meter from 1 m³ counting up.
    schedule = [("00500.000", 2.0), ("00001.000", 1.5), ("00001.111", 1.5), ("00001.222", 1.5),
                ("00001.444", 2.0), ("00001.777", 2.0)]  # fmt: skip
    path = video(tmp_path_factory, "swap", schedule)
    numeric = "{decimals: 3, monotonic: increasing, accept_after_s: 2}"
    with MeterDaemon(tmp_path, "agree", path, broker, numeric=numeric) as d:
        msgs = d.run_to_end()
    summary = [(m["text"], m["valid"], m["reason"], m.get("rebased")) for m in msgs]
    assert msgs[0]["valid"] and msgs[0]["value"] == pytest.approx(500.0), summary
    first_rejected = msgs[1]
    assert (first_rejected["text"], first_rejected["valid"], first_rejected["reason"]) == (
        "00001000",
        False,
        "monotonic",
    ), summary
    assert first_rejected["value"] is None and first_rejected["last_value"] == pytest.approx(500.0)
    rebased = [i for i, m in enumerate(msgs) if m.get("rebased")]
    assert len(rebased) == 1, summary
    i = rebased[0]
    msg = msgs[i]
    assert msg["valid"] and msg["reason"] is None, msg
    assert msg["value"] == pytest.approx(int(msg["text"]) / 1000) and 1.0 <= msg["value"] < 1.777, msg
    assert msg["last_value"] == pytest.approx(500.0)
    assert "agreed" in msg["detail"]
    # Not before accept_after_s: a short glare never gets through.
    assert parse_time(msg["captured_at"]) - parse_time(first_rejected["captured_at"]) >= 2.0
    assert all(not m["valid"] and m["reason"] == "monotonic" for m in msgs[1:i]), summary
    later = msgs[i + 1 :]
    assert later and all(m["valid"] and not m.get("rebased") for m in later), summary
    assert valid_values(later) == sorted(valid_values(later)) and later[-1]["value"] == pytest.approx(1.777)
    assert remembered(tmp_path)["value"] == pytest.approx(1.777)


def test_cmd_set_value_sets_the_remembered_value(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, broker: Mosquitto
) -> None:
    # 300 m³, then a new meter at 6 m³ for a long time (the test stops once it has what it needs).
    path = video(tmp_path_factory, "set-value", [("00300.000", 2.0), ("00006.000", 20.0)])
    with MeterDaemon(tmp_path, "setvalue", path, broker) as d:
        assert d.wait_messages(lambda ms: any(not m["valid"] for m in ms), timeout=30), d.messages()
        msgs = d.messages()
        assert valid_values(msgs) == pytest.approx([300.0])
        rejected = msgs[-1]
        assert (rejected["text"], rejected["reason"], rejected["value"]) == ("00006000", "monotonic", None)

        # Bad payloads are answered, and change nothing.
        bad = d.command("set_value", {"source": SOURCE, "region": REGION, "value": "abc"})
        assert bad["ok"] is False and "number" in bad["error"], bad
        unknown = d.command("set_value", {"source": SOURCE, "region": "nope", "value": 5.0})
        assert unknown["ok"] is False and "nope" in unknown["error"], unknown
        no_source = d.command("set_value", {"source": "nope", "region": REGION, "value": 5.0})
        assert no_source["ok"] is False and "nope" in no_source["error"], no_source
        assert remembered(tmp_path)["value"] == pytest.approx(300.0)

        reply = d.command("set_value", {"source": SOURCE, "region": REGION, "value": 5.0})
        assert reply["ok"] is True, reply
        assert reply["previous"] == pytest.approx(300.0) and reply["value"] == pytest.approx(5.0)
        # (The file holds 5.0 now, or already 6.0: the camera's next frame may have been read meanwhile.)
        assert remembered(tmp_path)["value"] in (pytest.approx(5.0), pytest.approx(6.0))

        # The reading rejected against 300 is above 5: now it is accepted (published although unchanged).
        assert d.wait_messages(lambda ms: any(m["valid"] and m["value"] == 6.0 for m in ms), timeout=30), (
            d.messages()
        )
        accepted = next(m for m in d.messages() if m["valid"] and m["value"] == 6.0)
        assert accepted["text"] == "00006000" and accepted["last_value"] == pytest.approx(5.0)
        assert not accepted.get("rebased")
        assert wait_until(lambda: remembered(tmp_path)["value"] == pytest.approx(6.0), timeout=5)


SLOW_COUNTER = ["00123.456", "00123.457", "00123.458", "00123.459", "00123.460"]


@pytest.mark.parametrize(
    "change_threshold",
    [pytest.param(None, id="default-threshold"), pytest.param(0.0, id="every-frame-read")],
)
def test_every_step_of_a_slowly_counting_meter_is_published(
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    broker: Mosquitto,
    change_threshold: float | None,
) -> None:
    """One step of the last digit at a time (the usual life of a water meter), with the default change
    detection and with every frame read (if only the first fails, change detection missed a step: 8 -> 9
    and 5 -> 6 flip one segment of an 8-digit LCD; 9 -> 0 and 2 -> 3 two)."""
    path = video(tmp_path_factory, "slow", [(t, 1.5) for t in SLOW_COUNTER] + [(SLOW_COUNTER[-1], 1.0)])
    device = f"slow-{'default' if change_threshold is None else 'every'}"
    with MeterDaemon(tmp_path, device, path, broker, change_threshold=change_threshold) as d:
        msgs = d.run_to_end()
    assert [m["text"] for m in msgs] == [t.replace(".", "") for t in SLOW_COUNTER], msgs
    assert all(m["valid"] for m in msgs)


# ------------------------------------------------------------------ alignment


def test_a_shifted_and_turned_camera_is_realigned(
    tmp_path: Path, shifted_video: Path, broker: Mosquitto
) -> None:
    shown = [float(f"123.{v}") for v in SHIFTED_VALUES]
    with MeterDaemon(tmp_path / "aligned", "align", shifted_video, broker, alignment=True) as d:
        msgs = d.run_to_end()
        status = d.camera()
    reference = tmp_path / "aligned" / "state" / "reference" / f"{SOURCE}.png"
    assert reference.is_file()  # the first frame, saved as the reference
    assert [(m["valid"], m["reason"]) for m in msgs] == [(True, None)] * 4, msgs
    assert valid_values(msgs) == pytest.approx(shown)  # read the same after the jump as before it
    a = status["alignment"]  # the last frame's, after the jump
    assert a is not None and a["ok"], status
    assert a["dx"] == pytest.approx(SHIFT[0], abs=3) and a["dy"] == pytest.approx(SHIFT[1], abs=3), a
    assert a["angle_deg"] == pytest.approx(SHIFT[2], abs=0.5) and a["score"] >= 0.5, a
    assert status["regions"][REGION]["alignment"]["ok"] is True

    # The same video without alignment: after the jump the box holds the wrong pixels.
    with MeterDaemon(tmp_path / "plain", "noalign", shifted_video, broker) as d:
        plain = d.run_to_end()
        assert d.camera()["alignment"] is None
    got = valid_values(plain)
    assert got[:2] == pytest.approx(shown[:2]), plain  # before the jump it reads fine
    assert got != pytest.approx(shown), plain  # after it, values are wrong or missing
    assert not set(shown[2:]) <= {round(v, 3) for v in got}, plain


def test_an_unalignable_stretch_is_reported_once_per_region(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, broker: Mosquitto
) -> None:
    # 2 s in place, 3 s knocked 150 px aside (beyond max_shift_px 80), back: 2 s the same value, 2 s a new.
    schedule = [("00123.456", 2.0), ("00123.456", 3.0), ("00123.456", 2.0), ("00123.517", 2.0)]
    path = video(tmp_path_factory, "knocked", schedule, drift=lambda n: KNOCK if 20 <= n < 50 else (0, 0, 0))
    with MeterDaemon(tmp_path, "knock", path, broker, alignment=True, unit_region=True) as d:
        everything = d.run_to_end()
        status = d.camera()
    reports = [m for m in everything if m["reason"] == "alignment"]
    assert sorted(m["region"] for m in reports) == ["reading", "unit"], reports  # one each, not a flood
    assert all(not m["valid"] and m["detail"] and m["text"] == "" for m in reports), reports
    numeric = next(m for m in reports if m["region"] == REGION)
    assert numeric["value"] is None and numeric["last_value"] == pytest.approx(123.456)
    msgs = [m for m in everything if m["region"] == REGION]
    summary = [(m["valid"], m["reason"], m["value"]) for m in msgs]
    assert summary == [
        (True, None, pytest.approx(123.456)),
        (False, "alignment", None),
        (True, None, pytest.approx(123.456)),  # valid again: published although the value is the same
        (True, None, pytest.approx(123.517)),
    ], summary
    # The knock lasted 3 s (about 15 analysed frames) and produced nothing more.
    assert parse_time(msgs[2]["captured_at"]) - parse_time(msgs[1]["captured_at"]) >= 2.0, summary
    assert status["frames_analysed"] >= 30, status
    assert status["alignment"]["ok"] is True, status


# ------------------------------------------------------------------ constrained decoding


def line_image(text: str) -> np.ndarray:
    img = np.full((120, 60 + 60 * len(text), 3), 255, np.uint8)
    cv2.putText(img, text, (20, 90), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (0, 0, 0), 3, cv2.LINE_AA)
    return img


@pytest.mark.parametrize(("shown", "digits"), [("8BO3", "8803"), ("l2S4", "1254")])
def test_a_digits_region_reads_letter_like_glyphs_as_digits(engine, shown: str, digits: str) -> None:
    img = line_image(shown)
    free = engine.run_line(img, upright=True).text
    assert any(c.isalpha() for c in free), free  # unconstrained, the model sees letters
    h, w = img.shape[:2]
    tracker = RegionTracker(engine, [Region("r", box=(0, 0, w, h), charset="0123456789")], debounce_frames=1)
    (value,) = tracker.update(img).values
    # Masked in the decoder, not deleted afterwards (that would drop the letters: "803", "24").
    assert (value.text, value.valid) == (digits, True)


# ------------------------------------------------------------------ the meter model on a DSEG7 LCD (issue 17)

DSEG_VALUES = ["04817.3", "04821.6", "04826.0", "04830.8", "04838.2", "04845.5", "04851.7", "04858.0",
               "04863.6", "04867.4"]  # fmt: skip
GLARE_VALUE = "04831.5"  # shown for 4 s under glare between 04845.5 and 04851.7: lower, never a value


@pytest.fixture(scope="module")
def dseg_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("PIL", reason="the DSEG7 LCD is drawn with Pillow (the [train] extra)")
    schedule: list[Any] = [(v, 2.0) for v in DSEG_VALUES[:6]]
    schedule.append((GLARE_VALUE, 4.0, 0.9))
    schedule += [(v, 2.0) for v in DSEG_VALUES[6:]]
    return video(tmp_path_factory, "dseg7", schedule, face="dseg7")


@pytest.mark.parametrize("numeric", ["{monotonic: increasing, unit: m³}",
                                     "{decimals: 1, monotonic: increasing, unit: m³}"],
                         ids=["point-read", "decimals-1"])  # fmt: skip
def test_the_meter_model_publishes_every_true_value_of_a_dseg7_lcd_and_never_the_glare(
    tmp_path: Path, broker: Mosquitto, dseg_video: Path, numeric: str
) -> None:
    """The numeric region reads with the meter model (model: auto), FP32 and INT8 alike; the small lit
    point of 04867.4 is read (or placed by decimals), and the lower value under glare is rejected."""
    device = "dseg-" + ("dec" if "decimals" in numeric else "pt")
    with MeterDaemon(tmp_path, device, dseg_video, broker, numeric=numeric) as d:
        msgs = d.run_to_end()
    valid = valid_values(msgs)
    assert valid == [float(v) for v in DSEG_VALUES], [(m["text"], m["valid"], m["reason"]) for m in msgs]
    assert float(GLARE_VALUE) not in valid
    assert all(m["model"]["set"] == "meter" and m["model"]["meter"]["precision"] in ("fp32", "int8")
               for m in msgs)  # fmt: skip


def test_a_meter_model_region_rejects_its_weakest_readings_unless_told_otherwise() -> None:
    """Without `min_confidence`, a region the meter model reads rejects a reading whose weakest
    character is below 0.3 (a blurred counter's wrong guesses), a general-model region keeps every
    reading, and `min_confidence: 0` turns the floor off."""
    from edge_ocr.config.camera import METER_MIN_CONFIDENCE, RegionConfig
    from edge_ocr.region_values import regions_from_config

    def floor(**kw: object) -> float | None:
        cfg = RegionConfig.model_validate({"name": "r", "box": [0, 0, 10, 10], **kw})
        return regions_from_config([cfg])[0].min_confidence

    assert floor(numeric={}) == METER_MIN_CONFIDENCE == 0.3
    assert floor(numeric={}, min_confidence=0) == 0
    assert floor(numeric={}, min_confidence=0.8) == 0.8
    assert floor(numeric={}, model="general") is None
    assert floor() is None  # a text region
