"""The regions of an image: every mask SAM finds ("everything"), or the masks an existing COCO
file already has (``--regions``: polygons or RLE, matched to the images by file name).

A :class:`Region` holds its mask as compressed COCO RLE (a few hundred bytes instead of H*W) and
knows its own COCO annotation fields (``segmentation``, ``area``, ``bbox``, ``score``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from osprey.core.errors import MaskError, UsageError
from osprey.core.images import ImageHandle
from osprey.core.masks import decode_rle, decode_segmentation, encode_rle, mask_box
from osprey.label.inputs import ImageItem, read_coco

if TYPE_CHECKING:
    from sam_bridge import SamBridge


@dataclass(frozen=True)
class EverythingOptions:
    """SAM's automatic mask generator settings (see :func:`sam_bridge.segment_everything`).

    Meta's thresholds (0.88 predicted IoU, 0.95 stability) suit the released ViT-H; the tiny
    random SAM passes neither, so tests set them to 0."""

    points_per_side: int = 16
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    box_nms_thresh: float = 0.7
    min_area: int = 0
    crop_n_layers: int = 0

    def __post_init__(self) -> None:
        if self.points_per_side < 1:
            raise UsageError(f"points_per_side must be at least 1, got {self.points_per_side}")
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UsageError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.min_area < 0 or self.crop_n_layers < 0:
            raise UsageError("min_area and crop_n_layers must not be negative")


@dataclass(frozen=True, eq=False)
class Region:
    """One region: its mask (compressed RLE of the image's size) and where it came from."""

    rle: dict[str, Any]  # {"size": [H, W], "counts": str}
    area: int  # pixels
    box: tuple[int, int, int, int]  # tight (x0, y0, x1, y1), x1/y1 exclusive
    score: float | None = None  # SAM's predicted IoU ("everything" only)
    source_id: int | None = None  # the annotation id in the --regions file

    @classmethod
    def of_mask(cls, mask: np.ndarray, source_id: int | None = None) -> Region:
        """A region from a bool (H, W) mask (must not be empty)."""
        box = mask_box(mask)
        if box is None:
            raise MaskError("the mask is empty")
        return cls(encode_rle(mask), int(np.count_nonzero(mask)), box, None, source_id)

    def mask(self) -> np.ndarray:
        """bool (H, W)."""
        return decode_rle(self.rle)

    def annotation(self) -> dict[str, Any]:
        """The COCO fields of this region (``bbox`` is ``[x, y, width, height]``)."""
        x0, y0, x1, y1 = self.box
        ann = {"segmentation": self.rle, "area": self.area, "bbox": [x0, y0, x1 - x0, y1 - y0]}
        if self.score is not None:
            ann["score"] = round(self.score, 6)
        if self.source_id is not None:
            ann["source_id"] = self.source_id
        return ann


def sam_regions(
    sam: SamBridge, image: ImageHandle, options: EverythingOptions, max_regions: int | None
) -> list[Region]:
    """Every mask SAM finds in ``image``, largest first, at most ``max_regions`` of them."""
    found = sam.everything(image, **asdict(options))
    return [Region(m.rle, m.area, m.box, m.score) for m in found[:max_regions]]


def given_regions(
    entry: dict[str, Any], height: int, width: int
) -> tuple[list[Region], list[dict[str, Any]]]:
    """The regions of a ``--regions`` entry (see :class:`RegionIndex`) on an image of
    ``height`` x ``width``, in the file's order, and the annotations left out with the reason
    (an empty or undecodable mask). A size that differs from the image raises MaskError."""
    if (entry["height"], entry["width"]) != (height, width):
        raise MaskError(
            f"the --regions file says the image is {entry['width']}x{entry['height']}, "
            f"but it is {width}x{height}"
        )
    regions, dropped = [], []
    for ann in entry["annotations"]:
        try:
            mask = decode_segmentation(ann["segmentation"], height, width)
            regions.append(Region.of_mask(mask, ann["id"]))
        except (ValueError, TypeError) as exc:  # MaskError, or a malformed polygon
            dropped.append({"source_id": ann["id"], "reason": str(exc)})
    return regions, dropped


class RegionIndex:
    """The masks of a COCO file by image file name: ``{"height", "width", "annotations": [{"id",
    "segmentation"}]}`` per image. Images are matched by ``file_name`` or, when that fails, by the
    base name if it is unique in the file."""

    def __init__(self, entries: dict[str, dict[str, Any]]):
        self.entries = entries
        by_base: dict[str, list[str]] = {}
        for name in entries:
            by_base.setdefault(PurePosixPath(name).name, []).append(name)
        self._by_base = {base: names[0] for base, names in by_base.items() if len(names) == 1}

    @classmethod
    def load(cls, path: str) -> RegionIndex:
        data = read_coco(path)
        images, anns = data.get("images"), data.get("annotations")
        if not isinstance(images, list) or not isinstance(anns, list):
            raise UsageError(f"{path} needs 'images' and 'annotations' lists (a COCO JSON)")
        by_id: dict[int, dict[str, Any]] = {}
        entries: dict[str, dict[str, Any]] = {}
        for n, image in enumerate(images):
            entry = _entry(image, path, n)
            by_id[image["id"]] = entries[image["file_name"]] = entry
        for n, ann in enumerate(anns):
            if not isinstance(ann, dict) or "segmentation" not in ann:
                raise UsageError(f"{path}: annotations[{n}] has no 'segmentation'")
            if ann.get("image_id") in by_id:
                ann_id = ann.get("id", n + 1)
                by_id[ann["image_id"]]["annotations"].append(
                    {"id": ann_id, "segmentation": ann["segmentation"]}
                )
        return cls(entries)

    def find(self, file_name: str) -> dict[str, Any] | None:
        if file_name in self.entries:
            return self.entries[file_name]
        name = self._by_base.get(PurePosixPath(file_name).name)
        return self.entries[name] if name is not None else None

    def attach(self, items: list[ImageItem]) -> list[ImageItem]:
        """``items`` with their entries (None where the file has none)."""
        return [replace(item, regions=self.find(item.file_name)) for item in items]


def _entry(image: Any, path: str, n: int) -> dict[str, Any]:
    keys = ("id", "file_name", "height", "width")
    if not isinstance(image, dict) or any(k not in image for k in keys):
        raise UsageError(f"{path}: images[{n}] needs {', '.join(keys)}")
    h, w = image["height"], image["width"]
    if not all(isinstance(v, int) and v > 0 for v in (h, w)):
        raise UsageError(f"{path}: images[{n}] has a bad height/width ({h}, {w})")
    return {"height": h, "width": w, "annotations": []}
