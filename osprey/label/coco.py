"""The output: the records of a run merged into one COCO JSON, written atomically.

The result loads with ``pycocotools.coco.COCO``: ``images`` (``id``, ``file_name``, ``height``,
``width``), ``annotations`` (``id``, ``image_id``, ``category_id``, RLE ``segmentation``,
``area``, ``bbox`` ``[x, y, w, h]``, ``iscrowd`` 0, SAM's ``score`` and one field per task:
``category_name``, ``caption``, ``description``, ``top_k``) and ``categories``: with a vocabulary
(``--vocab``) its classes, in its order, each region filed under its most probable class;
otherwise one per distinct category name (``region`` for regions without one). Images that could not be labelled are listed under
``skipped`` with the reason. Ids follow the input's order, so equal records give equal files,
whatever order they were produced in.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from osprey.label.inputs import ImageItem

UNNAMED = "region"  # the category of regions without a category name


def category_of(annotation: Mapping[str, Any]) -> str:
    """The category an annotation is filed under: its stripped ``category_name``, or ``region``."""
    name = annotation.get("category_name")
    return (name.strip() if isinstance(name, str) else "") or UNNAMED


def top1_of(annotation: Mapping[str, Any]) -> str:
    """The most probable class of an annotation's ``top_k`` list, or ``region`` without one."""
    top = annotation.get("top_k")
    return top[0]["name"] if top else UNNAMED


def to_coco(
    items: Sequence[ImageItem], records: Mapping[str, dict[str, Any]], info: dict[str, Any],
    vocabulary: Sequence[str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One COCO dataset from the record of every item (``records`` by file name, one per item);
    ``vocabulary``: the class names the categories are (see the module docstring)."""
    images, done, skipped, dropped = [], [], [], []
    for item in items:
        record = records[item.file_name]
        if "skipped" in record:
            skipped.append({"file_name": item.file_name, "reason": record["skipped"]})
            continue
        images.append({
            "id": item.image_id, "file_name": item.file_name,
            "height": record["height"], "width": record["width"],
        })  # fmt: skip
        done.append((item.image_id, record["annotations"]))
        dropped += [{"file_name": item.file_name, **d} for d in record.get("dropped", [])]
    file_under = category_of if vocabulary is None else top1_of
    found = {file_under(a) for _, anns in done for a in anns}
    names = sorted(found) if vocabulary is None else list(dict.fromkeys(vocabulary))
    names += sorted(found - set(names))  # with a vocabulary: "region" if a region has no top_k
    category_ids = {name: i + 1 for i, name in enumerate(names)}
    annotations = []
    for image_id, anns in done:
        for ann in anns:
            head = {"id": len(annotations) + 1, "image_id": image_id}
            head["category_id"] = category_ids[file_under(ann)]
            annotations.append(head | {"iscrowd": 0} | ann)
    data = {
        "info": info, "images": images, "annotations": annotations,
        "categories": [{"id": i, "name": name} for name, i in category_ids.items()],
        "skipped": skipped,
    }  # fmt: skip
    if dropped:
        data["dropped"] = dropped
    return data


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write ``data`` as JSON to ``path`` through a temporary file in the same folder and a
    rename: readers see the old file or the complete new one, never a part."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
