"""A session's regions as files: COCO-RLE JSON (regions with their names and answers, and the
chat) and a zip of 0/255 mask PNGs with the overlay as the app draws it."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np

from osprey.app import drawing
from osprey.app.session import Session, model_name


def to_json(session: Session, model: str, untrained: bool) -> dict[str, Any]:
    """COCO-RLE JSON of the session's regions, their names and answers, and the chat."""
    regions = []
    for i, r in enumerate(session.regions):
        box = r.box
        regions.append({
            "id": i + 1, "name": model_name(i), "label": r.label, "source": r.source,
            "segmentation": r.rle, "area": r.area,
            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]] if box else None,
            "category": r.category, "caption": r.caption, "detail": r.detail,
            "top_k": [{"name": n, "prob": p} for n, p in r.top], "vocabulary": r.vocabulary,
        })  # fmt: skip
    image = session.image
    return {
        "image": {"height": image.height, "width": image.width} if image is not None else None,
        "model": model, "untrained": untrained, "regions": regions,
        "chat": _chat(session),
    }  # fmt: skip


def _chat(session: Session) -> list[dict[str, Any]]:
    """The chat; an answer still streaming is included as far as it has come, marked partial."""
    chat: list[dict[str, Any]] = [{"question": q, "answer": a} for q, a in session.history]
    if session.pending is not None:
        q, a = session.pending
        chat.append({"question": q, "answer": a, "partial": True})
    return chat


def to_zip(session: Session, data: dict[str, Any]) -> bytes:
    """One ``regionK.png`` (0/255) per region, ``overlay.png`` and ``regions.json`` (``data``)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, r in enumerate(session.regions):
            zf.writestr(f"{model_name(i)}.png", png(r.mask.astype(np.uint8) * 255))
        overlay = drawing.render(session, show_auto=False)
        if overlay is not None:
            zf.writestr("overlay.png", png(overlay))
        zf.writestr("regions.json", json.dumps(data, indent=2))
    return buf.getvalue()


def png(array: np.ndarray) -> bytes:
    """An (H, W) or (H, W, 3) uint8 array as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()
