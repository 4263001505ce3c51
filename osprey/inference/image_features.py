"""Image features, computed once per image: the ConvNeXt stage maps (for the mask extractor) and the
projected image tokens (for the LLM), cached by the image's content key.

Every region and question on an image after the first costs only the mask extractor and the LLM.
"""

from __future__ import annotations

import threading

import torch

from osprey.core.images import ImageHandle, ImageLike
from osprey.core.lru import LRUCache
from osprey.inference.preprocess import preprocess_image
from osprey.model.osprey import ImageFeatures, OspreyModel

# Features of the 7B model take about 20 MB per image in bf16 (1024 image tokens of 4096 values
# and the four stage maps); the cache keeps at most this many bytes, whatever the entry count.
DEFAULT_MAX_BYTES = 512 * 2**20


class FeatureCache:
    """Image key -> :class:`ImageFeatures`, LRU, shared by every user of the model.

    ``lock``: the model's device lock (the vision pass runs under it); the cache has its own
    lock for lookups, so a hit never waits for another user's generation.
    """

    def __init__(
        self,
        model: OspreyModel,
        capacity: int = 8,
        lock: threading.RLock | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ):
        self.model = model
        self.cache: LRUCache[ImageFeatures] = LRUCache(
            max(1, capacity), max_bytes, ImageFeatures.nbytes
        )
        self.device_lock = lock or threading.RLock()
        self._lock = threading.Lock()
        self.calls = 0  # vision-tower passes (cache misses), for tests and stats

    def get(self, image: ImageLike) -> tuple[ImageHandle, ImageFeatures]:
        """The image's handle and features, encoding it on the first request."""
        handle = ImageHandle.of(image)
        with self._lock:
            feats = self.cache.get(handle.key)
        if feats is None:
            pixels = preprocess_image(handle, self.model.config.vision.image_size)[None]
            with self.device_lock, torch.inference_mode():
                feats = self.model.encode_images(pixels)[0]
                self.calls += 1
            with self._lock:
                self.cache.put(handle.key, feats)
        return handle, feats

    def clear(self) -> None:
        with self._lock:
            self.cache.clear()
