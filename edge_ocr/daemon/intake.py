"""Flow control: may a source hand out new work now? No while paused, while the folders it writes to
are degraded, or while the outbox is full (back pressure); frames and files wait, results never do."""

from __future__ import annotations

import logging

from edge_ocr.daemon.state import Shared

log = logging.getLogger("edge_ocr.daemon")  # one name for the package: log filters match it


class Intake:
    """The one `can_accept` that folder and camera sources ask before they take new work."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self._backpressure_logged = False

    def can_accept(self, keys: tuple[str, ...] = ("state",)) -> bool:
        """May a source hand out new work writing to these folders? (pause, storage, a full outbox)"""
        sh = self.shared
        outbox = sh.outbox
        if sh.paused.is_set() or outbox is None:
            return False
        if sh.guard is not None and not sh.guard.usable(keys):
            return False
        full = outbox.is_full()
        if full and not self._backpressure_logged:
            log.warning(
                "outbox full (%d messages): not taking new files until the broker takes some",
                outbox.depth(),
                extra={"reason": "outbox_full"},
            )
            sh.notifier.status("back pressure: outbox full, waiting for the broker")
        elif not full and self._backpressure_logged:
            log.info("outbox has room again: taking new files")
        self._backpressure_logged = full
        return not full
