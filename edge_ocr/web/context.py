"""What the web layer needs from whoever runs it (the daemon, or `edge-ocr serve`): callables, no imports.

The web layer never imports the daemon; the daemon fills a `WebContext` with its engine, its gate and
its views of the sources.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge_ocr.web.fairshare import EngineGate
from edge_ocr.web.settings import ApiSettings
from edge_ocr.web.watch import CameraView


@dataclass
class WebContext:
    settings: ApiSettings
    gate: EngineGate
    engine: Callable[[], Any | None]  # the Engine, or None while it loads or the owner stops
    health: Callable[[], tuple[bool, dict[str, Any]]]
    status: Callable[[], dict[str, Any]]
    cameras: Callable[[], dict[str, CameraView]] = field(default=dict)
    recent: Callable[[], dict[str, list[dict[str, Any]]]] = field(default=dict)  # folder source -> results
    history: Callable[[], Any | None] = field(default=lambda: None)  # edge_ocr.history.History, or None
