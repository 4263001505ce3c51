"""SamBridge: set an image once, then answer any number of clicks and boxes from its cached embedding.

One interface over two families of SAM (:mod:`sam_bridge.family`): SAM 1 (segment-anything's
ViT-B/L/H) and SAM 2.1 (transformers' ``Sam2Model``, tiny to large). Each image is encoded once
(the embedding is cached by image content, LRU, shared by every user, together with the image's
geometry); a click runs only the family's prompt encoder and mask decoder on the cached features
of the image it is about, so users can alternate images freely.

Coordinates in and out are the image's own pixels (see :mod:`sam_bridge.prompts`); masks are
boolean (H, W) arrays of the image given.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.amg import remove_small_regions

from osprey.core.images import MAX_PIXELS, ImageHandle, ImageLike, check_size, image_key, to_rgb
from osprey.core.masks import mask_box
from sam_bridge.build import resolve_autocast_dtype, resolve_device, store_matmul_weights
from sam_bridge.cache import CacheStats, Embedding, EmbeddingCache
from sam_bridge.errors import EmptyMaskError, SamBridgeError
from sam_bridge.everything import AutoMask, segment_everything
from sam_bridge.family import Family, Sam1Family
from sam_bridge.names import TINY_SAM1, TINY_SAM2
from sam_bridge.onnx_export import PageEmbedding
from sam_bridge.prompts import BoxLike, PointsLike, make_prompt

DEFAULT_CACHE_SIZE = 8
# SAM 1's embedding is (1, 256, 64, 64) float32 = 4 MiB for every size, SAM 2's adds its two
# high-resolution maps (12 MiB more); the cache holds at most this many bytes (by default: 8
# images of either) whatever the entry count.
DEFAULT_CACHE_BYTES = {"sam1": 64 * 2**20, "sam2": 128 * 2**20}


class ImageKey(str):
    """The content key of an image set on a bridge (returned by :meth:`SamBridge.set_image`).

    A distinct type so that ``predict(key)`` and ``predict("photo.jpg")`` cannot be confused.
    """


# ---------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True, eq=False)
class Candidate:
    """One mask SAM proposes for a prompt."""

    mask: np.ndarray  # bool (H, W) in the image's pixels
    score: float  # SAM's predicted IoU of this mask
    area: int  # pixels in the mask
    box: tuple[int, int, int, int] | None  # tight (x0, y0, x1, y1), x1/y1 exclusive; None if empty
    logits: np.ndarray  # float32 (256, 256) low-resolution logits: pass back as `previous`
    image_key: ImageKey


@dataclass(frozen=True, eq=False)
class Prediction:
    """SAM's answer to one prompt: candidates sorted by score (highest first)."""

    image_key: ImageKey
    image_size: tuple[int, int]  # (H, W)
    candidates: tuple[Candidate, ...]

    @property
    def is_empty(self) -> bool:
        """True when every candidate mask is empty."""
        return all(c.area == 0 for c in self.candidates)

    @property
    def best(self) -> Candidate:
        """The highest-scoring non-empty candidate; :class:`EmptyMaskError` if all are empty."""
        for candidate in self.candidates:
            if candidate.area:
                return candidate
        raise EmptyMaskError(
            "SAM found no region for this prompt (every candidate mask is empty); "
            "try another point or a box"
        )


# ---------------------------------------------------------------------------------------------
# helpers


def _clean(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Fill holes and drop islands smaller than ``min_area`` pixels (SAM's own utility)."""
    mask, _ = remove_small_regions(mask, min_area, mode="holes")
    mask, _ = remove_small_regions(mask, min_area, mode="islands")
    return mask


def _candidate(
    mask: np.ndarray, score: float, logits: np.ndarray, key: ImageKey, clean_min_area: int
) -> Candidate:
    if clean_min_area > 0:
        mask = _clean(mask, clean_min_area)
    area = int(np.count_nonzero(mask))
    box = mask_box(mask) if area else None
    return Candidate(mask, float(score), area, box, logits, key)


def _previous_logits(previous: Any, key: ImageKey, shape: tuple[int, int]) -> np.ndarray | None:
    """A previous Prediction / Candidate / logits array -> float32 (256, 256) mask_input."""
    if previous is None:
        return None
    if isinstance(previous, Prediction):
        previous = previous.candidates[0] if previous.is_empty else previous.best
    if isinstance(previous, Candidate):
        if previous.image_key != key:
            raise SamBridgeError(
                "the previous mask belongs to another image; refine on its own image"
            )
        logits = previous.logits
    else:
        logits = np.asarray(previous, dtype=np.float32)
        if logits.ndim == 3 and logits.shape[0] == 1:
            logits = logits[0]
    if logits.shape != shape:
        raise SamBridgeError(
            f"previous logits must be {shape} (SAM's low-res logits), got {logits.shape}"
        )
    if not np.isfinite(logits).all():
        raise SamBridgeError("previous logits hold NaN or infinite values")
    return logits


def _intake(
    image: ImageLike | ImageKey, prepare: Callable[[ImageLike], np.ndarray]
) -> tuple[Callable[[], np.ndarray | ImageHandle] | None, ImageKey, tuple[int, int] | None]:
    """(pixels, key, (H, W)) of an image: ``pixels()`` gives what the family encodes (the RGB
    ``prepare`` makes of it, or a handle, which the family resizes from its PIL image) and is
    called only when the embedding is not cached (a handle's pixels may have to be decoded
    again from its compressed source). A bare key gives (None, key, None)."""
    if isinstance(image, ImageKey):
        return None, image, None
    if isinstance(image, ImageHandle):  # already normalised, checked and hashed
        return (lambda: image), ImageKey(image.key), (image.height, image.width)
    rgb = prepare(image)
    return (lambda: rgb), ImageKey(image_key(rgb)), rgb.shape[:2]


def make_family(model: Any, device: torch.device) -> Family:
    """The family of ``model``: segment-anything's ``Sam`` or transformers' ``Sam2Model``."""
    if isinstance(model, Sam):
        return Sam1Family(model, device)
    from transformers import Sam2Model

    if isinstance(model, Sam2Model):
        from sam_bridge.sam2_family import Sam2Family

        return Sam2Family(model, device)
    raise SamBridgeError(
        f"{type(model).__name__} is not a SAM: give segment_anything's Sam or transformers' Sam2Model"
    )


def _embedding_bytes(emb: Embedding) -> int:
    return emb.nbytes


# ---------------------------------------------------------------------------------------------
# the bridge


class SamBridge:
    """Clicks and boxes -> masks, with the image embedding computed once per image.

    Thread-safe: the image encoder runs for one image at a time, and clicks on encoded images
    decode at any time, beside an encoder run and each other (the prompt encoder and mask
    decoder keep no state). Build with :meth:`from_pretrained` or :meth:`tiny`; ``model`` is
    segment-anything's ``Sam`` or transformers' ``Sam2Model`` (:mod:`sam_bridge.family`).
    """

    def __init__(
        self,
        model: Any,
        *,
        model_type: str = "custom",
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        max_pixels: int = MAX_PIXELS,
        max_cache_bytes: int | None = None,
    ) -> None:
        self.device = resolve_device(device)
        # Autocast covers the image encoder only; the decoder is cheap and runs in float32. The
        # encoder's Linear/Conv2d weights are stored in the autocast dtype (same outputs, half the
        # memory): the model passed in is changed in place.
        self.autocast_dtype = resolve_autocast_dtype(dtype, self.device)
        self.model = model.to(self.device).eval()
        self.family: Family = make_family(self.model, self.device)
        if self.autocast_dtype is not None:
            store_matmul_weights(self.family.encoder, self.autocast_dtype)
        self.model_type = model_type
        self.max_pixels = max_pixels
        budget = max_cache_bytes or DEFAULT_CACHE_BYTES[self.family.name]
        self._cache = EmbeddingCache(cache_size, budget, _embedding_bytes)
        # The cache's lock (lookups only); one encoder run at a time (the family's encoder
        # state, and the peak memory); a click takes neither for longer than a lookup.
        self._cache_lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._export_lock = threading.Lock()
        self._encodes = 0
        self.onnx_dir: Path | None = None  # None: a folder in the temp dir
        self.page_int8: bool | None = None  # the page's decoder in 8 bits (None: unless tiny)

    # construction ------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        model_type: str = "vit_b",
        checkpoint: str | Path | None = None,
        checkpoints_dir: str | Path | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        download: bool = True,
        progress: bool = True,
        **kwargs: Any,
    ) -> SamBridge:
        """A released SAM (``vit_b`` / ``vit_l`` / ``vit_h``, ``sam2.1-tiny`` ... ``sam2.1-large``,
        or a SAM 2 Hub id) from ``checkpoint`` or from ``checkpoints_dir`` (the repository's
        ``checkpoints/``), downloaded there if missing; see :func:`sam_bridge.loading.load_model`.
        Extra keyword arguments (``cache_size``, ``max_pixels``) go to the constructor."""
        from sam_bridge.loading import load_model

        model, folder = load_model(
            model_type, checkpoint, checkpoints_dir, download=download, progress=progress
        )
        bridge = cls(model, model_type=model_type, device=device, dtype=dtype, **kwargs)
        bridge.onnx_dir = folder  # the page's ONNX decoder is cached next to the checkpoint
        return bridge

    @classmethod
    def tiny(
        cls,
        seed: int = 0,
        device: str | torch.device | None = "cpu",
        dtype: str | torch.dtype | None = None,
        family: str = "sam1",
        **kwargs: Any,
    ) -> SamBridge:
        """A tiny untrained SAM of ``family`` (``sam1`` / ``sam2``): tests, offline work."""
        from sam_bridge.loading import tiny_model

        model, name = tiny_model(family, seed)
        return cls(model, model_type=name, device=device, dtype=dtype, **kwargs)

    @property
    def untrained(self) -> bool:
        """True for the tiny random-weight models."""
        return self.model_type in (TINY_SAM1, TINY_SAM2)

    # state -------------------------------------------------------------------------------------

    @property
    def stats(self) -> CacheStats:
        """Cache hits / misses / evictions and image-encoder runs since construction."""
        with self._cache_lock:
            c = self._cache
            return CacheStats(c.hits, c.misses, self._encodes, c.evictions, len(c), c.capacity)

    @property
    def logits_size(self) -> tuple[int, int]:
        """(h, w) of the low-resolution logits (256, 256 for both families)."""
        return self.family.logits_size

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    def resize_cache(self, max_bytes: int) -> None:
        """Bound the embedding cache by ``max_bytes`` (its newest entry is always kept)."""
        with self._cache_lock:
            self._cache.max_bytes = int(max_bytes)

    # images ------------------------------------------------------------------------------------

    def prepare(self, image: ImageLike) -> np.ndarray:
        """Any supported image -> (H, W, 3) uint8 RGB; refuses images SAM cannot take
        (:meth:`check`)."""
        rgb = to_rgb(image, self.max_pixels)
        self.check(*rgb.shape[:2])
        return rgb

    def check(self, height: int, width: int) -> None:
        """Refuse an image size SAM cannot take: above ``max_pixels`` (default
        :data:`osprey.core.images.MAX_PIXELS`; SAM sees 1024 pixels on the long side, but every click
        returns three full-size masks), or one its family cannot frame."""
        check_size(height, width, self.max_pixels)
        self.family.check_size(height, width)

    def set_image(self, image: ImageLike) -> ImageKey:
        """Encode ``image`` (or find it in the cache) and return its key for later predictions."""
        pixels, key, _ = _intake(image, self.prepare)
        if pixels is None:
            self._cached(key)  # a key: it must still be cached
        else:
            self._embed(pixels, key)
        return key

    # prediction --------------------------------------------------------------------------------

    def predict(
        self,
        image: ImageLike | ImageKey,
        points: PointsLike | None = None,
        labels: Sequence[int] | np.ndarray | None = None,
        box: BoxLike | None = None,
        previous: Prediction | Candidate | np.ndarray | None = None,
        multimask: bool | None = None,
        clean_min_area: int = 0,
        mask_size: tuple[int, int] | None = None,
    ) -> Prediction:
        """Masks for a prompt on ``image`` (an image, or an :class:`ImageKey` from set_image).

        ``points``: (N, 2) (x, y) pixels; ``labels``: (N,) 1 positive / 0 negative (default all
        1); ``box``: (x0, y0, x1, y1). ``previous``: the Prediction (or Candidate, or its (256, 256)
        logits) of the same image to refine, fed back as SAM's ``mask_input``; pass all clicks so
        far together with it, as SAM's interactive loop does. ``multimask``: three candidates
        (sub-part / part / whole) or one; None picks three for a lone click and one otherwise
        (SAM's advice for unambiguous prompts). ``clean_min_area``: fill holes and drop islands
        below this many pixels. ``mask_size`` (h, w): masks (and their areas and boxes) at that
        size instead of the image's, e.g. a display size (the logits do not depend on it).
        Raises :class:`SamBridgeError` for bad prompts.
        """
        pixels, key, size = _intake(image, self.prepare)
        emb = None
        if pixels is None:  # a key: hold on to its entry, whatever the cache does meanwhile
            emb = self._cached(key)
        # Check the prompt before any encoding, so a bad click never costs an encoder run.
        prompt = make_prompt(size if emb is None else emb.original_size, points, labels, box)
        mask_input = _previous_logits(previous, key, self.logits_size)
        if multimask is None:
            multimask = prompt.num_points == 1 and prompt.box is None and mask_input is None
        emb = emb if emb is not None else self._embed(pixels, key)
        with torch.inference_mode():
            masks, scores, logits = self.family.decode(
                emb, prompt, mask_input, multimask, mask_size
            )
        order = np.argsort(-scores, kind="stable")
        candidates = tuple(
            _candidate(masks[i], scores[i], logits[i], key, clean_min_area) for i in order
        )
        return Prediction(key, emb.original_size, candidates)

    def everything(self, image: ImageLike, **options: Any) -> list[AutoMask]:
        """All masks in ``image`` (SAM's automatic generator); see
        :func:`sam_bridge.everything.segment_everything` for the options."""
        return segment_everything(self, image, **options)

    # the page's decoder ------------------------------------------------------------------------

    def page_embedding(self, image: ImageLike | ImageKey) -> PageEmbedding:
        """The image's maps (encoded once, cached) in float16 with its geometry: what a page
        running :meth:`decoder_onnx` needs to decode clicks itself."""
        pixels, key, _ = _intake(image, self.prepare)
        emb = self._cached(key) if pixels is None else self._embed(pixels, key)
        with torch.inference_mode():
            return self.family.page_embedding(emb)

    def decoder_onnx(self) -> Path:
        """This model's prompt encoder + mask decoder as ONNX, exported on the first call into
        :attr:`onnx_dir` and reused after (SAM 1: :mod:`sam_bridge.onnx_export`)."""
        with self._export_lock:
            return self.family.page_decoder(self.model_type, self.onnx_dir, self.page_int8)

    # internals ---------------------------------------------------------------------------------

    def _cached(self, key: ImageKey) -> Embedding:
        """The cached embedding of ``key``, or SamBridgeError if it was evicted."""
        with self._cache_lock:
            emb = self._cache.get(key)
        if emb is None:
            raise SamBridgeError(
                f"image {key} is not in the cache (evicted?); pass the image itself"
            )
        return emb

    def _embed(
        self, rgb: np.ndarray | Callable[[], np.ndarray | ImageHandle],
        key: ImageKey | None = None, cache: bool = True,
    ) -> Embedding:  # fmt: skip
        """The embedding of ``rgb`` (an array, or a function giving an array or a handle, called
        only to encode): cached, or encoded (and cached if asked) once however many threads
        ask."""
        pixels = rgb if callable(rgb) else (lambda: rgb)
        if not cache:
            with self._encode_lock:
                return self._encode(pixels())
        if key is None:
            rgb = pixels()
            key, pixels = ImageKey(image_key(np.ascontiguousarray(rgb))), (lambda: rgb)
        with self._cache_lock:
            emb = self._cache.get(key)
        if emb is not None:
            return emb
        with self._encode_lock:
            with self._cache_lock:  # encoded by another thread while this one waited?
                emb = self._cache.peek(key)
            if emb is None:
                emb = self._encode(pixels())
                with self._cache_lock:
                    self._cache.put(key, emb)
        return emb

    def _encode(self, rgb: np.ndarray | ImageHandle) -> Embedding:
        """Encode lock held. One image encoder run (under autocast when a dtype was chosen)."""
        dtype = self.autocast_dtype
        autocast = nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)
        with torch.inference_mode(), autocast:
            emb = self.family.encode(rgb)
        self._encodes += 1
        return emb
