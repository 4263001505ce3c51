"""The real VOC photo of the ``voc`` fixture as a COCO-format dataset on disk.

Each image id is a copy of the same photo with its 19 real instance masks; annotation ``k`` of
image ``i`` has id ``100 * i + k`` (so ``ann_id % 100`` is the VOC instance index). Masks are
written as compressed RLE, every third one as polygons traced with OpenCV.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from osprey.core.masks import encode_rle, mask_box


def file_name(image_id: int) -> str:
    return f"{image_id:012d}.jpg"


def mask_polygons(mask: np.ndarray) -> list[list[float]]:
    """Outer contours of a bool mask as COCO polygons (pixel coordinates)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def voc_annotation(voc: dict[str, Any], image_id: int, k: int) -> dict[str, Any]:
    mask = voc["masks"][k]
    x0, y0, x1, y1 = mask_box(mask)
    return {
        "id": 100 * image_id + k,
        "image_id": image_id,
        "category_id": int(voc["labels"][k]),
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "area": int(mask.sum()),
        "iscrowd": 0,
        "segmentation": mask_polygons(mask) if k % 3 == 0 else encode_rle(mask),
    }


def voc_instances(voc: dict[str, Any], image_ids: Sequence[int]) -> dict[str, Any]:
    """COCO instances: one image entry per id, all 19 instances each, VOC class names."""
    height, width = voc["rgb"].shape[:2]
    return {
        "images": [
            {"id": i, "file_name": file_name(i), "height": height, "width": width}
            for i in image_ids
        ],
        "annotations": [
            voc_annotation(voc, i, k) for i in image_ids for k in range(len(voc["labels"]))
        ],
        "categories": [
            {"id": c, "name": name} for c, name in enumerate(voc["class_names"]) if c > 0
        ],
    }


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def write_images(voc: dict[str, Any], folder: Path, image_ids: Sequence[int]) -> Path:
    """The photo saved once per id under its COCO-style name."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in image_ids:
        Image.fromarray(voc["rgb"]).save(folder / file_name(i), quality=90)
    return folder
