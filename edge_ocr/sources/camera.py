"""The camera source: an OpenCV VideoCapture (V4L2 device, RTSP/HTTP/TCP stream or video file) that keeps
running through every camera fault, and hands the newest frame to an analysis callback.

Threads of one camera (all stop with the stop event passed in, or `stop()`):

- ``camera-<name>`` (the supervisor) starts a *session* thread, watches it, and after the session ends
  waits a backoff (doubling from `backoff_min_s` to `backoff_max_s`, reset by a good session) before
  starting the next. A session whose open or read does not return within its timeout is **abandoned**:
  the supervisor marks it, records the stall and starts a new one. OpenCV cannot interrupt a blocked
  read, so the abandoned thread is left to return on its own; it then releases its capture and exits
  without touching anything shared.
- ``camera-<name>-s<N>`` (a session) owns its VideoCapture from open to release: no other thread ever
  calls it. URLs are opened with the FFMPEG backend and its open/read timeouts (without them `read()`
  on a dead RTSP stream can block forever). A video file is played in real time at its own frame
  rate, repeated with `loop`, and otherwise ends (state ``ended``, no reconnect).
- ``camera-<name>-analysis`` takes frames from a one-slot holder and calls `on_frame`. The session
  samples a frame every `interval_s` (or at once after `request_capture()`) into the slot; a sampled
  frame replaced before analysis took it is counted as dropped. Capture never waits for analysis.

`stats()` reports the state (connecting, connected, disconnected, ended, stopped), fps read, frames
read/sampled/dropped/analysed, reconnects, stalls, the last error and since when the state holds.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import cv2
import numpy as np

log = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "tcp", "udp", "rtp", "srt")
_GRACE_S = 1.0  # the watchdog lets the backend's own timeout fire first


@dataclass(frozen=True)
class CameraSettings:
    name: str
    url: str | int  # device index, /dev/videoN, a stream URL or a video file path
    interval_s: float = 1.0  # seconds between analysed frames; 0: every frame
    loop: bool = False  # repeat a video file
    resolution: tuple[int, int] | None = None  # asked of a device; frames are scaled to it
    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0
    backoff_min_s: float = 1.0
    backoff_max_s: float = 30.0


@dataclass(frozen=True)
class CapturedFrame:
    image: np.ndarray  # BGR uint8
    captured_at: float  # time.time() when read
    seq: int  # frames read by this camera so far (1-based)
    forced: bool = False  # sampled because of request_capture()


class Capture(Protocol):
    """What a session needs of a cv2.VideoCapture (tests pass fakes)."""

    def isOpened(self) -> bool: ...  # noqa: N802
    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def get(self, prop: int) -> float: ...
    def set(self, prop: int, value: float) -> bool: ...
    def release(self) -> None: ...


Opener = Callable[[CameraSettings], Capture]


class SourceKind:
    DEVICE = "device"
    STREAM = "stream"
    FILE = "file"


def classify(url: str | int) -> tuple[str, str | int]:
    """(kind, target): a device index or /dev path, a stream URL, or a file path."""
    if isinstance(url, int):
        return SourceKind.DEVICE, url
    if re.fullmatch(r"\d+", url):
        return SourceKind.DEVICE, int(url)
    if url.startswith("/dev/"):
        return SourceKind.DEVICE, url
    scheme = urlsplit(url).scheme.lower()
    if scheme in STREAM_SCHEMES:
        return SourceKind.STREAM, url
    return SourceKind.FILE, url[7:] if scheme == "file" else url


def redact_url(url: str | int) -> str:
    """The URL for logs and status: a password in it is masked."""
    if isinstance(url, int):
        return str(url)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


class CameraUnavailable(Exception):
    """The camera cannot be opened now (missing device or file, refused, timed out); retried."""


_quieted = False


def _quiet_backends() -> None:
    """Every failed open would print OpenCV warnings and libav errors on stderr (once per retry, forever,
    into the journal); our own log already says what failed. Setting OPENCV_LOG_LEVEL or
    OPENCV_FFMPEG_LOGLEVEL in the environment keeps the backends' messages."""
    global _quieted
    if _quieted:
        return
    _quieted = True
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # read when OpenCV first initialises libav


def open_capture(settings: CameraSettings) -> Capture:
    """Open the VideoCapture for `settings.url` with the right backend and timeouts, or raise."""
    _quiet_backends()
    kind, target = classify(settings.url)
    params: list[int] = []
    if kind == SourceKind.DEVICE:
        path = f"/dev/video{target}" if isinstance(target, int) else str(target)
        if not os.path.exists(path):
            raise CameraUnavailable(f"no such device {path}")
        if settings.resolution:
            params += [cv2.CAP_PROP_FRAME_WIDTH, settings.resolution[0]]
            params += [cv2.CAP_PROP_FRAME_HEIGHT, settings.resolution[1]]
        cap = cv2.VideoCapture(target, cv2.CAP_V4L2, params)
        if not cap.isOpened():
            cap.release()
            raise CameraUnavailable(f"cannot open device {path} (busy, or not a video capture device)")
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver's queue short: we want the newest frame
        return cap
    if kind == SourceKind.FILE and not os.path.isfile(str(target)):
        raise CameraUnavailable(f"no such video file {target}")
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(settings.open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(settings.read_timeout_s * 1000),
    ]
    cap = cv2.VideoCapture(str(target), cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        what = "stream" if kind == SourceKind.STREAM else "video file"
        raise CameraUnavailable(
            f"cannot open {what} {redact_url(settings.url)} (unreachable, refused or timed out)"
        )
    return cap


class LatestFrame:
    """A one-slot holder: `put` replaces (the newest frame wins), `take` waits for a frame."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: CapturedFrame | None = None
        self.dropped = 0

    def put(self, frame: CapturedFrame) -> None:
        with self._cond:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._cond.notify_all()

    def take(self, timeout: float) -> CapturedFrame | None:
        with self._cond:
            if self._frame is None:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            return frame


class _Session:
    """One open-read-release cycle, run in its own thread; the supervisor may abandon it."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.abandoned = threading.Event()
        self.phase = "opening"  # opening, reading, idle (between paced reads), done
        self.phase_since = time.monotonic()
        self.error: str | None = None
        self.ended = False  # a video file reached its end (no loop)
        self.frames = 0
        self.thread: threading.Thread | None = None

    def enter(self, phase: str) -> None:
        self.phase, self.phase_since = phase, time.monotonic()


class CameraSource:
    """A camera; `start()` runs it until `stop()` or the stop event. `on_frame` runs on its own thread."""

    def __init__(
        self,
        settings: CameraSettings,
        stop: threading.Event,
        on_frame: Callable[[CapturedFrame], None] | None = None,
        *,
        can_accept: Callable[[], bool] | None = None,
        opener: Opener = open_capture,
    ) -> None:
        self.settings = settings
        self.kind, _ = classify(settings.url)
        self._outer_stop = stop
        self._stop = threading.Event()
        self._on_frame = on_frame
        self._can_accept = can_accept
        self._opener = opener
        self.slot = LatestFrame()
        self._lock = threading.Lock()
        self._capture_now = threading.Event()
        self._threads: list[threading.Thread] = []
        self._abandoned: list[_Session] = []
        self.heartbeat = time.monotonic()  # the supervisor's, for health
        self.analysis_beat = time.monotonic()
        self.analysis_busy_since: float | None = None
        # status, under _lock
        self.state = "stopped"
        self.since = time.time()
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.frames_read = 0
        self.frames_sampled = 0
        self.frames_analysed = 0
        self.frames_skipped = 0  # sampled while paused or under back pressure
        self.reconnects = 0
        self.stalls = 0
        self.connected_at: float | None = None
        self._fps = 0.0
        self._fps_mark = (time.monotonic(), 0)
        self._next_sample = 0.0

    # ------------------------------------------------------------------ lifecycle

    @property
    def name(self) -> str:
        return self.settings.name

    def _stopping(self) -> bool:
        return self._stop.is_set() or self._outer_stop.is_set()

    def _wait(self, seconds: float, *, beat: bool = False) -> bool:
        """Sleep up to `seconds`; True when stopping. `beat`: the supervisor stays visibly alive."""
        deadline = time.monotonic() + seconds
        while not self._stopping():
            if beat:
                self.heartbeat = time.monotonic()
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._stop.wait(min(left, 0.1))
        return True

    def start(self) -> None:
        self._set_state("connecting")
        sup = threading.Thread(target=self._supervise, name=f"camera-{self.name}", daemon=True)
        self._threads.append(sup)
        if self._on_frame is not None:
            t = threading.Thread(target=self._analyse_loop, name=f"camera-{self.name}-analysis", daemon=True)
            self._threads.append(t)
        for t in self._threads:
            t.start()
        log.info("camera %s: starting on %s (%s)", self.name, redact_url(self.settings.url), self.kind)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop capturing; the analysis thread finishes the frame in hand. Abandoned reads are left."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
            if t.is_alive():
                log.warning("camera %s: thread %s did not stop within %.0f s", self.name, t.name, timeout)
        self._set_state("stopped")

    def request_capture(self) -> None:
        """Sample the next frame read at once, and analyse it with force (cmd/capture)."""
        self._capture_now.set()

    def alive(self) -> bool:
        return all(t.is_alive() for t in self._threads)

    # ------------------------------------------------------------------ status

    def _set_state(self, state: str, error: str | None = None) -> None:
        with self._lock:
            if state != self.state:
                self.state, self.since = state, time.time()
            if error is not None:
                self.last_error, self.last_error_at = error, time.time()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            mark_t, mark_n = self._fps_mark
            fps = self._fps if self.state == "connected" and now - mark_t < 5 else 0.0
            return {
                "type": "camera",
                "url": redact_url(self.settings.url),
                "state": self.state,
                "connected": self.state == "connected",
                "since": self.since,
                "fps": round(fps, 2),
                "frames_read": self.frames_read,
                "frames_sampled": self.frames_sampled,
                "frames_dropped": self.slot.dropped,
                "frames_analysed": self.frames_analysed,
                "frames_skipped": self.frames_skipped,
                "reconnects": self.reconnects,
                "stalls": self.stalls,
                "last_error": self.last_error,
                "last_error_at": self.last_error_at,
                "abandoned_reads": sum(1 for s in self._abandoned if s.thread and s.thread.is_alive()),
            }

    def _count_frame(self) -> int:
        with self._lock:
            self.frames_read += 1
            now = time.monotonic()
            mark_t, mark_n = self._fps_mark
            if now - mark_t >= 1.0:
                self._fps = (self.frames_read - mark_n) / (now - mark_t)
                self._fps_mark = (now, self.frames_read)
            return self.frames_read

    # ------------------------------------------------------------------ supervisor

    def _supervise(self) -> None:
        s = self.settings
        backoff = s.backoff_min_s
        number = 0
        while not self._stopping():
            self.heartbeat = time.monotonic()
            number += 1
            session = _Session(number)
            if number > 1:
                with self._lock:
                    self.reconnects += 1
            self._set_state("connecting")
            session.thread = threading.Thread(
                target=self._run_session, args=(session,), name=f"camera-{self.name}-s{number}", daemon=True
            )
            session.thread.start()
            self._watch(session)
            if self._stopping():
                break
            if session.ended:
                self._set_state("ended")
                log.info("camera %s: the video ended (loop: false); nothing more to read", self.name)
                while not self._wait(1.0, beat=True):
                    pass
                break
            error = session.error or "capture ended"
            self._set_state("disconnected", error)
            if session.frames > 0:
                backoff = s.backoff_min_s  # it worked for a while: retry soon
            log.warning("camera %s: %s; reconnecting in %.1f s", self.name, error, backoff)
            if self._wait(backoff, beat=True):
                break
            backoff = min(s.backoff_max_s, backoff * 2)
        self.heartbeat = time.monotonic()

    def _watch(self, session: _Session) -> None:
        """Until the session ends, or stalls (then it is abandoned)."""
        s = self.settings
        assert session.thread is not None
        while session.thread.is_alive():
            session.thread.join(0.1)
            now = time.monotonic()
            self.heartbeat = now
            if self._stopping():
                session.abandoned.set()
                session.thread.join(max(0.5, s.read_timeout_s))
                return
            limit = {"opening": s.open_timeout_s, "reading": s.read_timeout_s}.get(session.phase)
            if limit is not None and now - session.phase_since > limit + _GRACE_S:
                what = "open" if session.phase == "opening" else "read"
                session.error = f"{what} did not return within {limit:g} s: capture abandoned and restarted"
                session.abandoned.set()
                with self._lock:
                    self.stalls += 1
                self._abandoned = [a for a in self._abandoned if a.thread and a.thread.is_alive()]
                self._abandoned.append(session)
                if len(self._abandoned) > 3:
                    log.error(
                        "camera %s: %d captures are still blocked in OpenCV (threads leak while the "
                        "backend hangs)",
                        self.name,
                        len(self._abandoned),
                    )
                return

    # ------------------------------------------------------------------ session (owns the capture)

    def _run_session(self, session: _Session) -> None:
        s = self.settings
        cap: Capture | None = None
        try:
            session.enter("opening")
            try:
                cap = self._opener(s)
            except CameraUnavailable as exc:
                session.error = str(exc)
                return
            if session.abandoned.is_set():
                return
            fps = cap.get(cv2.CAP_PROP_FPS) if self.kind == SourceKind.FILE else 0.0
            period = 1.0 / fps if 0 < fps < 1000 else (1 / 25 if self.kind == SourceKind.FILE else 0.0)
            start = time.monotonic()
            played = 0  # frames played since start (pacing of files)
            self._next_sample = 0.0
            while not session.abandoned.is_set() and not self._stopping():
                if period:
                    due = start + played * period
                    session.enter("idle")
                    if self._wait(due - time.monotonic()):
                        return
                session.enter("reading")
                ok, image = cap.read()
                if session.abandoned.is_set():
                    return
                if not ok or image is None:
                    if self.kind == SourceKind.FILE and session.frames > 0:
                        if s.loop and cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
                            start, played = time.monotonic(), 0
                            continue
                        if not s.loop:
                            session.ended = True
                            return
                    session.error = "read failed: the stream ended or the device stopped delivering frames"
                    if session.frames == 0 and self.kind == SourceKind.FILE:
                        session.error = "the video file has no readable frames"
                    return
                played += 1
                session.frames += 1
                if session.frames == 1:
                    with self._lock:
                        self.connected_at = time.time()
                        self._fps_mark = (time.monotonic(), self.frames_read)
                    self._set_state("connected")
                    log.info(
                        "camera %s: connected (%dx%d%s)",
                        self.name,
                        image.shape[1],
                        image.shape[0],
                        f", {fps:.3g} fps" if fps > 0 else "",
                    )
                seq = self._count_frame()
                self._sample(image, seq)
        except Exception as exc:  # an OpenCV error must not end the camera: the supervisor reconnects
            log.exception("camera %s: capture error", self.name)
            session.error = f"capture error: {exc}"
        finally:
            session.enter("done")
            if cap is not None:
                try:
                    cap.release()
                except Exception:  # noqa: BLE001 (release of a broken capture)
                    log.debug("camera %s: release failed", self.name, exc_info=True)

    def _sample(self, image: np.ndarray, seq: int) -> None:
        now = time.monotonic()
        forced = self._capture_now.is_set()
        if not forced and now < self._next_sample:
            return
        self._capture_now.clear()
        interval = self.settings.interval_s
        self._next_sample = max(self._next_sample + interval, now) if self._next_sample else now + interval
        res = self.settings.resolution
        if res and (image.shape[1], image.shape[0]) != tuple(res):
            image = cv2.resize(image, tuple(res), interpolation=cv2.INTER_AREA)
        with self._lock:
            self.frames_sampled += 1
        self.slot.put(CapturedFrame(image=image, captured_at=time.time(), seq=seq, forced=forced))

    # ------------------------------------------------------------------ analysis

    def _analyse_loop(self) -> None:
        assert self._on_frame is not None
        while not self._stopping():
            self.analysis_beat = time.monotonic()
            frame = self.slot.take(0.5)
            if frame is None:
                continue
            if self._can_accept is not None and not frame.forced and not self._can_accept():
                with self._lock:
                    self.frames_skipped += 1
                continue
            self.analysis_busy_since = time.monotonic()
            try:
                self._on_frame(frame)
            except Exception:
                log.exception("camera %s: analysis of frame %d failed", self.name, frame.seq)
            finally:
                self.analysis_busy_since = None
            with self._lock:
                self.frames_analysed += 1
        self.analysis_beat = time.monotonic()


def settings_from_config(src: Any, password: str | None = None) -> CameraSettings:
    """CameraSettings from a config `CameraSource`; `password` is put into a stream URL."""
    url: str | int = src.url
    if password is not None and isinstance(url, str):
        parts = urlsplit(url)
        if parts.username:
            host = parts.hostname or ""
            if parts.port:
                host = f"{host}:{parts.port}"
            url = urlunsplit(parts._replace(netloc=f"{parts.username}:{quote(password, safe='')}@{host}"))
    return CameraSettings(
        name=src.name,
        url=url,
        interval_s=src.interval_s,
        loop=src.loop,
        resolution=tuple(src.resolution) if src.resolution else None,  # type: ignore[arg-type]
        open_timeout_s=src.open_timeout_s,
        read_timeout_s=src.read_timeout_s,
        backoff_min_s=src.backoff_min_s,
        backoff_max_s=src.backoff_max_s,
    )
