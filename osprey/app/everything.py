"""Segment everything's descriptions: a category and a short caption for every mask SAM found,
beside :class:`~osprey.app.service.RegionChat` (the same shared model, the same per-user
:class:`Session` data; top-1 labels of the same masks are in :mod:`osprey.app.top_classes`)."""

from __future__ import annotations

from typing import Any

from osprey.app.mask_prompts import need_image
from osprey.app.session import Session
from osprey.core.errors import ServiceError
from osprey.core.masks import RleMasks
from osprey.inference.facade import Generation, Osprey
from osprey.inference.preprocess import RegionError
from osprey.inference.prompt_format import ContextLengthError

CATEGORY_TOKENS, CAPTION_TOKENS = 16, 48


def describe_all(osprey: Osprey, session: Session, limit: int = 50) -> list[dict[str, Any]]:
    """Category and short caption of every "everything" mask (largest first, up to ``limit``),
    each mask's two answers decoded in one batch per task."""
    handle = need_image(session)
    if not session.auto:
        raise ServiceError(
            "No masks to describe: run 'Segment everything' first (or lower its thresholds)."
        )
    autos = session.auto[:limit]
    masks = RleMasks([a.rle for a in autos])
    try:
        cats = osprey.describe(handle, masks, "category", Generation(CATEGORY_TOKENS))
        caps = osprey.describe(handle, masks, "short", Generation(CAPTION_TOKENS))
    except (RegionError, ContextLengthError) as exc:
        raise ServiceError(str(exc)) from exc
    session.auto_labels = [c.strip() for c in cats]
    return [
        {"mask": i + 1, "category": c.strip(), "caption": s.strip(), "area": a.area, "box": list(a.box)}
        for i, (a, c, s) in enumerate(zip(autos, cats, caps))
    ]  # fmt: skip
