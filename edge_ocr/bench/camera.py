"""Camera benchmark: a real daemon reading a generated meter video, end to end over MQTT.

    python -m edge_ocr.bench.camera [--scenario meter|digits] [--values 24] [--period 2] [--fps 10]
        [--interval 0.1] [--misreads 4] [--threads 0] [--no-every-frame]

A generated video is played in real time by a real daemon (camera source -> alignment -> regions ->
plausibility -> outbox -> MQTT) against a throw-away mosquitto on loopback; a subscriber records what
arrives. Two scenarios:

- `meter` (the default): a 7-segment water meter (`edge_ocr.bench.meter`: ghost segments, glare, sensor
  noise, a slight blur) counting up, each value shown `--period` seconds, with a camera that wanders by
  under a pixel and is knocked once partway (a jump of some tens of pixels and a few degrees), and
  `--misreads` injected misreadings: a value shown briefly that breaks the region's rules (a jump
  beyond `max_jump`, a decrease on a `monotonic: increasing` counter). The region is numeric
  (decimals 3, monotonic increasing, max_jump) and the camera aligns every frame to reference patches.
  Reported: values shown, published valid exactly once, missed, duplicates, wrong valid values (must
  be 0), misreads injected and rejected (published invalid, with their reasons), frames/s analysed,
  change-on-camera -> MQTT latency (median, p90) and the shift the alignment found against the true
  drift; as a table and one JSON line. The video is played twice: with change skipping (what a
  deployment does) and with every frame read (change_threshold 0).
- `digits`: the earlier big-digit meter (`meter_frame`, `write_meter_video` below, which the camera
  tests use), a new value every `--period` seconds for `--seconds` per run: frames/s analysed and
  change -> MQTT latency only.

Latency is measured per change: the moment the new value appeared on camera (playback start + its first
frame index / fps) to the arrival of its message at the subscriber.

Development tooling: the daemon never imports this module.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

FRAME = (320, 240)
METER_BOX = (20, 60, 280, 80)  # x, y, w, h of the digits' window in FRAME


def meter_frame(text: str, size: tuple[int, int] = FRAME, noise: int = 0, seed: int = 0) -> np.ndarray:
    """A grey panel with a white window holding `text` in large black digits (at METER_BOX)."""
    w, h = size
    img = np.full((h, w, 3), 90, np.uint8)
    x, y, bw, bh = METER_BOX
    cv2.rectangle(img, (x, y), (x + bw, y + bh), (245, 245, 245), -1)
    cv2.putText(img, text, (x + 20, y + bh - 15), cv2.FONT_HERSHEY_SIMPLEX, 2.2, (10, 10, 10), 5, cv2.LINE_AA)
    cv2.putText(img, "kWh", (x + bw - 60, y + bh + 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (230, 230, 230), 2)
    if noise:
        rng = np.random.default_rng(seed)
        img = np.clip(img.astype(np.int16) + rng.integers(-noise, noise + 1, img.shape), 0, 255)
        img = img.astype(np.uint8)
    return img


def write_meter_video(
    path: Path, values: Sequence[tuple[str, float]], fps: float = 10.0, noise: int = 3
) -> list[int]:
    """An MJPG .avi showing each (text, seconds) in turn; returns the first frame index of each value."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, FRAME)
    if not writer.isOpened():
        raise OSError(f"cannot write {path}")
    starts, n = [], 0
    try:
        for text, seconds in values:
            starts.append(n)
            for _ in range(max(1, round(seconds * fps))):
                writer.write(meter_frame(text, noise=noise, seed=n))
                n += 1
    finally:
        writer.release()
    return starts


def _digits_config(
    state: Path, video: Path, url: str, interval: float, threshold: float, threads: int
) -> str:
    x, y, w, h = METER_BOX
    return f"""
device_id: bench
state_dir: {state}
sources:
  - name: meter
    type: camera
    url: {video}
    interval_s: {interval}
    change_threshold: {threshold}
    debounce_frames: 1
    regions:
      - name: reading
        box: [{x}, {y}, {w}, {h}]
        pattern: '^\\d{{5}}$'
        charset: "0123456789"
mqtt:
  url: {url}
  stats_interval_s: 0
engine:
  threads: {threads}
logging:
  level: WARNING
"""


def _connected_camera(daemon: Any, deadline: float) -> Any:
    """The daemon's camera `meter` once it has read its first frame (its `connected_at` is set)."""
    while (daemon.gen is None or "meter" not in daemon.gen.cameras) and time.monotonic() < deadline:
        time.sleep(0.05)
    camera = daemon.gen.cameras["meter"] if daemon.gen else None
    assert camera is not None, "the camera did not start"
    while camera.connected_at is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert camera.connected_at is not None, f"camera did not connect: {camera.stats()}"
    return camera


def _digits_run(
    tmp: Path,
    video: Path,
    starts: list[int],
    values: list[str],
    fps: float,
    seconds: float,
    args: argparse.Namespace,
) -> dict[str, float]:
    from edge_ocr.bench.devbroker import Mosquitto, Subscriber
    from edge_ocr.config import parse_config
    from edge_ocr.daemon import Daemon

    broker = Mosquitto(tmp / f"broker-{args.threshold}").start()
    sub = Subscriber(broker, ["edge-ocr/bench/result/#"])
    state = tmp / f"state-{args.threshold}"
    cfg = parse_config(
        _digits_config(state, video, broker.url, args.interval, args.threshold, args.threads), base_dir=tmp
    )
    daemon = Daemon(cfg)
    runner = threading.Thread(target=daemon.run, daemon=True)
    offset = time.time() - time.monotonic()
    runner.start()
    try:
        camera = _connected_camera(daemon, time.monotonic() + 60)
        # the first frame is read at connected_at; frame i is shown at connected_at + i / fps
        t0 = camera.connected_at
        time.sleep(seconds)
        st = camera.stats()
    finally:
        daemon.request_stop()
        runner.join(60)
        sub.close()
        broker.kill()
    latencies = []
    seen: dict[str, float] = {}
    for m in sub.messages:
        text = json.loads(m.payload)["text"]
        seen.setdefault(text, m.at + offset)
    for text, start in zip(values, starts, strict=True):
        shown = t0 + start / fps
        if text in seen and start / fps < seconds - 1:
            latencies.append(seen[text] - shown)
    return {
        "analysed_fps": st["frames_analysed"] / seconds,
        "read_fps": st["fps"],
        "dropped": st["frames_dropped"],
        "changes": len([s for s in starts if s / fps < seconds - 1]),
        "published": len(seen),
        "latency_median_s": statistics.median(latencies) if latencies else float("nan"),
        "latency_p95_s": sorted(latencies)[min(len(latencies) - 1, int(0.95 * len(latencies)))]
        if latencies
        else float("nan"),
    }


# --- the meter scenario ---------------------------------------------------------------------------------

JUMP = (26.0, -18.0, 2.5)  # the camera knocked partway: dx, dy (px), turn (degrees, counter-clockwise)
MAX_JUMP = 2.0  # the region's max_jump (m³); a true step is at most STEP[1] thousandths
# The counter's step between two shown values, in thousandths: one (the last digit counts up by one, as a
# slow flow shows it) for SMALL_STEPS of them, else drawn from STEP.
STEP = (5, 350)
SMALL_STEPS = 0.3
# Injected misreads, in turn: the rule it breaks and the digit cells (0-7, the point left out) it may be
# in. One digit is shown wrong, replaced by one differing in at least MISREAD_SEGMENTS of its 7 segments,
# so that the wrong picture is plain to see (change skipping does not read a smaller change: see the
# missed values).
MISREADS = (
    ("max_jump", (3, 2)),
    ("monotonic", (4, 5, 6, 7)),
    ("max_jump", (1, 2, 3)),
    ("monotonic", (7, 6, 5)),
)
MISREAD_SEGMENTS = 4
GLARE, GHOST, NOISE, BLUR = 0.3, 0.2, 4.0, 0.5
MIN_CONFIDENCE = 0.5
DEBOUNCE = 2


def _text(thousandths: int) -> str:
    whole, frac = divmod(thousandths, 1000)
    return f"{whole:05d}.{frac:03d}"


@dataclass(frozen=True)
class Shown:
    """One entry of the meter video: what the LCD shows, from frame `start` for `seconds`."""

    text: str
    seconds: float
    start: int
    misread: str | None = None  # the rule an injected misread breaks; None for a true value

    @property
    def key(self) -> int:
        """The value in thousandths (the region has decimals: 3)."""
        return int(self.text.replace(".", ""))


@dataclass(frozen=True)
class MeterScenario:
    """The meter video's schedule and its camera drift (`drift(frame)` -> dx, dy, angle)."""

    shown: tuple[Shown, ...]
    fps: float
    frames: int
    jump_frame: int

    @property
    def values(self) -> list[Shown]:
        return [s for s in self.shown if s.misread is None]

    @property
    def misreads(self) -> list[Shown]:
        return [s for s in self.shown if s.misread is not None]

    @property
    def seconds(self) -> float:
        return self.frames / self.fps

    def drift(self, i: int) -> tuple[float, float, float]:
        """A slow wander under a pixel and a tenth of a degree, and the jump from `jump_frame` on."""
        dx = 0.7 * math.sin(2 * math.pi * i / 97)
        dy = 0.5 * math.sin(2 * math.pi * i / 151 + 1.0)
        angle = 0.12 * math.sin(2 * math.pi * i / 211)
        if i >= self.jump_frame:
            dx, dy, angle = dx + JUMP[0], dy + JUMP[1], angle + JUMP[2]
        return dx, dy, angle


def _segments(a: str, b: str) -> int:
    """Segments that differ between two digits of the 7-segment display."""
    from edge_ocr.bench.meter import _GLYPHS

    return len(set(_GLYPHS[a]) ^ set(_GLYPHS[b]))


def _misread(text: str, rule: str, cells: Sequence[int]) -> str:
    """`text` with one digit replaced so that the reading breaks `rule` against it (max_jump: a larger
    digit in cells 0-3, worth 10 or more; monotonic: a smaller digit anywhere)."""
    digits = text.replace(".", "")
    for p in (*cells, *range(len(digits))):
        if rule == "max_jump" and p > 3:
            continue
        d = digits[p]
        options = [
            r
            for r in "0123456789"
            if (r > d if rule == "max_jump" else r < d) and _segments(d, r) >= MISREAD_SEGMENTS
        ]
        if options:
            r = max(options, key=lambda o: _segments(d, o))
            wrong = digits[:p] + r + digits[p + 1 :]
            return f"{wrong[:5]}.{wrong[5:]}"
    raise ValueError(f"no misread of {text} breaks {rule}")


def meter_scenario(
    values: int = 24,
    period: float = 2.0,
    *,
    fps: float = 10.0,
    misreads: int = 4,
    misread_s: float = 0.5,
    start: float = 1234.567,
    seed: int = 11,
) -> MeterScenario:
    """`values` increasing readings, each `period` s, with `misreads` spread among them (each shown
    `misread_s` after a true value, before the next one) and the camera jump halfway into the value at
    60% of the run."""
    if values < 2 or not 0 <= misreads < values:
        raise ValueError("need at least 2 values and fewer misreads than values")
    after = {
        min(values - 2, max(0, round((k + 1) * values / (misreads + 1)) - 1)): k for k in range(misreads)
    }
    if len(after) < misreads:
        raise ValueError(f"{misreads} misreads do not fit between {values} values")
    rng = np.random.default_rng(seed)
    shown: list[Shown] = []
    n = 0
    value = round(start * 1000)
    jump_value = min(values - 1, round(0.6 * values))
    jump_frame = 0
    for i in range(values):
        if i:
            value += 1 if rng.random() < SMALL_STEPS else int(rng.integers(STEP[0], STEP[1] + 1))
        shown.append(Shown(_text(value), period, n))
        if i == jump_value:
            jump_frame = n + round(period * fps / 2)
        n += max(1, round(period * fps))
        if i in after:
            rule, cells = MISREADS[after[i] % len(MISREADS)]
            shown.append(Shown(_misread(shown[-1].text, rule, cells), misread_s, n, rule))
            n += max(1, round(misread_s * fps))
    return MeterScenario(tuple(shown), fps, n, jump_frame)


def write_scenario_video(path: Path, sc: MeterScenario) -> None:
    from edge_ocr.bench.meter import write_meter_video as write_lcd_video

    starts = write_lcd_video(
        path, [(s.text, s.seconds) for s in sc.shown], fps=sc.fps, drift=sc.drift,
        glare=GLARE, ghost=GHOST, noise=NOISE, blur=BLUR,
    )  # fmt: skip
    assert starts == [s.start for s in sc.shown], "frame counts differ from the scenario's"


def _meter_config(state: Path, video: Path, url: str, interval: float, threshold: float, threads: int) -> str:
    from edge_ocr.bench.meter import LCD_BOX, PATCHES

    patches = json.dumps([list(p) for p in PATCHES])
    return f"""
device_id: bench
state_dir: {state}
sources:
  - name: meter
    type: camera
    url: {video}
    interval_s: {interval}
    change_threshold: {threshold}
    debounce_frames: {DEBOUNCE}
    alignment:
      patches: {patches}
    regions:
      - name: reading
        box: {json.dumps(list(LCD_BOX))}
        min_confidence: {MIN_CONFIDENCE}
        numeric:
          decimals: 3
          monotonic: increasing
          max_jump: {MAX_JUMP}
          unit: "m³"
mqtt:
  url: {url}
  stats_interval_s: 0
engine:
  threads: {threads}
logging:
  level: WARNING
"""


@dataclass(frozen=True)
class _Frame:
    """One analysed frame, as the bench saw the tracker handle it."""

    at: float  # captured_at (epoch seconds)
    read: int  # regions OCRed
    ms: float  # alignment + regions + rules
    aligned: bool | None
    dx: float = 0.0
    dy: float = 0.0
    angle: float = 0.0
    score: float = 0.0


def _recording_daemon(cfg: Any, frames: list[_Frame]) -> Any:
    """A Daemon whose camera trackers note every analysed frame (OCR reads, time, alignment)."""
    from edge_ocr.daemon import Daemon

    daemon = Daemon(cfg)
    analyse = daemon.camera_work.frame

    def recording_frame(gen: Any, name: str, analyzer: Any, frame: Any) -> None:
        tracker = analyzer.tracker
        if not getattr(tracker, "_bench_recorded", False):
            update = tracker.update

            def recorded(image: np.ndarray, *, force: bool = False, at: float | None = None) -> Any:
                t = time.perf_counter()
                out = update(image, force=force, at=at)
                ms = (time.perf_counter() - t) * 1000
                a = out.alignment
                frames.append(
                    _Frame(at or time.time(), out.read, ms, None)
                    if a is None
                    else _Frame(at or time.time(), out.read, ms, a.ok, a.dx, a.dy, a.angle, a.score)
                )
                return out

            setattr(tracker, "update", recorded)  # noqa: B010 (an instance attribute over a method)
            setattr(tracker, "_bench_recorded", True)  # noqa: B010
        analyse(gen, name, analyzer, frame)

    # The camera room looks its `frame` up per frame: wrapping it on the instance records every frame.
    daemon.camera_work.frame = recording_frame  # type: ignore[method-assign]
    return daemon


class _Warnings(logging.Handler):
    """The daemon's warnings and errors during a run (shown after the table, not interleaved)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


def _pct(xs: Sequence[float], q: float) -> float:
    """The q-quantile by nearest rank (nan when empty)."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def _expected_alignment(sc: MeterScenario, i: int) -> tuple[float, float, float]:
    """The shift of the patches' centre and the turn the aligner should find on frame `i` against the
    reference (frame 0, itself slightly drifted)."""
    from edge_ocr.bench.meter import FRAME_SIZE, PATCHES

    def matrix(d: tuple[float, float, float]) -> np.ndarray:
        m = cv2.getRotationMatrix2D((FRAME_SIZE[0] / 2, FRAME_SIZE[1] / 2), d[2], 1.0)
        m[0, 2] += d[0]
        m[1, 2] += d[1]
        return m

    c = np.array(
        [np.mean([x + w / 2 for x, _, w, _ in PATCHES]), np.mean([y + h / 2 for _, y, _, h in PATCHES]), 1.0]
    )
    d0, di = sc.drift(0), sc.drift(i)
    original = cv2.invertAffineTransform(matrix(d0)) @ c  # where the reference's patch centre was drawn
    now = matrix(di) @ np.array([original[0], original[1], 1.0])
    return float(now[0] - c[0]), float(now[1] - c[1]), di[2] - d0[2]


def _meter_run(
    tmp: Path,
    video: Path,
    sc: MeterScenario,
    label: str,
    *,
    interval: float,
    threshold: float,
    threads: int,
    warnings: _Warnings,
) -> dict[str, Any]:
    from edge_ocr.bench.devbroker import Mosquitto, Subscriber
    from edge_ocr.config import parse_config

    broker = Mosquitto(tmp / f"broker-{label}").start()
    sub = Subscriber(broker, ["edge-ocr/bench/result/#"])
    state = tmp / f"state-{label}"
    cfg = parse_config(_meter_config(state, video, broker.url, interval, threshold, threads), base_dir=tmp)
    frames: list[_Frame] = []
    first_warning = len(warnings.lines)
    daemon = _recording_daemon(cfg, frames)
    runner = threading.Thread(target=daemon.run, daemon=True)
    offset = time.time() - time.monotonic()
    runner.start()
    try:
        camera = _connected_camera(daemon, time.monotonic() + 90)
        t0 = camera.connected_at  # frame i is shown at t0 + i / fps
        deadline = time.monotonic() + sc.seconds + 60
        while camera.stats()["state"] != "ended" and time.monotonic() < deadline:
            time.sleep(0.1)
        st = camera.stats()
        # the last frames' messages: until nothing new arrived for a second
        settle = time.monotonic() + 10
        count = -1
        while count != len(sub.messages) and time.monotonic() < settle:
            count = len(sub.messages)
            time.sleep(1.0)
    finally:
        daemon.request_stop()
        runner.join(60)
        sub.close()
        broker.kill()
    return _meter_figures(sc, t0, offset, st, frames, sub.messages, warnings.lines[first_warning:])


def _meter_figures(
    sc: MeterScenario,
    t0: float,
    offset: float,
    st: dict[str, Any],
    frames: list[_Frame],
    received: Sequence[Any],
    warning_lines: list[str],
) -> dict[str, Any]:
    values = {s.key: s for s in sc.values}
    misreads = {s.key: s for s in sc.misreads}
    valid: Counter[int] = Counter()
    first_valid: dict[int, float] = {}
    wrong: list[str] = []
    rejected: dict[int, dict[str, Any]] = {}
    false_rejections: list[dict[str, Any]] = []
    other_rejected: list[dict[str, Any]] = []
    alignment_reports = 0
    model: dict[str, str] = {}
    for m in received:
        msg = json.loads(m.payload)
        model = msg.get("model") or model
        arrived = m.at + offset
        if msg["valid"]:
            key = round(float(msg["value"]) * 1000)
            valid[key] += 1
            first_valid.setdefault(key, arrived)
            if key not in values:
                wrong.append(f"{msg['text']} -> {msg['value']}")
            continue
        text = str(msg.get("text") or "")
        entry = {"text": text, "reason": msg.get("reason"), "detail": msg.get("detail"), "at": arrived}
        key = int(text) if text.isdigit() else -1
        if msg.get("reason") == "alignment":
            alignment_reports += 1
        elif key in misreads:
            rejected.setdefault(key, entry)
        elif key in values:
            false_rejections.append(entry)
        else:
            other_rejected.append(entry)
    once = sum(1 for k in values if valid[k] == 1)
    before = {b.key: a.text for a, b in zip(sc.values, sc.values[1:], strict=False)}
    missed = [
        f"{values[k].text} (after {before[k]})" if k in before else values[k].text
        for k in values
        if valid[k] == 0
    ]
    duplicates = sum(max(0, valid[k] - 1) for k in values)
    # change -> MQTT for every value after the first (the first is no change: it is read at start-up)
    latencies = [first_valid[s.key] - (t0 + s.start / sc.fps) for s in sc.values[1:] if s.key in first_valid]
    reject_latencies = [rejected[k]["at"] - (t0 + misreads[k].start / sc.fps) for k in rejected]
    # alignment against the true drift (frame index from the capture time; frames next to the jump left out)
    errors, angle_errors, wander = [], [], []
    after_jump: list[tuple[float, float, float]] = []
    true_jump: list[tuple[float, float, float]] = []
    for f in frames:
        if not f.aligned:
            continue
        i = round((f.at - t0) * sc.fps)
        if abs(i - sc.jump_frame) <= 3 or i < 0 or i >= sc.frames:
            continue
        ex, ey, ea = _expected_alignment(sc, i)
        errors.append(math.hypot(f.dx - ex, f.dy - ey))
        angle_errors.append(abs(f.angle - ea))
        if i > sc.jump_frame:
            after_jump.append((f.dx, f.dy, f.angle))
            true_jump.append((ex, ey, ea))
        else:
            wander.append(math.hypot(f.dx, f.dy))
    seconds = sc.seconds
    analysed = st["frames_analysed"]
    return {
        "values_shown": len(values),
        "published_valid_once": once,
        "missed": len(missed),
        "missed_values": missed,
        "duplicates": duplicates,
        "wrong_valid_values": len(wrong),
        "wrong_valid": wrong,
        "misreads_injected": len(misreads),
        "misreads_rejected": len(rejected),
        "misreads_accepted": sum(1 for k in misreads if valid[k]),
        "rejections": [
            {
                "shown": misreads[k].text,
                "breaks": misreads[k].misread,
                "read": e["text"],
                "reason": e["reason"],
                "detail": e["detail"],
            }
            for k, e in sorted(rejected.items(), key=lambda kv: misreads[kv[0]].start)
        ],  # fmt: skip
        "false_rejections": len(false_rejections),
        "false_rejection_list": [{k: e[k] for k in ("text", "reason", "detail")} for e in false_rejections],
        "ocr_errors_rejected": len(other_rejected),
        "ocr_error_list": [{k: e[k] for k in ("text", "reason", "detail")} for e in other_rejected],
        "alignment_reports": alignment_reports,
        "frames_read_per_s": round(st["frames_read"] / seconds, 2),
        "frames_analysed_per_s": round(analysed / seconds, 2),
        "frames_dropped": st["frames_dropped"],
        "frames_not_aligned": sum(1 for f in frames if f.aligned is False),
        "ocr_reads_per_s": round(sum(f.read for f in frames) / seconds, 2),
        "analysis_ms_median": round(statistics.median([f.ms for f in frames]), 1) if frames else None,
        "latency_ms_median": round(_pct(latencies, 0.5) * 1000),
        "latency_ms_p90": round(_pct(latencies, 0.9) * 1000),
        "latency_n": len(latencies),
        "reject_latency_ms_median": round(_pct(reject_latencies, 0.5) * 1000) if reject_latencies else None,
        "alignment": {
            "jump_found_median": _median3(after_jump),
            "jump_true_median": _median3(true_jump),
            "wander_max_px": round(max(wander), 2) if wander else None,
            "error_px_median": round(_pct(errors, 0.5), 2) if errors else None,
            "error_px_max": round(max(errors), 2) if errors else None,
            "angle_error_deg_max": round(max(angle_errors), 3) if angle_errors else None,
            "min_score": round(min(f.score for f in frames if f.aligned), 3) if frames else None,
        },
        "model": model,
        "warnings": warning_lines,
    }


def _median3(xs: list[tuple[float, float, float]]) -> list[float] | None:
    """Per component: dx, dy (px, 0.1) and angle (degrees, 0.01)."""
    if not xs:
        return None
    return [round(statistics.median(x[k] for x in xs), 1 if k < 2 else 2) for k in range(3)]


def cpu_info() -> dict[str, Any]:
    """The CPU's model name, core count and the int8 dot-product extensions onnxruntime can use."""
    model, flags = "unknown", set[str]()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, val = line.partition(":")
                key = key.strip()
                if key == "model name" and model == "unknown":
                    model = val.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(val.split())
    except OSError:
        pass
    return {
        "model": model,
        "cores": os.cpu_count(),
        "avx512_vnni": "avx512_vnni" in flags,
        "avx_vnni": "avx_vnni" in flags,
    }


def run_meter(
    *,
    values: int = 24,
    period: float = 2.0,
    fps: float = 10.0,
    interval: float = 0.1,
    misreads: int = 4,
    misread_s: float = 0.5,
    threads: int = 0,
    every_frame: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The meter scenario: one run with change skipping, and (`every_frame`) one reading every frame.
    Returns the report (what the JSON line holds)."""
    say = progress or (lambda _: None)
    sc = meter_scenario(values, period, fps=fps, misreads=misreads, misread_s=misread_s)
    warnings = _Warnings()
    root = logging.getLogger()
    level = root.level
    root.addHandler(warnings)
    runs: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="edge-ocr-bench-camera-") as d:
            tmp = Path(d)
            video = tmp / "meter.avi"
            t = time.perf_counter()
            write_scenario_video(video, sc)
            say(f"rendered {sc.frames} frames in {time.perf_counter() - t:.0f} s")
            plan = [("change_skipping", 2.0)] + ([("every_frame", 0.0)] if every_frame else [])
            for label, threshold in plan:
                say(f"run {label}: {sc.seconds:.0f} s of video ...")
                runs[label] = _meter_run(
                    tmp, video, sc, label, interval=interval, threshold=threshold, threads=threads,
                    warnings=warnings,
                )  # fmt: skip
                root.setLevel(level)  # the daemon set the root level from its config
    finally:
        root.removeHandler(warnings)
        root.setLevel(level)
    from edge_ocr.bench.meter import FRAME_SIZE

    return {
        "bench": "camera",
        "scenario": "meter",
        "cpu": cpu_info(),
        "video": {
            "size": list(FRAME_SIZE), "fps": fps, "seconds": round(sc.seconds, 1), "values": len(sc.values),
            "period_s": period, "first": sc.values[0].text, "last": sc.values[-1].text,
            "misreads": [{"text": s.text, "breaks": s.misread, "seconds": s.seconds} for s in sc.misreads],
            "jump": {"at_s": round(sc.jump_frame / fps, 1), "dx": JUMP[0], "dy": JUMP[1], "angle": JUMP[2]},
            "glare": GLARE, "ghost": GHOST, "noise": NOISE, "blur": BLUR,
        },
        "daemon": {
            "interval_s": interval, "debounce_frames": DEBOUNCE, "min_confidence": MIN_CONFIDENCE,
            "numeric": {"decimals": 3, "monotonic": "increasing", "max_jump": MAX_JUMP},
            "alignment_patches": 2, "threads": threads,
        },
        "runs": runs,
    }  # fmt: skip


def _row(name: str, *cells: object) -> str:
    return f"{name:<44}" + "".join(f"{'' if c is None else c!s:>26}" for c in cells)


def print_meter_report(report: dict[str, Any]) -> None:
    cpu, v, dm, runs = report["cpu"], report["video"], report["daemon"], report["runs"]
    names = list(runs)
    heads = {"change_skipping": "change skipping", "every_frame": "every frame read"}
    vnni = ", ".join(f"{k} {'yes' if cpu[k] else 'no'}" for k in ("avx512_vnni", "avx_vnni"))
    print(f"CPU: {cpu['model']} ({cpu['cores']} cores; {vnni})")
    first: dict[str, Any] = next(iter(runs.values()), {})
    if first.get("model"):
        m = first["model"]
        roles = [f"{k} {m[k].get('precision')}" for k in ("det", "rec", "cls") if isinstance(m.get(k), dict)]
        why = m["rec"].get("why") if isinstance(m.get("rec"), dict) else None
        print(f"models: {m.get('set')} ({', '.join(roles)}; rec: {why})")
    j = v["jump"]
    print(
        f"video: {v['size'][0]}x{v['size'][1]} MJPG at {v['fps']:g} fps, {v['seconds']:g} s: {v['values']} "
        f"values {v['first']} .. {v['last']}, each {v['period_s']:g} s; {len(v['misreads'])} misreads "
        f"injected ({', '.join(m['text'] + ' ' + m['breaks'] for m in v['misreads'])}), each "
        f"{v['misreads'][0]['seconds'] if v['misreads'] else 0:g} s"
    )
    print(
        f"camera drift: wander under 1 px and 0.12 deg, one jump of ({j['dx']:+g}, {j['dy']:+g}) px and "
        f"{j['angle']:g} deg at {j['at_s']:g} s; glare {v['glare']:g}, ghost segments {v['ghost']:g}, "
        f"noise sigma {v['noise']:g}, blur {v['blur']:g}"
    )
    n = dm["numeric"]
    print(
        f"daemon: camera interval_s {dm['interval_s']:g}, debounce_frames {dm['debounce_frames']}; region "
        f"numeric (decimals {n['decimals']}, monotonic {n['monotonic']}, max_jump {n['max_jump']:g}), "
        f"min_confidence {dm['min_confidence']:g}; alignment on {dm['alignment_patches']} patches"
    )
    print()
    print(_row("", *(heads.get(k, k) for k in names)))

    def row(name: str, fn: Callable[[dict[str, Any]], object]) -> None:
        print(_row(name, *(fn(runs[k]) for k in names)))

    def reasons(r: dict[str, Any]) -> str:
        c = Counter(str(e["reason"]) for e in r["rejections"])
        return ", ".join(f"{k} {c[k]}" for k in sorted(c)) or "-"

    def triple(r: dict[str, Any], key: str) -> str:
        f = r["alignment"][key]
        return "-" if f is None else f"({f[0]:+.1f}, {f[1]:+.1f}) {f[2]:.2f}°"

    row("values shown", lambda r: r["values_shown"])
    row("published valid exactly once", lambda r: r["published_valid_once"])
    row("missed (never published valid)", lambda r: r["missed"])
    row("duplicates (a value published again)", lambda r: r["duplicates"])
    row("wrong valid values (must be 0)", lambda r: r["wrong_valid_values"])
    row("misreads injected", lambda r: r["misreads_injected"])
    row("misreads rejected (published invalid)", lambda r: r["misreads_rejected"])
    row("  by rule", reasons)
    row("misreads accepted as values", lambda r: r["misreads_accepted"])
    row("true values rejected", lambda r: r["false_rejections"])
    row("other misreadings rejected", lambda r: r["ocr_errors_rejected"])
    row("alignment failures reported", lambda r: r["alignment_reports"])
    row("frames read / s (camera)", lambda r: f"{r['frames_read_per_s']:.1f}")
    row("frames analysed / s", lambda r: f"{r['frames_analysed_per_s']:.1f}")
    row("OCR reads / s", lambda r: f"{r['ocr_reads_per_s']:.1f}")
    row("frames dropped", lambda r: r["frames_dropped"])
    row("analysis per frame, median (ms)", lambda r: r["analysis_ms_median"])
    row("change -> MQTT, median (ms)", lambda r: r["latency_ms_median"])
    row("change -> MQTT, p90 (ms)", lambda r: r["latency_ms_p90"])
    row("misread -> MQTT (invalid), median (ms)", lambda r: r["reject_latency_ms_median"])
    row("alignment after the jump: found (px, deg)", lambda r: triple(r, "jump_found_median"))
    row("alignment after the jump: true (px, deg)", lambda r: triple(r, "jump_true_median"))
    row("alignment: wander seen before it, max (px)", lambda r: r["alignment"]["wander_max_px"])
    row("alignment error vs true drift, median (px)", lambda r: r["alignment"]["error_px_median"])
    row("alignment error vs true drift, max (px)", lambda r: r["alignment"]["error_px_max"])
    row("alignment: turn error, max (deg)", lambda r: r["alignment"]["angle_error_deg_max"])
    row("frames not aligned", lambda r: r["frames_not_aligned"])
    row("alignment: lowest patch score", lambda r: r["alignment"]["min_score"])
    for k in names:
        r = runs[k]
        print(f"\n{heads.get(k, k)}: rejected misreads")
        for e in r["rejections"]:
            print(
                f"  shown {e['shown']} (breaks {e['breaks']}): read {e['read']}, {e['reason']}:", e["detail"]
            )
        for what, items in (
            ("missed", r["missed_values"]),
            ("wrong valid values", r["wrong_valid"]),
            ("true values rejected", r["false_rejection_list"]),
            ("other misreadings rejected", r["ocr_error_list"]),
        ):
            if items:
                print(f"  {what}: {items}")
        expected = ("not valid (", "this frame is the alignment reference now")
        other = [w for w in r["warnings"] if not any(x in w for x in expected)]
        if other:
            print(f"  other daemon warnings ({len(other)}):")
            for w in other[:20]:
                print(f"    {w}")
    print()


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m edge_ocr.bench.camera") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--scenario", choices=("meter", "digits"), default="meter")
    parser.add_argument("--values", type=int, default=24, help="meter: true values shown")
    parser.add_argument("--period", type=float, default=2.0, help="seconds each value is shown")
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate of the generated video")
    parser.add_argument(
        "--interval", type=float, default=0.1, help="interval_s of the camera (0: every frame)"
    )
    parser.add_argument("--misreads", type=int, default=4, help="meter: misreads injected")
    parser.add_argument("--misread-seconds", type=float, default=0.5, help="meter: how long each is shown")
    parser.add_argument(
        "--every-frame", action=argparse.BooleanOptionalAction, default=True,
        help="also play the video with every frame read (change_threshold 0)",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=20.0, help="digits: playback time measured per run")
    parser.add_argument("--threads", type=int, default=0, help="engine.threads (0: onnxruntime's default)")
    parser.add_argument("--threshold", type=float, default=2.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.scenario == "digits":
        return _digits_main(args)
    report = run_meter(
        values=args.values, period=args.period, fps=args.fps, interval=args.interval,
        misreads=args.misreads, misread_s=args.misread_seconds, threads=args.threads,
        every_frame=args.every_frame, progress=lambda s: print(s, flush=True),
    )  # fmt: skip
    print_meter_report(report)
    print(json.dumps(report, ensure_ascii=False, separators=(",", ":")))
    return 1 if any(r["wrong_valid_values"] for r in report["runs"].values()) else 0


# --- the big-digit scenario -----------------------------------------------------------------------------


def _digits_main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    n = int(args.seconds / args.period) + 2
    values = [f"{4512 + i:05d}" for i in range(n)]
    with tempfile.TemporaryDirectory(prefix="edge-ocr-bench-camera-") as d:
        tmp = Path(d)
        video = tmp / "meter.avi"
        starts = write_meter_video(video, [(v, args.period) for v in values], fps=args.fps)
        print(
            f"video: {FRAME[0]}x{FRAME[1]} at {args.fps:g} fps, a new value every {args.period:g} s; "
            f"camera interval_s {args.interval:g}; {args.seconds:g} s per run"
        )
        for label, threshold in (
            ("change skipping (threshold 2.0)", 2.0),
            ("every frame read (threshold 0)", 0.0),
        ):
            args.threshold = threshold
            r = _digits_run(tmp, video, starts, values, args.fps, args.seconds, args)
            print(
                f"{label}: analysed {r['analysed_fps']:.1f} frames/s (read {r['read_fps']:.1f}/s, "
                f"dropped {r['dropped']}); changes {r['changes']}, values published {r['published']}; "
                f"change on camera -> MQTT: median {r['latency_median_s'] * 1000:.0f} ms, "
                f"p95 {r['latency_p95_s'] * 1000:.0f} ms"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
