"""The daemon (`edge-ocr run`) and the API server alone (`edge-ocr serve`), as a package of rooms.

`core.Daemon` wires the rooms (lifecycle, folder, camera, commands, health, intake) around the shared
state (`state`); `settings` reads what they need out of a Config. See `core` for the threads and the
degraded mode. Nothing in edge_ocr imports this package except the CLI and the benchmarks.

The names below are loaded on first use: `edge-ocr serve` imports `serve` alone and so needs neither
paho nor watchdog (the daemon extra).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_ocr.daemon.core import Daemon, run_daemon
    from edge_ocr.daemon.serve import ApiOnly, run_serve
    from edge_ocr.daemon.settings import (
        engine_settings,
        folder_settings,
        readers_needed,
        region_sensors,
        storage_places,
    )
    from edge_ocr.daemon.state import STUCK_AFTER_S, Generation, Stats

_HOME = {
    "Daemon": "core",
    "run_daemon": "core",
    "ApiOnly": "serve",
    "run_serve": "serve",
    "engine_settings": "settings",
    "folder_settings": "settings",
    "readers_needed": "settings",
    "region_sensors": "settings",
    "storage_places": "settings",
    "STUCK_AFTER_S": "state",
    "Generation": "state",
    "Stats": "state",
}

__all__ = [
    "STUCK_AFTER_S",
    "ApiOnly",
    "Daemon",
    "Generation",
    "Stats",
    "engine_settings",
    "folder_settings",
    "readers_needed",
    "region_sensors",
    "run_daemon",
    "run_serve",
    "storage_places",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
