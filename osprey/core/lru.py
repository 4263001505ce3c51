"""A bounded least-recently-used map, keyed by image content: SAM's image embeddings
(:mod:`sam_bridge.predictor`), Osprey's image features (:mod:`osprey.inference.image_features`).

Not locked by itself: the owner holds a lock around every access.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class LRUCache(Generic[V]):
    """Least-recently-used map of key -> value, holding at most ``capacity`` entries and, with
    ``max_bytes``, at most that many bytes as ``size_of(value)`` counts them (the newest entry is
    always kept, whatever its size)."""

    def __init__(
        self,
        capacity: int,
        max_bytes: int | None = None,
        size_of: Callable[[V], int] | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"cache capacity must be at least 1, got {capacity}")
        if max_bytes is not None and size_of is None:
            raise ValueError("max_bytes needs size_of")
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.size_of = size_of
        self._entries: OrderedDict[str, V] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self.hits = self.misses = self.evictions = 0

    @property
    def nbytes(self) -> int:
        """Bytes held, as ``size_of`` counts them (0 without ``size_of``)."""
        return sum(self._sizes.values())

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

    def peek(self, key: str) -> V | None:
        """The entry for ``key`` or None, counting nothing and leaving the order as it is."""
        return self._entries.get(key)

    def get_or_compute(self, key: str, compute: Callable[[], V]) -> V:
        entry = self.get(key)
        if entry is None:
            entry = compute()
            self.put(key, entry)
        return entry

    def put(self, key: str, entry: V) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        if self.size_of is not None:
            self._sizes[key] = int(self.size_of(entry))
        while len(self._entries) > self.capacity or self._over_budget():
            old, _ = self._entries.popitem(last=False)
            self._sizes.pop(old, None)
            self.evictions += 1

    def _over_budget(self) -> bool:
        return (
            self.max_bytes is not None and len(self._entries) > 1 and self.nbytes > self.max_bytes
        )

    def clear(self) -> None:
        self._entries.clear()
        self._sizes.clear()
