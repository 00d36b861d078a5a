"""The content-hash result cache: identical bytes with identical options and model set, one answer.

A bounded LRU of response bodies keyed by (sha256, options, model set); 0 entries turns it off.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any


class ResultCache:
    def __init__(self, entries: int) -> None:
        self.entries = max(0, entries)
        self._data: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[Any, ...]) -> dict[str, Any] | None:
        if not self.entries:
            return None
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: tuple[Any, ...], value: dict[str, Any]) -> None:
        if not self.entries:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.entries:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
