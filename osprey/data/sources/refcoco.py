"""RefCOCO and RefCOCO+ with masks (``finetune_refcoco(+)_train_with_mask.json``), stage 2.

COCO-format files in which every "image" entry is one referring expression (``caption``) over a
COCO-2014-named image (``COCO_train2014_000000xxxxxx.jpg``: the part after the last ``_`` is the
file looked up) with its instance annotation(s). Each region's answer is the expression; at most
15 regions per entry; the instruction asks for relative position (RefCOCO) or forbids absolute
position (RefCOCO+).
"""

from __future__ import annotations

from typing import Any

from osprey.core import prompt_strings as P
from osprey.data.sample import Rejected
from osprey.data.sources.base import coco_tail
from osprey.data.sources.coco import CocoRegions


class RefCOCO(CocoRegions):
    name = "refcoco"
    instruction = P.BEGIN_REFCOCO
    max_regions = 15

    def _index(self, record: dict[str, Any]) -> dict[str, Any] | None:
        kept = super()._index(record)
        if kept is not None and not isinstance(kept["image"].get("caption"), str):
            raise Rejected("missing_caption", f"entry {kept['image'].get('id')} has no caption")
        return kept

    def file_name(self, info: dict[str, Any]) -> str:
        return coco_tail(info["file_name"])

    def answer(self, info: dict[str, Any], ann: dict[str, Any]) -> str:
        return info["caption"]


class RefCOCOPlus(RefCOCO):
    name = "refcoco+"
    instruction = P.BEGIN_REFCOCO_PLUS
