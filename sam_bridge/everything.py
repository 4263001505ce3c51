"""Segment everything: SAM's automatic mask generator over a grid of points, plus a helper that
picks the smallest mask under a click.

The generator is segment_anything's own ``SamAutomaticMaskGenerator`` for both families (the same
grid, thresholds, stability score, NMS and cleaning, so the options mean the same with SAM 2.1);
it is handed a predictor whose ``set_image`` takes the full image's embedding from the bridge's
cache, so "everything" after a few clicks (or clicks after "everything") encode the image once.
SAM 2's predictor decodes the grid with the family's own decoder. Crops (``crop_n_layers > 0``)
are encoded afresh and not cached, so they never push users' images out of the cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Protocol

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor

from osprey.core.images import ImageLike
from osprey.core.masks import decode_rle, rle_area, rle_box
from sam_bridge.errors import SamBridgeError

# The generator upsamples every mask of a batch of grid points to the image's size in float32:
# 64 points of a 12 MP photo are 9 GB. At most this many bytes of them at once.
BATCH_BYTES = 256 * 2**20


class SamBridge(Protocol):
    """What segment everything uses of :class:`sam_bridge.predictor.SamBridge` (which owns this
    module: the bridge imports it, never the other way round)."""

    model: Any
    device: torch.device
    family: Any

    def prepare(self, image: ImageLike) -> np.ndarray: ...

    def _embed(self, rgb: Any, key: Any = None, cache: bool = True) -> Any: ...


@dataclass(frozen=True, eq=False)
class AutoMask:
    """One mask found by "segment everything"."""

    rle: dict[str, Any]  # compressed COCO RLE {"size": [H, W], "counts": str}, JSON-ready
    area: int  # pixels
    box: tuple[int, int, int, int]  # tight (x0, y0, x1, y1), x1/y1 exclusive
    score: float  # SAM's predicted IoU
    stability: float  # SAM's stability score (IoU of the mask at two logit cut-offs)
    point: tuple[float, float]  # the grid point (x, y) that produced it

    @property
    def mask(self) -> np.ndarray:
        """The mask as bool (H, W), decoded on each access (results hold only the RLE)."""
        return decode_rle(self.rle)


# ---------------------------------------------------------------------------------------------
# helpers


class _CachedPredictor(SamPredictor):
    """The SamPredictor the generator drives: ``set_image`` asks the bridge for the embedding
    (cached for the full image, encoded afresh for crops)."""

    def __init__(self, bridge: SamBridge, full_shape: tuple[int, ...]) -> None:
        super().__init__(bridge.model)
        self._bridge = bridge
        self._full_shape = full_shape

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        emb = self._bridge._embed(image, cache=image.shape == self._full_shape)
        self.reset_image()
        self.features = emb.features  # SamPredictor's own fields for its "current image"
        self.original_size = emb.original_size
        self.input_size = emb.input_size
        self.is_image_set = True


class _Sam2GridPredictor:
    """What the generator asks of its predictor (``set_image``, ``transform``, ``predict_torch``,
    ``model.mask_threshold``, ``device``), served by a SAM 2 bridge's family and cache."""

    def __init__(self, bridge: SamBridge, full_shape: tuple[int, ...]) -> None:
        self._bridge = bridge
        self._full_shape = full_shape
        self._family = bridge.family
        self.model = SimpleNamespace(mask_threshold=self._family.mask_threshold)
        self.transform = self._family.transform
        self.device = bridge.device
        self._emb = None

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        self._emb = self._bridge._embed(image, cache=image.shape == self._full_shape)

    def reset_image(self) -> None:
        self._emb = None

    def predict_torch(
        self, point_coords: torch.Tensor, point_labels: torch.Tensor, boxes: Any = None,
        mask_input: Any = None, multimask_output: bool = True, return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        """B one-point prompts, (B, 1, 2) in the 1024 frame with labels (B, 1) -> masks (B, C,
        H, W) at the image's size (logits with ``return_logits``), IoUs (B, C), low-res logits."""
        prompts = {"input_points": point_coords[None].float(), "input_labels": point_labels[None].int(),
                   "input_boxes": None, "input_masks": None}  # fmt: skip
        low, scores = self._family.decode_logits(self._emb, prompts, multimask_output)
        masks = self._family.upscale(low, self._emb.original_size)
        return (masks if return_logits else masks > self.model.mask_threshold), scores, low


def _frame_of(bridge: SamBridge) -> SimpleNamespace:
    """segment_anything's generator builds a SamPredictor of its model when it is made, which
    reads only the input size; it is replaced right after (``_predictor_for``)."""
    return SimpleNamespace(image_encoder=SimpleNamespace(img_size=bridge.family.transform.size))


def _predictor_for(bridge: SamBridge, full_shape: tuple[int, ...]) -> Any:
    if bridge.family.name == "sam2":
        return _Sam2GridPredictor(bridge, full_shape)
    return _CachedPredictor(bridge, full_shape)


def _check_options(
    points_per_side: int,
    pred_iou_thresh: float,
    stability_score_thresh: float,
    min_area: int,
    crop_n_layers: int,
) -> None:
    if points_per_side < 1:
        raise SamBridgeError(f"points_per_side must be at least 1, got {points_per_side}")
    for name, value in (
        ("pred_iou_thresh", pred_iou_thresh),
        ("stability_score_thresh", stability_score_thresh),
    ):
        if not 0.0 <= value <= 1.0:
            raise SamBridgeError(f"{name} must be in [0, 1], got {value}")
    if min_area < 0 or crop_n_layers < 0:
        raise SamBridgeError("min_area and crop_n_layers must not be negative")


def _auto_mask(record: dict[str, Any]) -> AutoMask | None:
    rle = record["segmentation"]
    area = rle_area(rle)
    if area == 0:
        return None
    x, y = record["point_coords"][0]
    return AutoMask(
        rle=rle,
        area=area,
        box=rle_box(rle),
        score=float(record["predicted_iou"]),
        stability=float(record["stability_score"]),
        point=(float(x), float(y)),
    )


# ---------------------------------------------------------------------------------------------
# public API


def _batch(family_default: int, shape: tuple[int, ...]) -> int:
    """Grid points decoded together: the family's number, but no more than keeps the batch's
    full-size float masks (three per point) within ``BATCH_BYTES``."""
    per_point = 3 * 4 * int(shape[0]) * int(shape[1])
    return max(1, min(family_default, BATCH_BYTES // per_point))


def segment_everything(
    bridge: SamBridge,
    image: ImageLike,
    *,
    points_per_side: int = 16,
    points_per_batch: int | None = None,
    pred_iou_thresh: float = 0.88,
    stability_score_thresh: float = 0.95,
    min_area: int = 0,
    crop_n_layers: int = 0,
    box_nms_thresh: float = 0.7,
) -> list[AutoMask]:
    """Every mask SAM finds from a ``points_per_side``² grid of clicks, largest first.

    Thresholds are SAM's (defaults tuned by Meta for vit_h; lower them for vit_b or to see more).
    ``points_per_side`` defaults to 16 (SAM's 32 costs 4x the decoder time; on a 2-core CPU 16
    already takes tens of seconds). ``min_area``: holes and islands below it are cleaned (SAM's
    ``min_mask_region_area``) and masks below it dropped. ``crop_n_layers`` > 0 adds SAM's
    zoomed-in crops (each one an encoder run). Empty masks are never returned. Other users'
    clicks do not wait for it (it holds the encode lock only while a crop is encoded).
    ``points_per_batch``: grid points decoded together (default: the family's, 64 for SAM 1,
    16 for SAM 2, whose decoder repeats the image's high-resolution maps per point; fewer for a
    large photo, whose three full-size float masks per point would otherwise take gigabytes).
    """
    _check_options(
        points_per_side, pred_iou_thresh, stability_score_thresh, min_area, crop_n_layers
    )
    rgb = bridge.prepare(image)
    sam1 = bridge.family.name == "sam1"
    generator = SamAutomaticMaskGenerator(
        bridge.model if sam1 else _frame_of(bridge),
        points_per_side=points_per_side,
        points_per_batch=points_per_batch or _batch(bridge.family.points_per_batch, rgb.shape),
        pred_iou_thresh=pred_iou_thresh,
        stability_score_thresh=stability_score_thresh,
        box_nms_thresh=box_nms_thresh,
        crop_n_layers=crop_n_layers,
        min_mask_region_area=min_area,
        output_mode="coco_rle",
    )
    generator.predictor = _predictor_for(bridge, rgb.shape)
    with torch.inference_mode():
        records = generator.generate(rgb)
    masks = [m for m in map(_auto_mask, records) if m is not None and m.area >= min_area]
    return sorted(masks, key=lambda m: m.area, reverse=True)


def mask_at(masks: Sequence[AutoMask], x: float, y: float) -> AutoMask | None:
    """The smallest of ``masks`` that contains pixel (x, y), or None if none does.

    Checks boxes first and decodes only masks whose box holds the point, smallest first.
    """
    if not masks:
        return None
    height, width = (int(v) for v in masks[0].rle["size"])
    if not (np.isfinite([x, y]).all() and 0 <= x < width and 0 <= y < height):
        raise SamBridgeError(f"point ({x}, {y}) is outside the {width}x{height} image")
    col, row = int(x), int(y)
    inside_box = [m for m in masks if m.box[0] <= col < m.box[2] and m.box[1] <= row < m.box[3]]
    for m in sorted(inside_box, key=lambda m: m.area):
        if m.mask[row, col]:
            return m
    return None
