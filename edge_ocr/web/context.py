"""What the web layer needs from whoever runs it (the daemon, or `edge-ocr serve`): callables, no imports.

The web layer never imports the daemon; the daemon fills a `WebContext` with its engine, its gate and
its views of the sources.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_ocr.web.fairshare import EngineGate
from edge_ocr.web.settings import ApiSettings
from edge_ocr.web.watch import CameraView


@dataclass(frozen=True)
class SetupHooks:
    """What the setup page (edge_ocr.web.setup) needs of a daemon that runs a configuration file."""

    config_path: Callable[[], Path | None]  # None: the daemon runs on its embedded default
    running: Callable[[], Any]  # the Config in force
    # Ask for a reload and wait for it: None (the new configuration runs), "restarting" (the HTTP server
    # is being replaced) or why it was refused; raises TimeoutError.
    reload: Callable[[float], str | None]
    command: Callable[[str, dict[str, Any]], dict[str, Any] | None]  # as cmd/<verb> over MQTT
    try_region: Callable[[str, Any], Any]  # (camera, RegionConfig) -> edge_ocr.region_trial.Trial


@dataclass
class WebContext:
    settings: ApiSettings
    gate: EngineGate
    engine: Callable[[], Any | None]  # the Engine, or None while it loads or the owner stops
    health: Callable[[], tuple[bool, dict[str, Any]]]
    status: Callable[[], dict[str, Any]]
    cameras: Callable[[], dict[str, CameraView]] = field(default=dict)
    recent: Callable[[], dict[str, list[dict[str, Any]]]] = field(default=dict)  # folder source -> results
    setup: SetupHooks | None = None  # None: no configuration to edit here (edge-ocr serve)
    history: Callable[[], Any | None] = field(default=lambda: None)  # edge_ocr.history.History, or None
