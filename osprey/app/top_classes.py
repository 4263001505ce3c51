"""Top-k classes in the app: for a session's regions (or its whole image) and as labels of the
"segment everything" masks. The app's side of :mod:`osprey.inference.topk_scoring`, beside
:class:`~osprey.app.service.RegionChat` (the same shared model, the same per-user :class:`Session`
data): each operation changes the session and returns data, or raises :class:`ServiceError` with
a message for the user.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from osprey.app.mask_prompts import need_image
from osprey.app.session import Session, model_name
from osprey.core.errors import ServiceError
from osprey.core.masks import RleMasks
from osprey.inference import vocabularies as vocab
from osprey.inference.facade import Osprey
from osprey.inference.preprocess import RegionError
from osprey.inference.prompt_format import ContextLengthError


def user_vocabulary(spec: str | vocab.Vocabulary | None) -> vocab.Vocabulary:
    """A vocabulary a user typed or picked: a built-in name or comma-separated names, never a
    path on the server. :class:`ServiceError` says what is wrong with it."""
    try:
        return vocab.resolve(spec or "")
    except vocab.VocabularyError as exc:
        raise ServiceError(f"Vocabulary: {exc}.") from exc


def classify(
    osprey: Osprey, session: Session, vocabulary: str | vocab.Vocabulary,
    indices: Sequence[int] | None = None, top_k: int = 5,
) -> list[tuple[str, list[tuple[str, float]]]]:  # fmt: skip
    """The ``top_k`` classes of ``vocabulary`` with their probabilities for the chosen regions
    (default: all; kept on the regions for the export) or, with no region, for the whole image.
    Returns (display name, top list) pairs: ``region2 (dog)``, or ``the image``."""
    handle = need_image(session)
    v = user_vocabulary(vocabulary)
    if isinstance(top_k, bool) or not isinstance(top_k, (int, float)) or top_k != int(top_k):
        raise ServiceError(f"top_k must be a whole number from 1 to {vocab.MAX_TOP_K}.")
    if not 1 <= int(top_k) <= vocab.MAX_TOP_K:
        raise ServiceError(f"top_k must be a whole number from 1 to {vocab.MAX_TOP_K}.")
    if not session.regions:
        return [
            (
                "the image",
                _run(lambda: osprey.classify(handle, None, v, int(top_k)))[0],
            )
        ]
    indices = list(range(len(session.regions))) if not indices else list(indices)
    for i in indices:
        if not 0 <= i < len(session.regions):
            raise ServiceError(f"There is no {model_name(i)}.")
    asked = [session.regions[i] for i in indices]
    tops = _run(lambda: osprey.classify(handle, RleMasks([r.rle for r in asked]), v, int(top_k)))
    names = session.record(asked, [{"top": tuple(t), "vocabulary": v.name} for t in tops])
    return [(name, t) for name, t in zip(names, tops) if name is not None]


def label_all(
    osprey: Osprey, session: Session, rows: list[dict[str, Any]], vocabulary: str | vocab.Vocabulary
) -> list[dict[str, Any]]:
    """Add to each "describe all" row (``mask`` numbers the session's "everything" masks from 1)
    its mask's most probable class of ``vocabulary`` (``label``, ``prob``), which then labels
    the overlay (``3:dog 0.71``)."""
    handle = need_image(session)
    v = user_vocabulary(vocabulary)
    masks = RleMasks([session.auto[r["mask"] - 1].rle for r in rows])
    tops = _run(lambda: osprey.classify(handle, masks, v, 1)) if masks else []
    for row, ((name, prob),) in zip(rows, tops):
        row.update(label=name, prob=round(prob, 4), vocabulary=v.name)
    session.auto_labels = [f"{r['label']} {r['prob']:.2f}" for r in rows]
    return rows


def _run(fn):
    """Run ``fn``; region and context errors become :class:`ServiceError`."""
    try:
        return fn()
    except (RegionError, ContextLengthError) as exc:
        raise ServiceError(str(exc)) from exc
