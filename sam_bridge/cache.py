"""SAM's image embeddings, cached by image content (:class:`osprey.core.lru.LRUCache`).

Each entry carries everything the decoder needs about its image (the features, SAM 2's two
high-resolution maps, and the two sizes), so entries can be used in any order by any number of
users. The owner
(:class:`~sam_bridge.predictor.SamBridge`) holds its lock around every access.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from osprey.core.lru import LRUCache


@dataclass(frozen=True, eq=False)
class Embedding:
    """SAM's image embedding and the geometry needed to map prompts in and masks out."""

    features: torch.Tensor  # (1, C, 64, 64) on the model's device, float32
    original_size: tuple[int, int]  # (H, W) of the image the user gave
    # (h, w) of the image in SAM's 1024 frame: SAM 1 keeps the aspect ratio (long side 1024,
    # then pads), SAM 2 stretches every image to (1024, 1024)
    input_size: tuple[int, int]
    # SAM 2's high-resolution maps for its mask decoder, (1, C/8, 256, 256) and (1, C/4, 128,
    # 128), float32; SAM 1 has none
    high_res: tuple[torch.Tensor, ...] = field(default_factory=tuple)

    @property
    def nbytes(self) -> int:
        """Bytes the entry holds (what the cache's byte budget counts)."""
        return sum(t.numel() * t.element_size() for t in (self.features, *self.high_res))


@dataclass(frozen=True)
class CacheStats:
    """Counters since the bridge was built. ``encodes`` counts every image-encoder run."""

    hits: int
    misses: int
    encodes: int
    evictions: int
    size: int
    capacity: int


EmbeddingCache = LRUCache[Embedding]  # SAM's embeddings by image key
