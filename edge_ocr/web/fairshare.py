"""The engine's share between API requests and the daemon's own work (folder files, camera frames).

One `EngineGate` bounds how many engine calls run at once (`slots`) and, when both kinds wait for a
slot, hands slots out in turn: a folder backlog cannot make an API request wait more than one engine
call per slot, and an API burst cannot stop the folder or the cameras (they get every other slot).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

Kind = Literal["api", "work"]


class GateTimeout(Exception):
    """No slot came free before the deadline."""


class EngineGate:
    def __init__(self, slots: int) -> None:
        self.slots = max(1, slots)
        self._cond = threading.Condition()
        self._free = self.slots
        self._waiting: dict[str, int] = {"api": 0, "work": 0}
        self._last: str | None = None
        self.granted: dict[str, int] = {"api": 0, "work": 0}

    def _turn(self, kind: str) -> bool:
        other = "work" if kind == "api" else "api"
        return self._waiting[other] == 0 or self._last != kind

    def acquire(self, kind: Kind, timeout: float | None = None) -> bool:
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._waiting[kind] += 1
            try:
                while not (self._free > 0 and self._turn(kind)):
                    left = None if end is None else end - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._cond.wait(left)
                self._free -= 1
                self._last = kind
                self.granted[kind] += 1
                return True
            finally:
                self._waiting[kind] -= 1
                # A waiter that gave up may have been the reason another one yielded its turn.
                self._cond.notify_all()

    def release(self) -> None:
        with self._cond:
            self._free += 1
            self._cond.notify_all()

    @contextmanager
    def slot(self, kind: Kind, timeout: float | None = None) -> Iterator[None]:
        if not self.acquire(kind, timeout):
            raise GateTimeout(f"no engine slot within {timeout:.1f} s")
        try:
            yield
        finally:
            self.release()

    def snapshot(self) -> dict[str, Any]:
        with self._cond:
            return {"slots": self.slots, "busy": self.slots - self._free, "waiting": dict(self._waiting),
                    "granted": dict(self.granted)}  # fmt: skip


class GatedEngine:
    """An engine whose every call takes a slot of `kind` first (for the folder workers and cameras)."""

    def __init__(self, engine: Any, gate: EngineGate, kind: Kind = "work") -> None:
        self._engine = engine
        self._gate = gate
        self._kind: Kind = kind

    @property
    def models(self) -> dict[str, Any]:
        return self._engine.models  # type: ignore[no-any-return]

    def run(self, image: Any, charset: str | None = None, *, orient: bool = True) -> Any:
        with self._gate.slot(self._kind):
            return self._engine.run(image, charset, orient=orient)

    def run_line(self, image: Any, charset: str | None = None, *, upright: bool = False) -> Any:
        with self._gate.slot(self._kind):
            return self._engine.run_line(image, charset, upright=upright)

    def run_meter(self, image: Any, charset: str | None = None) -> Any:
        with self._gate.slot(self._kind):
            return self._engine.run_meter(image, charset)
