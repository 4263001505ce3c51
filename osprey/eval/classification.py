"""Referring object classification on LVIS and PACO (paper Table 3).

Data: ``lvis_val_1k_category.json`` / ``paco_val_1k_category.json`` from the Hugging Face dataset
``sunshine-lwt/Osprey-ValData``: a list of records ``{file_name, height, width, categories: [name],
annotations: [{segmentation}]}`` (polygons or RLE), images from COCO (train2017/val2017 in one
folder). One query per object with the category prompt; the answer is cleaned as the reference
does (strip, ``</s>``, text after the first colon, ``.``/``:``/``,`` to spaces) and scored with
Semantic Similarity and Semantic IoU against the ground-truth name (``_`` and ``:`` to spaces).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from osprey.core import prompt_strings
from osprey.core.masks import decode_segmentation

from .common import DataError, ImageTask, Query, after_colon, read_json, resolve_image, strip_answer
from .metrics import semantic_iou, semantic_similarity

SOURCE = (
    "{name} from the Hugging Face dataset sunshine-lwt/Osprey-ValData "
    "(https://huggingface.co/datasets/sunshine-lwt/Osprey-ValData); images from COCO 2017"
)
FILES = {"lvis": "lvis_val_1k_category.json", "paco": "paco_val_1k_category.json"}
MESSAGE = prompt_strings.BEGIN + prompt_strings.QUESTION_CATEGORY


def normalise_category(name: str) -> str:
    """Ground-truth name as the reference compares it: ``_`` and ``:`` become spaces."""
    return name.replace("_", " ").replace(":", " ")


def normalise_prediction(answer: str) -> str:
    """Raw answer -> compared text: strip, drop ``</s>``, keep the text after the first colon,
    then ``.``, ``:`` and ``,`` become spaces."""
    text = after_colon(strip_answer(answer))
    for ch in ".:,":
        text = text.replace(ch, " ")
    return text


def _mask_fn(segmentation: Any, h: int, w: int):
    return lambda image: [decode_segmentation(segmentation, h, w)]


def build_tasks(records: Sequence[dict], images: Path, benchmark: str) -> list[ImageTask]:
    """One :class:`ImageTask` per record, one query per object (id ``record:object:file``)."""
    tasks = []
    for r, rec in enumerate(records):
        cats, anns = rec.get("categories"), rec.get("annotations")
        if cats is None or anns is None or len(cats) != len(anns):
            raise DataError(
                f"{benchmark} record {r} ({rec.get('file_name')}): categories and "
                "annotations must be lists of the same length"
            )
        h, w = int(rec["height"]), int(rec["width"])
        queries = [
            Query(
                id=f"{r}:{i}:{rec['file_name']}",
                message=MESSAGE,
                masks=_mask_fn(ann["segmentation"], h, w),
                meta={"category": cat},
            )
            for i, (cat, ann) in enumerate(zip(cats, anns))
        ]
        tasks.append(ImageTask(resolve_image(images, rec["file_name"]), queries))
    return tasks


def load(annotations: Path, images: Path, benchmark: str, limit: int | None) -> list[ImageTask]:
    """Read the benchmark JSON and build its tasks (the first ``limit`` records if given)."""
    source = SOURCE.format(name=FILES[benchmark])
    records = read_json(annotations, f"{benchmark} annotations", source)
    if not isinstance(records, list):
        raise DataError(f"{annotations}: expected a JSON list of image records")
    return build_tasks(records[:limit] if limit else records, images, benchmark)


def score(records: Sequence[dict], sentence_model: Any) -> dict[str, float]:
    """SS and S-IoU (×100) over stored ``{"answer", "category"}`` records."""
    if not records:
        raise DataError("no predictions to score")
    preds = [normalise_prediction(r["answer"]) for r in records]
    gts = [normalise_category(r["category"]) for r in records]
    ss = semantic_similarity(sentence_model, preds, gts)
    siou = np.array([semantic_iou(p, g) for p, g in zip(preds, gts)])
    return {"SS": 100 * float(ss.mean()), "S-IoU": 100 * float(siou.mean()), "objects": len(preds)}
