"""What the server keeps in memory between requests: loaded models and thumbnails.

Both are shared by every request thread and every indexing job, so both are thread-safe.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable


class ModelCache:
    """Each model loaded once, then shared by every request and job that needs it.

    Two requests that want the same model at the same time wait for one load, not two; requests
    for other models are not held up meanwhile. At most `max_models` stay loaded (least recently
    used dropped first; a request still holding a dropped model keeps using it)."""

    def __init__(self, loader: Callable[[str], object] | None = None, max_models: int = 4):
        if loader is None:
            from polymodal.embed.resolve import load_embedder

            loader = load_embedder
        self._loader = loader
        self._max = max(1, int(max_models))
        self._lock = threading.Lock()
        self._slots: OrderedDict[str, _Slot] = OrderedDict()

    def get(self, spec: str):
        with self._lock:
            slot = self._slots.get(spec)
            if slot is None:
                slot = self._slots[spec] = _Slot()
            self._slots.move_to_end(spec)
            while len(self._slots) > self._max:
                self._slots.popitem(last=False)
        with slot.lock:  # only callers of this one model wait for its load
            if slot.model is None:
                slot.model = self._loader(spec)
            return slot.model

    def put(self, spec: str, model) -> None:
        """Hand the cache a model that is already loaded (e.g. by open_collection)."""
        with self._lock:
            slot = self._slots.setdefault(spec, _Slot())
            slot.model = model
            self._slots.move_to_end(spec)

    def loaded(self) -> list[str]:
        with self._lock:
            return [spec for spec, slot in self._slots.items() if slot.model is not None]


class _Slot:
    def __init__(self):
        self.lock = threading.Lock()
        self.model = None


class BytesLRU:
    """A least-recently-used cache of byte strings, bounded by count and by total size."""

    def __init__(self, max_items: int = 512, max_bytes: int = 32 << 20):
        self.max_items, self.max_bytes = int(max_items), int(max_bytes)
        self._lock = threading.Lock()
        self._data: OrderedDict[object, bytes] = OrderedDict()
        self._size = 0
        self.hits = self.misses = 0

    def get(self, key) -> bytes | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._data[key] = value
            self._size += len(value)
            while len(self._data) > self.max_items or self._size > self.max_bytes:
                _, dropped = self._data.popitem(last=False)
                self._size -= len(dropped)

    def __len__(self) -> int:
        return len(self._data)
