"""Open-vocabulary segmentation on Cityscapes and ADE20K-150 with ground-truth masks as
proposals (paper Table 2).

Every ground-truth panoptic segment of an image (at most 300) is described by the model with the
open-vocabulary prompt. The description is matched to each class with all-MiniLM-L6-v2: cosine
to "There is a {synonym} in the scene." maximised over the class's synonyms. These scores go
through the Mask2Former/FC-CLIP post-processing (:mod:`.panoptic_metrics`) to a semantic map
(mIoU), a panoptic map (PQ) and top-100 thing instances (mask AP).

Input: the standard COCO panoptic format, as written by cityscapesScripts' ``createPanopticImgs``
and Mask2Former's ``prepare_ade20k_pan_seg.py``: a JSON with ``images``, ``annotations`` (one per
image: ``image_id``, ``file_name`` of the PNG, ``segments_info``: ``id``, ``category_id``,
``iscrowd``) and ``categories`` (``id``, ``isthing``, in class order), plus a folder of RGB PNGs
whose pixels encode segment ids (R + 256 G + 256² B, 0 = void).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from osprey.core import prompt_strings

from .common import (
    DataError,
    ImageTask,
    Query,
    missing_files,
    read_json,
    resolve_image,
    strip_answer,
)
from .metrics import embed
from .ovseg_classes import TEMPLATE, synonyms
from .panoptic_metrics import (
    IGNORE,
    ConfusionMatrix,
    MaskAP,
    PanopticQuality,
    instance_inference,
    mask_class_probs,
    panoptic_inference,
    rgb2id,
    semantic_inference,
)

MESSAGE = prompt_strings.BEGIN_DOT + prompt_strings.QUESTION_OPEN_VOCAB
MAX_PROPOSALS = 300

# detectron2's $DETECTRON2_DATASETS layout: (images, panoptic json, semantic labels)
LAYOUT = {
    "cityscapes": (
        "cityscapes/leftImg8bit/val",
        "cityscapes/gtFine/cityscapes_panoptic_val.json",
        "cityscapes/gtFine/val",
    ),
    "ade20k": (
        "ADEChallengeData2016/images/validation",
        "ADEChallengeData2016/ade20k_panoptic_val.json",
        "ADEChallengeData2016/annotations_detectron2/validation",
    ),
}
SOURCE = {
    "cityscapes": "Cityscapes gtFine + leftImg8bit (https://www.cityscapes-dataset.com), panoptic "
    "files made by cityscapesScripts' preparation/createPanopticImgs.py",
    "ade20k": "ADEChallengeData2016 (http://sceneparsing.csail.mit.edu), panoptic files made by "
    "Mask2Former's datasets/prepare_ade20k_pan_seg.py (semantic labels: prepare_ade20k_sem_seg.py)",
}

# ---------------------------------------------------------------------------------------------
# dataset


@dataclass(frozen=True)
class Vocabulary:
    """Classes in contiguous order: synonyms, dataset category ids and which are things."""

    synonyms: list[list[str]]
    category_ids: list[int]
    things: frozenset[int]

    @property
    def names(self) -> list[str]:
        """First synonym of each class (the Cityscapes 'car,cars' KeyError fix, issue #16)."""
        return [s[0] for s in self.synonyms]

    def contiguous(self) -> dict[int, int]:
        return {cid: i for i, cid in enumerate(self.category_ids)}


@dataclass(frozen=True)
class PanopticImage:
    image_id: str
    image_path: Path
    png_path: Path
    segments: dict[int, tuple[int, bool]]  # segment id -> (contiguous class, iscrowd)
    semantic_path: Path | None


def vocabulary(benchmark: str, categories: Sequence[dict]) -> Vocabulary:
    """The benchmark's synonym table aligned with the panoptic JSON's ``categories``."""
    classes = synonyms(benchmark)
    if len(categories) != len(classes):
        raise DataError(
            f"the panoptic JSON lists {len(categories)} categories, {benchmark} has "
            f"{len(classes)} classes: is this the {benchmark} panoptic file?"
        )
    ids = [int(c["id"]) for c in categories]
    things = frozenset(i for i, c in enumerate(categories) if c.get("isthing"))
    return Vocabulary(classes, ids, things)


def _find_image(root: Path, image_id: str, file_name: str | None) -> Path:
    names = ([file_name] if file_name else []) + [
        f"{image_id}_leftImg8bit.png",
        f"{image_id}.jpg",
        f"{image_id}.png",
    ]
    paths = [resolve_image(root, n) for n in names]
    return next((p for p in paths if p.is_file()), paths[0])


def _find_semantic(root: Path | None, image_id: str) -> Path | None:
    if root is None:
        return None
    names = [f"{image_id}.png", f"{image_id}_gtFine_labelTrainIds.png"]
    paths = [resolve_image(root, n) for n in names]
    return next((p for p in paths if p.is_file()), None)


def load(
    benchmark: str,
    panoptic_json: Path,
    images: Path,
    panoptic_root: Path | None = None,
    semantic_root: Path | None = None,
    limit: int | None = None,
) -> tuple[Vocabulary, list[PanopticImage]]:
    """Read the panoptic JSON; PNGs default to the folder named like the JSON without ``.json``."""
    data = read_json(panoptic_json, f"{benchmark} panoptic JSON", SOURCE[benchmark])
    vocab = vocabulary(benchmark, data.get("categories", []))
    to_contiguous = vocab.contiguous()
    panoptic_root = panoptic_root or Path(panoptic_json).with_suffix("")
    file_of = {str(im["id"]): im.get("file_name") for im in data.get("images", [])}
    out = []
    for ann in data["annotations"][:limit] if limit else data["annotations"]:
        image_id = str(ann["image_id"])
        segments = {}
        for s in ann["segments_info"]:
            if int(s["category_id"]) not in to_contiguous:
                raise DataError(f"{image_id}: category {s['category_id']} is not in the JSON")
            segments[int(s["id"])] = (to_contiguous[int(s["category_id"])], bool(s.get("iscrowd")))
        out.append(
            PanopticImage(
                image_id,
                _find_image(images, image_id, file_of.get(image_id)),
                Path(panoptic_root) / ann["file_name"],
                segments,
                _find_semantic(semantic_root, image_id),
            )
        )
    missing = [p.png_path for p in out if not p.png_path.is_file()]
    if missing:
        raise missing_files("panoptic PNGs", missing, SOURCE[benchmark])
    return vocab, out


@functools.lru_cache(maxsize=1)
def read_panoptic(path: Path) -> np.ndarray:
    """(H, W) int64 segment ids of a panoptic PNG (the last one read is cached)."""
    return rgb2id(np.asarray(Image.open(path).convert("RGB")))


def proposals(item: PanopticImage) -> list[int]:
    """Segment ids used as proposals: in id order, at most 300 (the reference's query count)."""
    return sorted(item.segments)[:MAX_PROPOSALS]


def build_tasks(items: Sequence[PanopticImage]) -> list[ImageTask]:
    """One task per image, one query per proposal (id ``image_id:segment_id``)."""
    tasks = []
    for item in items:
        queries = [
            Query(
                id=f"{item.image_id}:{seg}",
                message=MESSAGE,
                masks=lambda image, p=item.png_path, s=seg: [read_panoptic(p) == s],
                meta={"image_id": item.image_id, "segment_id": seg},
            )
            for seg in proposals(item)
        ]
        tasks.append(ImageTask(item.image_path, queries))
    return tasks


# ---------------------------------------------------------------------------------------------
# scoring


class ClassMatcher:
    """Cosine of a description to each class: max over "There is a {synonym} in the scene."."""

    def __init__(self, sentence_model: Any, vocab: Vocabulary):
        self.model = sentence_model
        sentences = [TEMPLATE.format(s) for syns in vocab.synonyms for s in syns]
        self.owner = np.repeat(np.arange(len(vocab.synonyms)), [len(s) for s in vocab.synonyms])
        self.class_vecs = embed(sentence_model, sentences)
        self.num_classes = len(vocab.synonyms)

    def cosines(self, answers: Sequence[str]) -> np.ndarray:
        """(N, K) class scores for N cleaned answers."""
        if not answers:
            return np.zeros((0, self.num_classes))
        sims = embed(self.model, answers) @ self.class_vecs.T
        out = np.full((len(answers), self.num_classes), -np.inf)
        for k in range(self.num_classes):
            out[:, k] = sims[:, self.owner == k].max(axis=1)
        return out


def _semantic_gt(item: PanopticImage, ids: np.ndarray) -> np.ndarray:
    if item.semantic_path is not None:
        return np.asarray(Image.open(item.semantic_path)).astype(np.int64)
    sem = np.full(ids.shape, IGNORE, dtype=np.int64)
    for seg, (cls, _) in item.segments.items():
        sem[ids == seg] = cls
    return sem


def segment_classes(items: Sequence[PanopticImage], records: Sequence[dict]) -> list[int]:
    """The ground-truth contiguous class of each stored record's segment."""
    by_id = {item.image_id: item for item in items}
    return [by_id[str(r["image_id"])].segments[int(r["segment_id"])][0] for r in records]


def _class_scores(records: list[dict], matcher: ClassMatcher | None) -> np.ndarray:
    """(N, K) scores whose softmax is the class distribution: the log-probabilities of ranked
    records (``--scoring likelihood``), else the sentence-encoder cosines of the answers."""
    if matcher is None:
        return np.log(np.maximum(np.array([r["probs"] for r in records], np.float64), 1e-300))
    return matcher.cosines([strip_answer(r["answer"]) for r in records])


def score(
    items: Sequence[PanopticImage],
    records: dict[str, dict],
    vocab: Vocabulary,
    sentence_model: Any,
) -> dict[str, float]:
    """PQ (all / things / stuff), mask AP and mIoU (×100) from stored answers: generated text
    matched to the classes with ``sentence_model``, or (``--scoring likelihood``, records with
    ``probs``; ``sentence_model`` unused) the ranked class probabilities themselves."""
    from tqdm import tqdm

    ranked = bool(records) and "probs" in next(iter(records.values()))
    matcher = None if ranked else ClassMatcher(sentence_model, vocab)
    pq, conf, ap = (
        PanopticQuality(set(vocab.things)),
        ConfusionMatrix(len(vocab.synonyms)),
        MaskAP(vocab.things),
    )
    for item in tqdm(items, desc="scoring", unit="img", dynamic_ncols=True):
        segs = proposals(item)
        qids = [f"{item.image_id}:{s}" for s in segs]
        if any(q not in records for q in qids):
            raise DataError(
                f"{item.image_id}: {sum(q not in records for q in qids)} segments "
                "have no prediction; finish the run or use --limit"
            )
        ids = read_panoptic(item.png_path)
        labels = np.full(ids.shape, -1, dtype=np.int64)
        for q, seg in enumerate(segs):
            labels[ids == seg] = q
        probs = mask_class_probs(_class_scores([records[q] for q in qids], matcher))
        _score_image(item, ids, labels, probs, vocab, pq, conf, ap)
    return pq.summary() | ap.summary() | conf.summary() | {"images": len(items)}


def _score_image(item, ids, labels, probs, vocab, pq, conf, ap) -> None:
    sem_gt = _semantic_gt(item, ids)
    if sem_gt.shape != ids.shape:
        raise DataError(f"{item.semantic_path}: {sem_gt.shape} vs panoptic {ids.shape}")
    conf.update(semantic_inference(labels, probs), sem_gt)
    pan, segments = panoptic_inference(labels, probs, vocab.things)
    pq.update(ids, item.segments, pan, {s["id"]: s["category_id"] for s in segments})
    image_id = ap.add_image(*ids.shape)
    for seg, (cls, crowd) in item.segments.items():
        if cls in vocab.things:
            ap.add_gt(image_id, ids == seg, cls, crowd)
    for q, cls, s in instance_inference(probs, vocab.things):
        ap.add_detection(image_id, labels == q, cls, s)
