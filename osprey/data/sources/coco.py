"""COCO-format instance files of stage 2: COCO instances, PascalPart and PartImageNet.

Each image becomes one conversation: its regions in random order (at most 20 for COCO, 15 for the
part datasets), one human turn of only ``<mask><pos>`` per region, the first prefixed with the
dataset's instruction, answered by the region's category name (PascalPart names are already
``category:subcategory``). Polygons and RLE are decoded with pycocotools. Images without
annotations are skipped, as in the original.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from osprey.core import prompt_strings as P
from osprey.data.sample import Rejected, Sample
from osprey.data.sources.base import Source, decode_region, read_json, region_turns


class CocoRegions(Source):
    """COCO instances (``instances_train2017.json``): answers are category names."""

    name = "coco"
    instruction = P.BEGIN_COCO
    max_regions = 20

    def __init__(
        self,
        ann_file: str | Path,
        image_dir: str | Path,
        *,
        max_regions: int | None = None,
        limit: int | None = None,
    ):
        if max_regions is not None:
            self.max_regions = max_regions
        super().__init__(ann_file, image_dir, limit=limit)

    # -- index -------------------------------------------------------------------------------

    def _records_from(self, path: Path) -> list[dict[str, Any]]:
        """One record per image: the image entry, its annotations and their category names."""
        data = read_json(path)
        names = {c["id"]: c["name"] for c in data.get("categories", [])}
        by_image: dict[Any, list] = defaultdict(list)
        for ann in data.get("annotations", []):
            by_image[ann.get("image_id")].append(ann)
        records = []
        for info in data.get("images", []):
            anns = by_image.get(info.get("id"), [])
            for ann in anns:
                ann["category_name"] = names.get(ann.get("category_id"))
            records.append({"image": info, "annotations": anns})
        return records

    def _index(self, record: dict[str, Any]) -> dict[str, Any] | None:
        info, anns = record["image"], record["annotations"]
        if not anns:
            self.skipped["image_without_annotations"] += 1
            return None
        if not all(k in info for k in ("file_name", "height", "width")):
            raise Rejected(
                "malformed_record", f"image entry without file_name/height/width: {info}"
            )
        return {"image": info, "annotations": [self._keep(a) for a in anns]}

    def _keep(self, ann: dict[str, Any]) -> dict[str, Any]:
        return {"segmentation": ann.get("segmentation"), "category_name": ann.get("category_name")}

    # -- samples -----------------------------------------------------------------------------

    def file_name(self, info: dict[str, Any]) -> str:
        return info["file_name"]

    def answer(self, info: dict[str, Any], ann: dict[str, Any]) -> str:
        return ann["category_name"]

    def question(self, rng: np.random.Generator) -> str:
        return P.REGION

    def sample(self, index: int, rng: np.random.Generator) -> Sample:
        record = self.record(index)
        info = record["image"]
        h, w = int(info["height"]), int(info["width"])
        turns, masks, events = region_turns(
            record["annotations"],
            rng,
            cap=self.max_regions,
            prefix=self.instruction,
            question=self.question,
            answer=lambda ann: self.answer(info, ann),
            mask=lambda ann: decode_region(ann["segmentation"], h, w),
        )
        return Sample(
            turns=turns,
            image_path=self.image_dir / self.file_name(info),
            masks=masks,
            size=(h, w),
            source=self.name,
            key=str(info.get("id", index)),
            events=events,
        )


class PascalPart(CocoRegions):
    """PascalPart (``part_data/pascal_part/train.json``): ``category:subcategory`` answers."""

    name = "pascal_part"
    instruction = P.BEGIN_PASCAL_PART
    max_regions = 15


class PartImageNet(CocoRegions):
    """PartImageNet (``part_data/partImagenet/train_format.json``)."""

    name = "part_imagenet"
    instruction = P.BEGIN_PART_IMAGENET
    max_regions = 15
