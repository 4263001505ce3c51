"""Every cache that holds per-image data is bounded by bytes, not only by entry count: SAM's
embeddings, Osprey's image features and the prefix KV cache."""

import numpy as np
import torch

from osprey.core.lru import LRUCache
from osprey.inference.facade import Osprey
from osprey.inference.generator import Generation
from osprey.inference.image_features import FeatureCache
from sam_bridge import SamBridge


def test_lru_cache_evicts_by_bytes_and_keeps_the_newest():
    cache = LRUCache(100, max_bytes=10, size_of=len)
    cache.put("a", "xxxx")
    cache.put("b", "xxxx")
    assert cache.nbytes == 8 and len(cache) == 2
    cache.put("c", "xxxx")  # 12 bytes > 10: the oldest goes
    assert "a" not in cache and cache.nbytes == 8 and cache.evictions == 1
    cache.put("d", "x" * 50)  # bigger than the budget on its own: kept, all others go
    assert list(cache._entries) == ["d"] and cache.nbytes == 50


def test_sam_embeddings_are_bounded_by_bytes(voc):
    one = 32 * 64 * 64 * 4  # the tiny SAM's (1, 32, 64, 64) float32 embedding
    sam = SamBridge.tiny(max_cache_bytes=int(2.5 * one))
    for i in range(4):
        sam.set_image(np.ascontiguousarray(np.roll(voc["rgb"], i, axis=1)))
    assert sam.stats.size == 2 and sam._cache.nbytes == 2 * one and sam.stats.evictions == 2


def test_image_features_are_bounded_by_bytes(tiny_parts, voc):
    model, _ = tiny_parts
    probe = FeatureCache(model)
    one = probe.get(voc["rgb"])[1].nbytes()
    cache = FeatureCache(model, capacity=100, max_bytes=int(1.5 * one))
    for i in range(3):
        cache.get(np.ascontiguousarray(np.roll(voc["rgb"], i, axis=0)))
    assert len(cache.cache) == 1 and cache.cache.nbytes == one


def test_prefix_kv_cache_is_bounded_by_bytes(tiny_parts, voc):
    model, tok = tiny_parts
    osp = Osprey(model, tok, kv_cache_size=100)
    g = Generation(max_new_tokens=2)
    osp.ask(voc["rgb"], None, "Is there a boat?", gen=g)
    one = osp.generator.prefix.nbytes
    osp.generator.prefix.max_bytes = int(2.5 * one)
    for i in range(5):  # other images: new entries, each about as large as the first
        osp.ask(
            np.ascontiguousarray(np.roll(voc["rgb"], i + 1, axis=1)),
            None,
            "Is there a boat?",
            gen=g,
        )
    assert len(osp.generator.prefix) == 2 and osp.generator.prefix.nbytes <= 2.5 * one
    assert torch.is_tensor(next(iter(osp.generator.prefix._entries.values())).cache.layers[0].keys)
