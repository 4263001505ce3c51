"""SAM's image embeddings, cached by image content (:class:`osprey.cache.LRUCache`).

Each entry carries everything the decoder needs about its image (the features and the two
sizes), so entries can be used in any order by any number of users. The owner
(:class:`~sam_bridge.predictor.SamBridge`) holds its lock around every access.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from osprey.cache import LRUCache


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


EmbeddingCache = LRUCache[Embedding]  # SAM's embeddings by image key
