"""The camera source on generated videos and a local ffmpeg stream: results, faults, reconnects, MQTT.

Loopback only; every wait is bounded. The stream server is ffmpeg serving HTTP multipart JPEG
(`-f mpjpeg -listen 1`), which serves one client and exits when it goes: a restart is a new process.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from mqtt_broker import Subscriber, free_port, wait_until

from edge_ocr.bench.camera import METER_BOX, write_meter_video
from edge_ocr.config import parse_config
from edge_ocr.regions import Region, RegionAnalyzer, RegionTracker
from edge_ocr.sources.camera import (
    CameraSettings,
    CameraSource,
    CameraUnavailable,
    CapturedFrame,
    LatestFrame,
    classify,
    redact_url,
)

FAST = dict(open_timeout_s=3.0, read_timeout_s=2.0, backoff_min_s=0.2, backoff_max_s=1.0)
READING = Region("reading", box=METER_BOX, pattern=r"^\d{5}$", charset="0123456789")


@pytest.fixture
def meter_video(tmp_path) -> Path:
    path = tmp_path / "meter.avi"
    write_meter_video(path, [("04512", 2.0), ("04513", 2.0)], fps=10)
    return path


class Collector:
    """on_frame for a CameraSource: reads regions with the real engine, keeps the published values."""

    def __init__(self, engine, debounce: int = 2) -> None:
        self.analyzer = RegionAnalyzer(
            "cam", "dev", RegionTracker(engine, [READING], debounce_frames=debounce)
        )
        self.messages: list[dict] = []
        self.frames = 0
        self._lock = threading.Lock()

    def __call__(self, frame: CapturedFrame) -> None:
        msgs = self.analyzer.messages(frame.image, frame.captured_at, force=frame.forced)
        with self._lock:
            self.frames += 1
            self.messages += msgs

    def texts(self) -> list[str]:
        with self._lock:
            return [m["text"] for m in self.messages]


def camera(url, stop=None, on_frame=None, **kw) -> CameraSource:
    settings = CameraSettings(name="cam", url=url, **{**FAST, "interval_s": 0.2, **kw})
    return CameraSource(settings, stop or threading.Event(), on_frame)


def stopped_quickly(cam: CameraSource, limit: float = 5.0) -> bool:
    t = time.monotonic()
    cam.stop(timeout=limit)
    return time.monotonic() - t < limit and not any(t.is_alive() for t in cam._threads)


# ------------------------------------------------------------------ units


def test_newest_frame_wins_and_replaced_frames_are_counted() -> None:
    slot = LatestFrame()
    for i in range(3):
        slot.put(CapturedFrame(np.zeros((2, 2, 3), np.uint8), time.time(), i + 1))
    frame = slot.take(0.1)
    assert frame is not None and frame.seq == 3
    assert slot.dropped == 2
    assert slot.take(0.05) is None


def test_url_kinds_and_redaction() -> None:
    assert classify(0) == ("device", 0)
    assert classify("2") == ("device", 2)
    assert classify("/dev/video1") == ("device", "/dev/video1")
    assert classify("rtsp://cam/stream")[0] == "stream"
    assert classify("http://127.0.0.1:8080/")[0] == "stream"
    assert classify("clips/a.avi") == ("file", "clips/a.avi")
    assert redact_url("rtsp://admin:s3cret@10.0.0.2:554/s") == "rtsp://admin:***@10.0.0.2:554/s"


def test_camera_config_keys_and_password_rule(tmp_path) -> None:
    cfg = parse_config(
        """
state_dir: var
sources:
  - name: meter
    type: camera
    url: clips/meter.avi
    interval_s: 0.5
    loop: true
    resolution: [640, 480]
    open_timeout_s: 4
    read_timeout_s: 3
    backoff_min_s: 0.5
    backoff_max_s: 20
    change_threshold: 3
    debounce_frames: 3
    evidence: {max_files: 10, max_mb: 5}
    regions:
      - {name: reading, box: [20, 60, 280, 80], mode: line, pattern: '^\\d{5}$', charset: '0123456789'}
      - {name: plate, polygon: [[0, 0], [100, 5], [100, 40], [0, 35]], mode: text}
""",
        base_dir=tmp_path,
    )
    (src,) = cfg.sources
    assert src.url == str(tmp_path / "clips" / "meter.avi")  # relative to the config file, like every path
    assert src.evidence.dir == tmp_path / "var" / "evidence" / "meter"
    assert [r.mode for r in src.regions] == ["line", "text"]
    with pytest.raises(Exception, match="password_file"):
        parse_config(
            "state_dir: var\nsources: [{name: c, type: camera, url: 'rtsp://u:pw@h/s'}]\n", base_dir=tmp_path
        )


def test_the_commented_camera_example_is_valid_once_uncommented() -> None:
    example = Path(__file__).resolve().parents[1] / "config" / "edge-ocr.yaml"
    lines = example.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  # - name: meter"))
    block = []
    for line in lines[start:]:
        if not line.startswith("  #"):
            break
        block.append("  " + re.sub(r"^  # ?", "", line))
    body = "\n".join(line for line in block if not line.strip().startswith("#"))
    cfg = parse_config(f"state_dir: /tmp/s\nsources:\n{body}\n")
    (src,) = cfg.sources
    assert src.type == "camera" and src.regions[0].pattern == r"^\d{5}$"


# ------------------------------------------------------------------ video files


def test_video_file_results_match_the_rendered_text_once_per_change(engine, meter_video) -> None:
    collect = Collector(engine)
    cam = camera(str(meter_video), on_frame=collect, interval_s=0.1)
    t = time.monotonic()
    cam.start()
    try:
        assert wait_until(lambda: cam.stats()["state"] == "ended", timeout=15)
        elapsed = time.monotonic() - t
        assert wait_until(lambda: len(collect.texts()) >= 2, timeout=5)
        time.sleep(0.3)
        assert collect.texts() == ["04512", "04513"]  # once per change, not once per frame
        assert all(m["valid"] for m in collect.messages)
        st = cam.stats()
        assert st["frames_read"] == 40
        assert 3.0 < elapsed < 8.0  # played in real time (4 s at 10 fps), not as fast as it decodes
        assert st["frames_analysed"] >= 20
        assert st["last_error"] is None
    finally:
        assert stopped_quickly(cam)


def test_video_that_ends_reports_ended_without_reconnecting(meter_video, caplog) -> None:
    caplog.set_level(logging.INFO, logger="edge_ocr.sources.camera")
    cam = camera(str(meter_video), interval_s=0)
    cam.start()
    try:
        assert wait_until(lambda: cam.stats()["state"] == "ended", timeout=15)
        time.sleep(0.5)
        st = cam.stats()
        assert (st["connected"], st["reconnects"], st["frames_read"]) == (False, 0, 40)
        assert "video ended" in caplog.text
    finally:
        assert stopped_quickly(cam)


def test_looping_video_repeats(meter_video) -> None:
    cam = camera(str(meter_video), interval_s=0, loop=True)
    cam.start()
    try:
        assert wait_until(lambda: cam.stats()["frames_read"] > 45, timeout=10)
        assert cam.stats()["state"] == "connected"
    finally:
        assert stopped_quickly(cam)


# ------------------------------------------------------------------ faults


def test_unreachable_url_missing_device_and_missing_file_retry_without_hanging(tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="edge_ocr.sources.camera")
    port = free_port()  # nothing listens there
    cams = [
        camera(f"http://127.0.0.1:{port}/"),
        camera("/dev/video99"),
        camera(str(tmp_path / "missing.avi")),
    ]
    for c in cams:
        c.start()
    try:
        assert wait_until(lambda: all(c.stats()["reconnects"] >= 2 for c in cams), timeout=15)
        errors = [c.stats()["last_error"] for c in cams]
        assert "cannot open stream" in errors[0]
        assert errors[1] == "no such device /dev/video99"
        assert "no such video file" in errors[2]
        assert all(c.stats()["state"] in ("disconnected", "connecting") for c in cams)
        assert "no such device /dev/video99; reconnecting" in caplog.text
    finally:
        for c in cams:
            assert stopped_quickly(c)


class HangingCapture:
    """A capture whose read() blocks until released by the test (a dead stream without timeouts)."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate
        self.released = False

    def isOpened(self) -> bool:  # noqa: N802
        return True

    def read(self):
        self.gate.wait(30)
        return False, None

    def get(self, prop: int) -> float:
        return 0.0

    def set(self, prop: int, value: float) -> bool:
        return False

    def release(self) -> None:
        self.released = True


def test_watchdog_abandons_a_hung_read_and_restarts_the_capture() -> None:
    gate = threading.Event()
    opened: list[HangingCapture] = []

    def opener(settings: CameraSettings) -> HangingCapture:
        opened.append(HangingCapture(gate))
        return opened[-1]

    settings = CameraSettings(name="cam", url="rtsp://127.0.0.1:9/x", read_timeout_s=0.3, backoff_min_s=0.1)
    cam = CameraSource(settings, threading.Event(), opener=opener)
    cam.start()
    try:
        assert wait_until(lambda: cam.stats()["stalls"] >= 2, timeout=10)
        st = cam.stats()
        assert "read did not return within 0.3 s" in st["last_error"]
        assert len(opened) >= 2 and st["abandoned_reads"] >= 1
    finally:
        gate.set()  # the hung reads return; their threads release their own captures and exit
        assert stopped_quickly(cam)
    assert wait_until(lambda: all(c.released for c in opened), timeout=5)


def test_watchdog_abandons_a_hung_open() -> None:
    gate = threading.Event()

    def opener(settings: CameraSettings):
        gate.wait(30)
        raise CameraUnavailable("gave up")

    settings = CameraSettings(name="cam", url="rtsp://127.0.0.1:9/x", open_timeout_s=0.3, backoff_min_s=0.1)
    cam = CameraSource(settings, threading.Event(), opener=opener)
    cam.start()
    try:
        assert wait_until(lambda: cam.stats()["stalls"] >= 1, timeout=10)
        assert "open did not return within 0.3 s" in cam.stats()["last_error"]
    finally:
        gate.set()
        assert stopped_quickly(cam)


# ------------------------------------------------------------------ a local stream served by ffmpeg


class StreamServer:
    """ffmpeg serving a looping video as HTTP multipart JPEG on 127.0.0.1:port (one client per process)."""

    def __init__(self, video: Path, port: int) -> None:
        self.video, self.port = video, port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> StreamServer:
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            pytest.fail("ffmpeg is not installed: apt-get install ffmpeg (stream tests need it)")
        cmd = [ffmpeg, "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(self.video)]
        cmd += ["-c:v", "mjpeg", "-q:v", "3", "-f", "mpjpeg", "-listen", "1", self.url]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)


@pytest.fixture
def stream(tmp_path):
    video = tmp_path / "stream.avi"
    write_meter_video(video, [("04512", 2.0), ("04513", 2.0)], fps=10)
    servers: list[StreamServer] = []

    def make(port: int | None = None) -> StreamServer:
        servers.append(StreamServer(video, port or free_port()).start())
        return servers[-1]

    yield make
    for s in servers:
        s.kill()


def test_stream_results_arrive_and_the_camera_reconnects_after_the_server_restarts(engine, stream) -> None:
    server = stream()
    collect = Collector(engine, debounce=1)
    cam = camera(server.url, on_frame=collect, interval_s=0.1)
    cam.start()
    try:
        assert wait_until(lambda: cam.stats()["connected"], timeout=15), cam.stats()
        assert wait_until(lambda: {"04512", "04513"} <= set(collect.texts()), timeout=15), collect.texts()
        assert cam.stats()["fps"] > 3

        server.kill()  # the outage
        assert wait_until(lambda: cam.stats()["state"] in ("disconnected", "connecting"), timeout=10)
        down = cam.stats()
        assert not down["connected"] and down["last_error"]
        assert wait_until(lambda: cam.stats()["reconnects"] >= 2, timeout=10)  # it keeps trying

        frames = cam.stats()["frames_read"]
        stream(server.port)  # the same URL comes back
        assert wait_until(lambda: cam.stats()["connected"], timeout=20), cam.stats()
        assert wait_until(lambda: cam.stats()["frames_read"] > frames + 5, timeout=10)
        up = cam.stats()
        assert up["state"] == "connected" and up["since"] > down["since"]
        assert up["last_error"] and up["reconnects"] >= 2  # the outage stays visible after recovery
    finally:
        assert stopped_quickly(cam)


def test_a_stalled_stream_is_abandoned_within_the_read_timeout(engine, stream) -> None:
    server = stream()
    cam = camera(server.url, interval_s=0.1, read_timeout_s=1.0)
    cam.start()
    try:
        assert wait_until(lambda: cam.stats()["connected"], timeout=15), cam.stats()
        assert server.proc is not None
        server.proc.send_signal(signal.SIGSTOP)  # the server hangs: the socket stays open, no data
        t = time.monotonic()
        assert wait_until(lambda: not cam.stats()["connected"], timeout=10), cam.stats()
        assert time.monotonic() - t < 1.0 + 3.0  # read timeout, watchdog grace, a little slack
        assert cam.stats()["last_error"]
        server.kill()
        stream(server.port)
        assert wait_until(lambda: cam.stats()["connected"], timeout=20), cam.stats()
    finally:
        assert stopped_quickly(cam)


# ------------------------------------------------------------------ the daemon, over MQTT


def daemon_config(tmp: Path, url: str, broker_url: str, **extra) -> str:
    x, y, w, h = METER_BOX
    more = "".join(f"\n    {k}: {v}" for k, v in extra.items())
    return f"""
device_id: cam-dev
state_dir: {tmp / "state"}
sources:
  - name: meter
    type: camera
    url: {url}
    backoff_min_s: 0.2
    backoff_max_s: 1{more}
    regions:
      - name: reading
        box: [{x}, {y}, {w}, {h}]
        pattern: '^\\d{{5}}$'
        charset: "0123456789"
mqtt:
  url: {broker_url}
  stats_interval_s: 0
"""


def run_daemon(cfg_text: str, tmp: Path):
    from edge_ocr.daemon import Daemon

    daemon = Daemon(parse_config(cfg_text, base_dir=tmp))
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    assert wait_until(lambda: daemon.gen is not None and "meter" in daemon.gen.cameras, timeout=60)
    return daemon, thread


def test_daemon_publishes_each_change_once_over_mqtt_with_evidence(tmp_path, meter_video, mosquitto) -> None:
    sub = Subscriber(mosquitto, ["edge-ocr/cam-dev/#"])
    text = daemon_config(
        tmp_path, meter_video, mosquitto.url, interval_s=0.1, evidence="{max_files: 5, max_mb: 5}"
    )
    daemon, thread = run_daemon(text, tmp_path)
    topic = "edge-ocr/cam-dev/result/meter"
    try:
        assert wait_until(lambda: daemon.status()["sources"]["meter"]["state"] == "ended", timeout=20)
        assert sub.wait_for(lambda ms: len([m for m in ms if m.topic == topic]) >= 2, timeout=10)
        time.sleep(0.5)
        msgs = [json.loads(p) for p in sub.payloads(topic)]
        assert [m["text"] for m in msgs] == ["04512", "04513"]  # one message per change, not per frame
        for m in msgs:
            assert (m["device_id"], m["source"], m["region"], m["valid"]) == (
                "cam-dev",
                "meter",
                "reading",
                True,
            )
            assert m["confidence"] > 0.8 and m["captured_at"] and m["id"]
            assert Path(m["evidence"]).is_file()
        assert msgs[1]["previous"] == "04512"
        assert all(m.qos == 1 for m in sub.on(topic))
        st = daemon.status()["sources"]["meter"]
        assert st["frames_analysed"] >= 20 and st["type"] == "camera"
        ok, health = daemon.health()
        assert ok, health
    finally:
        daemon.request_stop()
        thread.join(30)
        sub.close()
    assert not thread.is_alive()


def test_cmd_capture_forces_a_frame_now(tmp_path, meter_video, mosquitto) -> None:
    sub = Subscriber(mosquitto, ["edge-ocr/cam-dev/#"])
    text = daemon_config(tmp_path, meter_video, mosquitto.url, interval_s=60, loop="true", debounce_frames=1)
    daemon, thread = run_daemon(text, tmp_path)
    topic = "edge-ocr/cam-dev/result/meter"
    try:
        assert sub.wait_for(lambda ms: any(m.topic == topic for m in ms), timeout=20)  # the first frame
        time.sleep(0.3)
        assert len(sub.on(topic)) == 1  # interval_s 60: nothing more for a minute
        assert wait_until(lambda: daemon.gen.publisher.state.connected, timeout=10)
        sub.client.publish("edge-ocr/cam-dev/cmd/capture", b"{}", qos=1)
        assert sub.wait_for(lambda ms: len([m for m in ms if m.topic == topic]) >= 2, timeout=10)
        forced = json.loads(sub.payloads(topic)[1])
        assert forced["forced"] is True and forced["text"] in ("04512", "04513")
        assert sub.wait_for(lambda ms: any(m.topic.endswith("cmd/capture/reply") for m in ms), timeout=5)
        reply = json.loads(sub.payloads("edge-ocr/cam-dev/cmd/capture/reply")[0])
        assert reply["ok"] is True and "meter" in reply["sources"]
    finally:
        daemon.request_stop()
        thread.join(30)
        sub.close()
