"""Camera benchmark: frames/s analysed, and the time from a change on camera to its MQTT message.

    python -m edge_ocr.bench.camera [--seconds 20] [--period 2] [--fps 10] [--interval 0.1]

A generated meter video (large digits, one value per `--period` seconds) is played in real time by a
real daemon (camera source -> regions -> outbox -> MQTT) against a throw-away mosquitto on loopback.
Latency is measured per change: the moment the new value appeared on camera (playback start + its
frame index / fps) to the arrival of its message at a subscriber. Frames/s analysed is measured twice
on the same video: with change skipping (what a deployment does) and with every frame read.

Also the home of `write_meter_video`, which the camera tests use (development tooling: the daemon
never imports this module).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

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


def _config(state: Path, video: Path, url: str, interval: float, threshold: float, threads: int) -> str:
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


def _run(
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
        _config(state, video, broker.url, args.interval, args.threshold, args.threads), base_dir=tmp
    )
    daemon = Daemon(cfg)
    runner = threading.Thread(target=daemon.run, daemon=True)
    offset = time.time() - time.monotonic()
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while (daemon.gen is None or "meter" not in daemon.gen.cameras) and time.monotonic() < deadline:
            time.sleep(0.05)
        camera = daemon.gen.cameras["meter"] if daemon.gen else None
        assert camera is not None, "the camera did not start"
        while camera.connected_at is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert camera.connected_at is not None, f"camera did not connect: {camera.stats()}"
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge_ocr.bench.camera", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="playback time measured per run")
    parser.add_argument("--period", type=float, default=2.0, help="seconds between value changes")
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate of the generated video")
    parser.add_argument(
        "--interval", type=float, default=0.1, help="interval_s of the camera (0: every frame)"
    )
    parser.add_argument("--threads", type=int, default=0, help="engine.threads (0: onnxruntime's default)")
    parser.add_argument("--threshold", type=float, default=2.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
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
            r = _run(tmp, video, starts, values, args.fps, args.seconds, args)
            print(
                f"{label}: analysed {r['analysed_fps']:.1f} frames/s (read {r['read_fps']:.1f}/s, "
                f"dropped {r['dropped']}); changes {r['changes']}, values published {r['published']}; "
                f"change on camera -> MQTT: median {r['latency_median_s'] * 1000:.0f} ms, "
                f"p95 {r['latency_p95_s'] * 1000:.0f} ms"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
