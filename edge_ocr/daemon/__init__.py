"""The daemon (`edge-ocr run`) and the API server alone (`edge-ocr serve`), as a package of rooms.

`core.Daemon` wires the rooms (lifecycle, folder, camera, commands, health, intake) around the shared
state (`state`); `settings` reads what they need out of a Config. See `core` for the threads and the
degraded mode. Nothing in edge_ocr imports this package except the CLI and the benchmarks.
"""

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
