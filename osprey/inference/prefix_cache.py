"""Reuse the LLM's key/value cache across questions on the same image.

Every prompt on an image starts with the same system sentence, the 1024 image tokens and the
overview sentence; a follow-up chat turn starts with the whole previous exchange. The cache keeps,
per image, the KV of the last sequence the model processed together with a *signature* of that
sequence, and a new request prefills only what follows the longest common prefix.

A signature entry is the token id for text, and for placeholders what was spliced in: the image
key for image tokens, the mask's content digest for ``<mask>``/``<pos>`` (the same ids carry
different embeddings for different regions).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from osprey.core import constants as C

Signature = list[object]


def mask_digest(mask: torch.Tensor) -> str:
    """Content digest of a bool (H, W) mask."""
    arr = mask.detach().to("cpu", torch.bool).contiguous().numpy()  # 0/1 bytes, no copy
    digest = hashlib.blake2b(str(arr.shape).encode(), digest_size=12)
    digest.update(memoryview(arr).cast("B"))
    return digest.hexdigest()


def signature(
    ids: Sequence[int], image_key: str, digests: Sequence[str], mask_id: int, pos_id: int
) -> Signature:
    """Per-position identity of a spliced sequence (see the module docstring)."""
    sig: Signature = []
    region = 0
    for tok in ids:
        if tok == C.IMAGE_TOKEN_INDEX:
            sig.append(("image", image_key))
        elif tok == mask_id:
            sig.append(("mask", digests[region]))
        elif tok == pos_id:
            sig.append(("pos", digests[region]))
            region += 1
        else:
            sig.append(tok)
    return sig


def common_prefix(a: Signature, b: Signature) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


@dataclass
class _Entry:
    key: str
    sig: Signature
    cache: object  # transformers DynamicCache


class PrefixCache:
    """LRU of (image key, signature, KV cache) entries, several per image (a chat and a
    describe-all on one image, or two users on the same example photo, keep their own).
    Not thread-safe: use under the model's lock."""

    def __init__(self, max_entries: int = 4, max_bytes: int | None = None):
        self.max_entries = max_entries
        self.max_bytes = max_bytes  # None: bounded by entries only
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._next_id = 0
        self.reused_tokens = 0
        self.prefilled_tokens = 0

    def take(self, key: str, sig: Signature, limit: int | None = None) -> tuple[object | None, int]:
        """A KV cache holding the longest prefix of ``sig`` known for image ``key`` (cut to
        ``limit``), owned by the caller; and its length. An entry that ``sig`` extends (a chat's
        next turn) is handed over as is; an entry it shares only a part with stays stored and its
        prefix is copied. At least one token of ``sig`` is always left to compute: generation
        needs the logits of the last prompt position."""
        best, best_n = None, 0
        for entry_id, entry in self._entries.items():
            if entry.key == key:
                n = common_prefix(entry.sig, sig)
                if n > best_n:
                    best, best_n = entry_id, n
        n = min(best_n, len(sig) - 1, len(sig) if limit is None else limit)
        if best is None or n <= 0:
            return None, 0
        entry = self._entries[best]
        self._entries.move_to_end(best)
        if n == len(entry.sig):
            del self._entries[best]
            return entry.cache, n
        return clone_prefix(entry.cache, n), n

    def put(self, key: str, sig: Signature, cache) -> None:
        """Store ``cache``, which must hold exactly the KV of ``sig``."""
        if self.max_entries == 0 or cache.get_seq_length() != len(sig):
            return
        self._entries[self._next_id] = _Entry(key, list(sig), cache)
        self._next_id += 1
        while len(self._entries) > self.max_entries or self._over_budget():
            self._entries.popitem(last=False)

    def _over_budget(self) -> bool:
        return (
            self.max_bytes is not None and len(self._entries) > 1 and self.nbytes > self.max_bytes
        )

    @property
    def nbytes(self) -> int:
        """Bytes of every stored key and value tensor."""
        return sum(kv_bytes(e.cache) for e in self._entries.values())

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def kv_bytes(cache) -> int:
    """Bytes of a transformers cache's key and value tensors."""
    return sum(
        t.numel() * t.element_size()
        for layer in cache.layers
        for t in (layer.keys, layer.values)
        if t is not None
    )


def clone_prefix(cache, n: int):
    """A new DynamicCache with copies of the first ``n`` positions of every layer of ``cache``
    (a ``DynamicCache`` or a ``StaticCache``)."""
    from transformers import DynamicCache

    out = DynamicCache()
    for i, layer in enumerate(cache.layers):
        out.update(layer.keys[..., :n, :].clone(), layer.values[..., :n, :].clone(), i)
    return out
