"""A bounded LRU cache keyed by image content: SAM's image embeddings here, and Osprey's image
features in :mod:`osprey.pipeline` (the same cache, another value type).

Each SAM entry carries everything the decoder needs about its image (the features and the two
sizes), so entries can be used in any order by any number of users. Not locked by itself: the
owner (:class:`~sam_bridge.predictor.SamBridge`, :class:`osprey.pipeline.Osprey`) holds a lock
around every access.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch


@dataclass(frozen=True, eq=False)
class Embedding:
    """SAM's image embedding and the geometry needed to map prompts in and masks out."""

    features: torch.Tensor  # (1, C, 64, 64) on the model's device, float32
    original_size: tuple[int, int]  # (H, W) of the image the user gave
    input_size: tuple[int, int]  # (h, w) after ResizeLongestSide (long side 1024), before padding


@dataclass(frozen=True)
class CacheStats:
    """Counters since the bridge was built. ``encodes`` counts every image-encoder run."""

    hits: int
    misses: int
    encodes: int
    evictions: int
    size: int
    capacity: int


V = TypeVar("V")


class LRUCache(Generic[V]):
    """Least-recently-used map of image key -> value, holding at most ``capacity`` entries."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"cache capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[str, V] = OrderedDict()
        self.hits = self.misses = self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> V | None:
        """The entry for ``key`` (now the most recently used), or None; counts a hit or a miss."""
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return entry

    def get_or_compute(self, key: str, compute: Callable[[], V]) -> V:
        entry = self.get(key)
        if entry is None:
            entry = compute()
            self.put(key, entry)
        return entry

    def put(self, key: str, entry: V) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
            self.evictions += 1

    def clear(self) -> None:
        self._entries.clear()


EmbeddingCache = LRUCache[Embedding]  # SAM's embeddings by image key
