"""Readers for the public annotations the pipeline starts from.

* COCO-format instances (COCO, LVIS, PACO-LVIS or your own): images, categories, annotations;
* COCO captions (``captions_train2017.json``);
* referring expressions, in either of the two public layouts: the COCO-style
  ``finetune_refcoco*_train_with_mask.json`` files Osprey used (one "image" per expression with
  ``caption``, annotations carrying the COCO ``original_id``), or a JSON list of ``refer``-style
  refs (``{"ann_id": ..., "sentences": [{"sent": ...}, ...]}``);
* LLaVA-style detailed image descriptions (``detail_23k.json``: ``id``, ``image`` and a
  ``conversations`` list whose first ``gpt`` turn is the description), or a plain
  ``{image_id: text}`` mapping.

Image ids are compared as strings with leading zeros dropped (``"000000123456"`` == ``123456``).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

# ---------------------------------------------------------------------------------------------
# data types


@dataclass(frozen=True)
class Instance:
    """One annotated object (or part) of an image."""

    ann_id: int
    category: str  # the category name as in the file, e.g. "dining table", "spoon:bowl"
    bbox: tuple[float, float, float, float]  # COCO (x, y, w, h) in pixels
    segmentation: Any  # COCO polygons or RLE, untouched
    area: float
    iscrowd: bool = False
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class ImageEntry:
    image_id: int | str
    file_name: str
    height: int
    width: int
    instances: tuple[Instance, ...]


@dataclass(frozen=True)
class CocoData:
    images: list[ImageEntry]
    categories: dict[int, str]  # id -> name
    attributes: dict[int, str]  # id -> name (PACO); empty elsewhere


# ---------------------------------------------------------------------------------------------
# helpers


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def id_key(value: Any) -> str:
    """Image ids compare as strings without leading zeros: 123, "123", "000000000123" -> "123"."""
    text = str(value).strip()
    return str(int(text)) if text.isdigit() else text


def readable(name: str) -> str:
    """Vocabulary names to text: ``"trash_can:inner_body"`` -> ``"trash can:inner body"``."""
    return name.replace("_", " ").strip()


def short_name(name: str) -> str:
    """A category as said in a question: LVIS's ``"car_(automobile)"`` -> ``"car"``."""
    return re.sub(r"\s*\([^)]*\)\s*$", "", readable(name)) or readable(name)


def _file_name(image: dict[str, Any]) -> str:
    if image.get("file_name"):
        return str(image["file_name"])
    if image.get("coco_url"):  # LVIS v1 keeps only the URL
        return PurePosixPath(urlparse(image["coco_url"]).path).name
    raise ValueError(f"image {image.get('id')} has neither file_name nor coco_url")


def _instance(ann: dict[str, Any], categories: dict[int, str]) -> Instance:
    x, y, w, h = (float(v) for v in ann["bbox"])
    return Instance(
        ann_id=int(ann["id"]),
        category=categories[int(ann["category_id"])],
        bbox=(x, y, w, h),
        segmentation=ann["segmentation"],
        area=float(ann.get("area") or w * h),
        iscrowd=bool(ann.get("iscrowd", 0)),
        raw=ann,
    )


# ---------------------------------------------------------------------------------------------
# readers


def load_instances(path: str | Path) -> CocoData:
    """A COCO-format instances file; images keep the file's order, annotations theirs."""
    data = read_json(path)
    categories = {int(c["id"]): str(c["name"]) for c in data["categories"]}
    by_image: dict[Any, list[Instance]] = {}
    for ann in data.get("annotations", []):
        if ann.get("segmentation"):
            by_image.setdefault(ann["image_id"], []).append(_instance(ann, categories))
    images = [
        ImageEntry(
            image_id=img["id"],
            file_name=_file_name(img),
            height=int(img["height"]),
            width=int(img["width"]),
            instances=tuple(by_image.get(img["id"], ())),
        )
        for img in data["images"]
    ]
    attributes = {int(a["id"]): str(a["name"]) for a in data.get("attributes", [])}
    return CocoData(images=images, categories=categories, attributes=attributes)


def load_captions(path: str | Path) -> dict[str, list[str]]:
    """COCO captions -> {image id: [caption, ...]} in file order."""
    out: dict[str, list[str]] = {}
    for ann in read_json(path)["annotations"]:
        out.setdefault(id_key(ann["image_id"]), []).append(" ".join(ann["caption"].split()))
    return out


def _add(out: dict[int, list[str]], ann_id: Any, sentence: str) -> None:
    text = " ".join(str(sentence).split())
    bucket = out.setdefault(int(ann_id), [])
    if text and text not in bucket:
        bucket.append(text)


def _refs_from_coco_style(data: dict[str, Any], out: dict[int, list[str]]) -> None:
    captions = {img["id"]: img.get("caption", "") for img in data["images"]}
    for ann in data["annotations"]:
        _add(out, ann["original_id"], captions.get(ann["image_id"], ""))


def _refs_from_list(data: list[dict[str, Any]], out: dict[int, list[str]]) -> None:
    for ref in data:
        for sent in ref.get("sentences", [ref.get("caption", "")]):
            _add(out, ref["ann_id"], sent["sent"] if isinstance(sent, dict) else sent)


def load_refs(paths: Iterable[str | Path]) -> dict[int, list[str]]:
    """Referring expressions of one or more files -> {COCO annotation id: [expression, ...]}.

    Expressions are merged across files (RefCOCO, RefCOCO+, RefCOCOg), duplicates dropped.
    """
    out: dict[int, list[str]] = {}
    for path in paths:
        data = read_json(path)
        if isinstance(data, dict) and "annotations" in data:
            _refs_from_coco_style(data, out)
        elif isinstance(data, list):
            _refs_from_list(data, out)
        else:
            raise ValueError(f"{path}: not a known referring-expression layout")
    return {k: v for k, v in out.items() if v}


def _first_gpt_turn(item: dict[str, Any]) -> str | None:
    for turn in item.get("conversations", []):
        if turn.get("from") == "gpt" and str(turn.get("value", "")).strip():
            return str(turn["value"]).strip()
    return None


def load_descriptions(path: str | Path) -> dict[str, str]:
    """Detailed image descriptions -> {image id: text} (LLaVA list, or a plain mapping)."""
    data = read_json(path)
    if isinstance(data, dict):
        return {id_key(k): str(v).strip() for k, v in data.items() if str(v).strip()}
    out: dict[str, str] = {}
    for item in data:
        text = _first_gpt_turn(item)
        key = item.get("id", PurePosixPath(str(item.get("image", ""))).stem)
        if text and key != "":
            out[id_key(key)] = text
    return out


def lookup(table: dict[str, Any], image: ImageEntry) -> Any:
    """Find an image in a table keyed by image id, falling back to its file name's stem."""
    key = id_key(image.image_id)
    if key in table:
        return table[key]
    return table.get(id_key(PurePosixPath(image.file_name).stem))


# ---------------------------------------------------------------------------------------------
# selection


def rng_for(seed: int, key: str, purpose: str) -> random.Random:
    """A generator that depends only on (seed, key, purpose), so runs are reproducible whatever
    the concurrency or the order a resumed run takes."""
    return random.Random(f"{seed}/{key}/{purpose}")


def image_order(images: Sequence[ImageEntry], limit: int | None, seed: int) -> list[ImageEntry]:
    """All images in file order; with ``limit``, a seeded shuffle (a larger limit extends a
    smaller one, so runs can grow). The caller stops after ``limit`` usable images."""
    if not limit:
        return list(images)
    order = list(images)
    random.Random(f"images/{seed}").shuffle(order)
    return order


def largest(instances: Sequence[Instance], k: int | None) -> list[Instance]:
    """At most ``k`` instances, the largest by area, returned in their original order."""
    if not k or len(instances) <= k:
        return list(instances)
    ranked = sorted(range(len(instances)), key=lambda i: (-instances[i].area, i))[:k]
    return [instances[i] for i in sorted(ranked)]
