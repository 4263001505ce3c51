"""Segmentation metrics and the Mask2Former/FC-CLIP post-processing of the open-vocabulary
benchmark, in numpy (no detectron2).

Representation: the proposals of one image are the ground-truth panoptic segments, which never
overlap, so they are held as one label map ``(H, W)`` int (query index, ``-1`` = no proposal)
instead of a ``(Q, H, W)`` stack. On disjoint binary masks the reference's per-pixel
``einsum``/``argmax`` reduce exactly to indexing by that map (the tests check this against the
dense formulas).

Metrics:

* PQ / SQ / RQ as panopticapi's ``pq_compute`` (IoU > 0.5 matching, void and crowd handling,
  averaged over the categories seen).
* mIoU as detectron2's ``SemSegEvaluator`` (confusion matrix over the dataset, ignore label 255,
  averaged over the classes present in the ground truth).
* Mask AP as COCO ``segm`` AP@[.5:.95] with pycocotools, on the thing classes.
"""

from __future__ import annotations

import contextlib
import io
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

IGNORE = 255
VOID = 0  # panoptic id of unlabeled pixels (panopticapi convention)
TOP_K = 100  # instance predictions kept per image (Mask2Former)

# ---------------------------------------------------------------------------------------------
# panoptic PNG ids


def rgb2id(color: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 panoptic PNG -> (H, W) int64 ids: R + 256·G + 256²·B."""
    color = np.asarray(color)
    if color.ndim == 2:
        return color.astype(np.int64)
    c = color.astype(np.int64)
    return c[..., 0] + 256 * c[..., 1] + 256 * 256 * c[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """(H, W) ids -> (H, W, 3) uint8, the inverse of :func:`rgb2id`."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Mask2Former / FC-CLIP post-processing of per-query class scores


def mask_class_probs(cosines: np.ndarray) -> np.ndarray:
    """(N, K) raw cosines of N real queries -> (N, K + 1) class probabilities with a void column.

    The reference: ``p = softmax(cos)`` (no temperature), ``log(cat(p·(1 − void), void) + 1e-8)``
    with void = 0 for real queries, then softmax again inside each inference step.
    """
    cos = np.asarray(cosines, dtype=np.float64)
    e = np.exp(cos - cos.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    logits = np.log(np.concatenate([p, np.zeros((len(p), 1))], axis=1) + 1e-8)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def semantic_inference(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per-pixel class (H, W) int64: argmax over classes of ``Σ_q probs[q] · mask_q``.

    Pixels outside every proposal have an all-zero score vector, whose argmax is class 0.
    """
    num_classes = probs.shape[1] - 1
    per_query = probs[:, :num_classes].argmax(axis=1) if len(probs) else np.zeros(0, np.int64)
    out = np.zeros(labels.shape, dtype=np.int64)
    covered = labels >= 0
    out[covered] = per_query[labels[covered]]
    return out


def panoptic_inference(
    labels: np.ndarray, probs: np.ndarray, things: Iterable[int]
) -> tuple[np.ndarray, list[dict]]:
    """Predicted panoptic map (H, W) int32 (0 = void) and its ``segments_info``.

    Each query takes its arg-max class; void-class or zero-score queries are dropped; a query
    keeps its pixels if at least 80 % of its mask survives the per-pixel arg-max (always true for
    disjoint proposals); stuff queries of the same class are merged into one segment.
    """
    things = set(things)
    num_classes = probs.shape[1] - 1
    pan = np.zeros(labels.shape, dtype=np.int32)
    segments: list[dict] = []
    stuff_ids: dict[int, int] = {}
    for q in range(len(probs)):
        cls, score = int(probs[q].argmax()), float(probs[q].max())
        mask = labels == q
        if cls == num_classes or score <= 0 or not mask.any():
            continue
        if cls not in things and cls in stuff_ids:
            pan[mask] = stuff_ids[cls]
            continue
        seg_id = len(segments) + 1
        if cls not in things:
            stuff_ids[cls] = seg_id
        pan[mask] = seg_id
        segments.append({"id": seg_id, "category_id": cls, "isthing": cls in things})
    return pan, segments


def instance_inference(
    probs: np.ndarray, things: Iterable[int], top_k: int = TOP_K
) -> list[tuple[int, int, float]]:
    """Top-``top_k`` (query, class, score) pairs over all classes, then only thing classes kept."""
    things = set(things)
    scores = probs[:, :-1]
    flat = scores.ravel()
    k = min(top_k, flat.size)
    order = np.argsort(-flat, kind="stable")[:k]
    num_classes = scores.shape[1]
    picks = [(int(i // num_classes), int(i % num_classes), float(flat[i])) for i in order]
    return [p for p in picks if p[1] in things]


# ---------------------------------------------------------------------------------------------
# PQ (panopticapi's pq_compute, per image accumulation)


@dataclass
class _Cat:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    iou: float = 0.0


@dataclass
class PanopticQuality:
    """Accumulates PQ statistics over images; ``summary()`` gives PQ/SQ/RQ ×100."""

    things: set[int]
    stats: dict[int, _Cat] = field(default_factory=lambda: defaultdict(_Cat))

    def update(
        self,
        gt: np.ndarray,
        gt_segments: dict[int, tuple[int, bool]],
        pred: np.ndarray,
        pred_segments: dict[int, int],
    ) -> None:
        """``gt``/``pred``: (H, W) panoptic ids (0 = void); ``gt_segments``: id -> (class,
        iscrowd); ``pred_segments``: id -> class. Ids in a map but not listed count as void."""
        gt = np.where(np.isin(gt, list(gt_segments)), gt, VOID).astype(np.int64)
        pred = np.where(np.isin(pred, list(pred_segments)), pred, VOID).astype(np.int64)
        offset = int(max(gt.max(initial=0), pred.max(initial=0))) + 1
        pairs, counts = np.unique(gt * offset + pred, return_counts=True)
        inter = {(int(p // offset), int(p % offset)): int(c) for p, c in zip(pairs, counts)}
        gt_area = defaultdict(int)
        pred_area = defaultdict(int)
        for (g, p), c in inter.items():
            gt_area[g] += c
            pred_area[p] += c
        self._match(inter, gt_area, pred_area, gt_segments, pred_segments)

    def _match(self, inter, gt_area, pred_area, gt_segments, pred_segments) -> None:
        gt_matched, pred_matched = set(), set()
        for (g, p), i in inter.items():
            if g not in gt_segments or p not in pred_segments or gt_area[g] == 0:
                continue
            cls, crowd = gt_segments[g]
            if crowd or cls != pred_segments[p]:
                continue
            union = pred_area[p] + gt_area[g] - i - inter.get((VOID, p), 0)
            iou = i / union
            if iou > 0.5:
                self.stats[cls].tp += 1
                self.stats[cls].iou += iou
                gt_matched.add(g)
                pred_matched.add(p)
        crowd_of = {}
        for g, (cls, crowd) in gt_segments.items():
            if g in gt_matched or gt_area[g] == 0:
                continue
            if crowd:
                crowd_of[cls] = g
            else:
                self.stats[cls].fn += 1
        for p, cls in pred_segments.items():
            if p in pred_matched or pred_area[p] == 0:
                continue
            ignored = inter.get((VOID, p), 0) + inter.get((crowd_of.get(cls, -1), p), 0)
            if ignored / pred_area[p] > 0.5:
                continue
            self.stats[cls].fp += 1

    def summary(self) -> dict[str, float]:
        out = {}
        for name, keep in (("", None), ("_th", True), ("_st", False)):
            pq = sq = rq = 0.0
            n = 0
            for cls, s in self.stats.items():
                if keep is not None and (cls in self.things) != keep:
                    continue
                if s.tp + s.fp + s.fn == 0:
                    continue
                n += 1
                pq += s.iou / (s.tp + 0.5 * s.fp + 0.5 * s.fn)
                sq += s.iou / s.tp if s.tp else 0.0
                rq += s.tp / (s.tp + 0.5 * s.fp + 0.5 * s.fn)
            nan = float("nan")
            out |= {f"PQ{name}": 100 * pq / n if n else nan}
            out |= {
                f"SQ{name}": 100 * sq / n if n else nan,
                f"RQ{name}": 100 * rq / n if n else nan,
            }
        return out


# ---------------------------------------------------------------------------------------------
# mIoU (detectron2 SemSegEvaluator)


class ConfusionMatrix:
    """Pixel confusion over a dataset; ground-truth pixels equal to ``ignore`` are skipped."""

    def __init__(self, num_classes: int, ignore: int = IGNORE):
        self.num_classes = num_classes
        self.ignore = ignore
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)  # [pred, gt]

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        valid = gt != self.ignore
        p, g = pred[valid].astype(np.int64), gt[valid].astype(np.int64)
        if ((g < 0) | (g >= self.num_classes)).any():
            raise ValueError(f"ground-truth label outside 0..{self.num_classes - 1} and not ignore")
        self.matrix += np.bincount(p * self.num_classes + g, minlength=self.num_classes**2).reshape(
            self.num_classes, self.num_classes
        )

    def summary(self) -> dict[str, float]:
        tp = np.diag(self.matrix).astype(float)
        pos_gt = self.matrix.sum(axis=0).astype(float)
        pos_pred = self.matrix.sum(axis=1).astype(float)
        present = pos_gt > 0
        if not present.any():
            return {"mIoU": float("nan"), "pACC": float("nan")}
        iou = tp[present] / (pos_gt + pos_pred - tp)[present]
        return {"mIoU": 100 * float(iou.mean()), "pACC": 100 * float(tp.sum() / pos_gt.sum())}


# ---------------------------------------------------------------------------------------------
# mask AP (pycocotools)


class MaskAP:
    """Collects ground-truth instances and scored mask detections; ``summary()`` runs COCOeval."""

    def __init__(self, thing_classes: Iterable[int]):
        self.things = sorted(set(thing_classes))
        self.images: list[dict] = []
        self.gts: list[dict] = []
        self.dets: list[dict] = []

    def add_image(self, height: int, width: int) -> int:
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "height": height, "width": width})
        return image_id

    def add_gt(self, image_id: int, mask: np.ndarray, cls: int, iscrowd: bool = False) -> None:
        rle, area, bbox = _rle(mask)
        self.gts.append(
            {
                "id": len(self.gts) + 1,
                "image_id": image_id,
                "category_id": cls,
                "segmentation": rle,
                "area": area,
                "bbox": bbox,
                "iscrowd": int(iscrowd),
            }
        )

    def add_detection(self, image_id: int, mask: np.ndarray, cls: int, score: float) -> None:
        rle, _, _ = _rle(mask)
        self.dets.append(
            {"image_id": image_id, "category_id": cls, "segmentation": rle, "score": score}
        )

    def summary(self) -> dict[str, float]:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        nan = float("nan")
        if not self.gts or not self.dets:
            return {"AP": nan if not self.gts else 0.0, "AP50": nan if not self.gts else 0.0}
        gt = COCO()
        gt.dataset = {
            "info": {},
            "licenses": [],
            "images": self.images,
            "annotations": self.gts,
            "categories": [{"id": c, "name": str(c)} for c in self.things],
        }
        with contextlib.redirect_stdout(io.StringIO()):
            gt.createIndex()
            dt = gt.loadRes(self.dets)
            ev = COCOeval(gt, dt, iouType="segm")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        ap, ap50 = float(ev.stats[0]), float(ev.stats[1])
        return {"AP": 100 * ap if ap >= 0 else nan, "AP50": 100 * ap50 if ap50 >= 0 else nan}


def _rle(mask: np.ndarray) -> tuple[dict, int, list[float]]:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    area = int(mask_utils.area(rle))
    bbox = [float(v) for v in mask_utils.toBbox(rle)]
    rle["counts"] = rle["counts"].decode()
    return rle, area, bbox
