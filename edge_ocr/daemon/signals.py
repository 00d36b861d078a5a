"""Signals: SIGTERM and SIGINT set the one stop event, SIGHUP asks for a reload (the main thread only)."""

from __future__ import annotations

import signal
from collections.abc import Callable


def install_signals(stop: Callable[[], None], reload: Callable[[], None] | None = None) -> None:
    """SIGTERM and SIGINT stop; SIGHUP reloads when `reload` is given."""
    signal.signal(signal.SIGTERM, lambda *_: stop())
    signal.signal(signal.SIGINT, lambda *_: stop())
    if reload is not None:
        signal.signal(signal.SIGHUP, lambda *_: reload())
