"""What the setup page asks of the running daemon beyond commands and reload: a region that is not saved
yet, tried on the latest analysed frame of a camera (`edge_ocr.region_trial`), on a web worker thread.
"""

from __future__ import annotations

import time
from typing import Any

from edge_ocr.daemon.state import Shared
from edge_ocr.region_trial import Trial, try_region
from edge_ocr.regions import regions_from_config


class NoFrame(LookupError):
    """The camera is unknown, or has not analysed a frame yet."""


class Setup:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def try_region(self, source: str, region: Any) -> Trial:
        """`region` (a config RegionConfig) read on the latest analysed frame of camera `source`; raises
        NoFrame when there is none."""
        gen = self.shared.gen
        analyzer = gen.analyzers.get(source) if gen is not None else None
        view = gen.views.get(source) if gen is not None else None
        if analyzer is None or view is None:
            raise NoFrame(f"no camera source {source!r}")
        image, captured_at = view.latest()
        if image is None:
            raise NoFrame(f"camera {source!r} has not analysed a frame yet")
        (built,) = regions_from_config([region])
        return try_region(analyzer.tracker, built, image, captured_at or time.time())
