"""Visual Genome region captions with HQ-SAM masks (``vg/vg_train_with_mask.json``), stage 3.

COCO-format: each annotation holds a ``caption`` and a ``segmentation`` (RLE from HQ-SAM box
prompts); annotations flagged ``ignore`` are left out. At most 3 regions per image, in random
order; every question is one of the 24 short-description templates with ``<mask><pos>`` plus
" Answer the question using a short phrase.", the first prefixed with the image overview line.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from osprey.core import prompt_strings as P
from osprey.data.sources.base import pick
from osprey.data.sources.coco import CocoRegions


class VisualGenome(CocoRegions):
    name = "vg"
    instruction = P.BEGIN
    max_regions = 3

    def _index(self, record: dict[str, Any]) -> dict[str, Any] | None:
        anns = record["annotations"]
        ignored = sum(bool(a.get("ignore", False)) for a in anns)
        if ignored:
            self.skipped["ignored_regions"] += ignored
            record = {**record, "annotations": [a for a in anns if not a.get("ignore", False)]}
        return super()._index(record)

    def _keep(self, ann: dict[str, Any]) -> dict[str, Any]:
        return {"segmentation": ann.get("segmentation"), "caption": ann.get("caption")}

    def answer(self, info: dict[str, Any], ann: dict[str, Any]) -> str:
        return ann["caption"]

    def question(self, rng: np.random.Generator) -> str:
        template = pick(rng, P.SHORT_QUESTIONS).strip()
        return template.replace(P.REGION_REF, P.REGION) + P.LIMIT_SHORT_PHRASE
