"""The Osprey-724K record format: layout, file names and the strict validator.

:func:`validate_record` is the contract between data generation and the training loader. It
checks what the loader relies on, the way the original loader (``osprey/datasets/osprey_724k.py``)
reads each file:

* every task: ``file_name`` (str), ``height`` / ``width`` (positive ints) and ``annotation``, a
  non-empty list of dicts whose ``segmentation`` (COCO polygons or RLE) decodes to a non-empty
  ``height x width`` mask;
* ``description``, ``conversation``, ``short-form``, ``part-level``: the loader opens
  ``file_name.split("_")[-1]``, so a name with ``_`` is only accepted in the COCO-2014 form
  ``COCO_<split>_<digits>.<ext>``;
* ``conversation``, ``short-form``, ``part-level``: ``conversations`` alternates human / gpt,
  starting with human, at least one pair and an even count. The loader strips every ``<`` and
  ``>``, so the only bracketed text allowed is ``<regionK>`` with ``1 <= K <= len(annotation)``;
* ``description``: one entry per region, in order, ``"<regionK>: text"`` with K = its position,
  single-line text without ``<`` / ``>`` (the loader keeps what ``<.*>:\\ (.*)`` captures);
* ``positive-negative``: the loader replaces each ``<regionK>`` in the questions by
  ``<mask><pos>`` and binds masks by order, so the questions' references, read in order, must be
  exactly ``<region1> ... <regionN>`` for N regions; answers hold no brackets.

The loader adds the ``<image>`` prefix and the region list itself, so records never contain
``<image>``, ``<mask>`` or ``<pos>``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from osprey.core.errors import OspreyError
from osprey.core.masks import MaskError, decode_segmentation

if TYPE_CHECKING:
    from osprey.datagen.sources import ImageEntry, Instance

# ---------------------------------------------------------------------------------------------
# tasks and file names

TASKS = ("description", "conversation", "short-form", "part-level", "positive-negative")

OUTPUT_FILES = {
    "description": "osprey_detail_description.json",
    "conversation": "osprey_conversation.json",
    "short-form": "osprey_short_form.json",
    "part-level": "osprey_part_level.json",
    "positive-negative": "osprey_lvis_positive_negative.json",
}

# The record's text field for each task; the others are shared.
BODY_KEY = {task: "conversations" for task in TASKS} | {"description": "description"}

REGION_TAG = re.compile(r"<region(\d+)>")
_COCO2014_NAME = re.compile(r"^COCO_[A-Za-z0-9]+_\d+\.[A-Za-z0-9]+$")
_LOADER_DESCRIPTION = re.compile(r"<.*>:\ (.*)")  # the original loader's extraction


class RecordError(OspreyError, ValueError):
    """A record breaks the Osprey-724K contract; ``reason`` is a short category for counting."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def region_tag(k: int) -> str:
    """The reference to region ``k`` (1-based) in generated text."""
    return f"<region{k}>"


# ---------------------------------------------------------------------------------------------
# building


def annotation_entry(bbox: list[float], segmentation: Any) -> dict[str, Any]:
    """One region of a record, as in the published files: COCO ``[x, y, w, h]`` and the mask."""
    return {"bbox": [float(v) for v in bbox], "segmentation": segmentation}


def make_skeleton(image: ImageEntry, regions: Sequence[Instance]) -> dict[str, Any]:
    """A record without its text: id, file_name, annotation (in region order), height, width."""
    return {
        "id": image.image_id,
        "file_name": image.file_name,
        "annotation": [annotation_entry(r.bbox, r.segmentation) for r in regions],
        "height": image.height,
        "width": image.width,
    }


def assemble_record(skeleton: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """Skeleton (id, file_name, annotation, height, width) + body -> the published key order."""
    head = {k: skeleton[k] for k in ("id", "file_name") if k in skeleton}
    tail = {k: skeleton[k] for k in ("annotation", "height", "width")}
    return head | body | tail


def loader_image_name(record: dict[str, Any], task: str) -> str:
    """The file name the training loader opens inside its image folder."""
    name = record["file_name"]
    return name if task == "positive-negative" else name.split("_")[-1]


# ---------------------------------------------------------------------------------------------
# checks shared by all tasks


def _check_size(record: dict[str, Any]) -> tuple[int, int]:
    for key in ("height", "width"):
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise RecordError("size", f"{key} must be a positive int, got {value!r}")
    return record["height"], record["width"]


def _check_file_name(record: dict[str, Any], task: str) -> None:
    name = record.get("file_name")
    if not isinstance(name, str) or not name.strip() or name.startswith(("/", "\\")):
        raise RecordError("file_name", f"file_name must be a relative path, got {name!r}")
    if task != "positive-negative" and "_" in name and not _COCO2014_NAME.match(name):
        raise RecordError(
            "file_name",
            f"the loader opens the part after the last '_' of {name!r}, i.e. "
            f"{loader_image_name(record, task)!r}; rename the image or use COCO_<split>_<id> names",
        )


def check_annotation(record: dict[str, Any]) -> int:
    """Every region's mask decodes to a non-empty height x width mask; returns the region count."""
    height, width = _check_size(record)
    regions = record.get("annotation")
    if not isinstance(regions, list) or not regions:
        raise RecordError("annotation", "annotation must be a non-empty list of regions")
    for k, region in enumerate(regions, 1):
        if not isinstance(region, dict) or "segmentation" not in region:
            raise RecordError("annotation", f"region {k} has no segmentation")
        try:
            mask = decode_segmentation(region["segmentation"], height, width)
        except (MaskError, TypeError, ValueError) as exc:
            raise RecordError("mask", f"region {k}: {exc}") from exc
        if not mask.any():
            raise RecordError("mask", f"region {k} has an empty mask")
    return len(regions)


def check_image(record: dict[str, Any], task: str, image_root: Path) -> None:
    """The image the loader will open exists under ``image_root`` and has the record's size."""
    from PIL import Image  # deferred: only needed when an image folder is given

    path = Path(image_root) / loader_image_name(record, task)
    if not path.is_file():
        raise RecordError("image_missing", f"{path} does not exist")
    with Image.open(path) as img:  # reads the header only
        width, height = img.size
    if (height, width) != (record["height"], record["width"]):
        raise RecordError(
            "image_size",
            f"{path} is {width}x{height}, record says {record['width']}x{record['height']}",
        )


def check_header(record: Any, task: str, image_root: Path | None = None) -> int:
    """Everything but the text: file name, size, masks (and the image file when given)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if not isinstance(record, dict):
        raise RecordError("record", f"a record is a dict, got {type(record).__name__}")
    _check_file_name(record, task)
    n = check_annotation(record)
    if image_root is not None:
        check_image(record, task, image_root)
    return n


# ---------------------------------------------------------------------------------------------
# text checks


def check_text(text: Any, n_regions: int, where: str) -> list[int]:
    """Non-empty text whose only brackets are ``<regionK>`` with K in 1..n; returns the Ks."""
    if not isinstance(text, str) or not text.strip():
        raise RecordError("empty_turn", f"{where} is empty")
    refs = [int(k) for k in REGION_TAG.findall(text)]
    rest = REGION_TAG.sub("", text)
    if "<" in rest or ">" in rest:
        raise RecordError("bad_tag", f"{where} has a '<' or '>' outside a <regionK> tag")
    bad = [k for k in refs if not 1 <= k <= n_regions]
    if bad:
        raise RecordError("unknown_region", f"{where} refers to region {bad[0]} of {n_regions}")
    return refs


def _check_turns(conversations: Any) -> list[dict[str, Any]]:
    if not isinstance(conversations, list) or len(conversations) < 2:
        raise RecordError("conversations", "conversations needs at least one human/gpt pair")
    if len(conversations) % 2:
        raise RecordError("conversations", "conversations has an unanswered last question")
    for i, turn in enumerate(conversations):
        expected = "human" if i % 2 == 0 else "gpt"
        if not isinstance(turn, dict) or turn.get("from") != expected:
            raise RecordError("conversations", f"turn {i} must come from {expected!r}")
    return conversations


def _check_conversation(record: dict[str, Any], n: int) -> None:
    for i, turn in enumerate(_check_turns(record.get("conversations"))):
        check_text(turn.get("value"), n, f"turn {i}")


def _check_posneg(record: dict[str, Any], n: int) -> None:
    refs: list[int] = []
    for i, turn in enumerate(_check_turns(record.get("conversations"))):
        found = check_text(turn.get("value"), n, f"turn {i}")
        if turn["from"] == "gpt" and found:
            raise RecordError("bad_tag", f"answer {i} refers to a region")
        refs += found
    if refs != list(range(1, n + 1)):
        raise RecordError(
            "region_order",
            f"questions refer to regions {refs}; the loader binds masks by order and needs "
            f"{list(range(1, n + 1))}",
        )


def _check_description(record: dict[str, Any], n: int) -> None:
    entries = record.get("description")
    if not isinstance(entries, list) or len(entries) != n:
        raise RecordError("description", f"description needs one entry per region ({n})")
    for k, entry in enumerate(entries, 1):
        prefix = region_tag(k) + ": "
        if not isinstance(entry, str) or not entry.startswith(prefix):
            raise RecordError("description", f"entry {k} must start with {prefix!r}")
        text = entry[len(prefix) :]
        if not text.strip():
            raise RecordError("empty_turn", f"entry {k} has no text")
        if "<" in text or ">" in text:
            raise RecordError("bad_tag", f"entry {k} has a '<' or '>' in its text")
        if "\n" in text or _LOADER_DESCRIPTION.findall(entry)[0] != text:
            raise RecordError("description", f"entry {k} must be a single line")


_BODY_CHECKS = {
    "description": _check_description,
    "conversation": _check_conversation,
    "short-form": _check_conversation,
    "part-level": _check_conversation,
    "positive-negative": _check_posneg,
}


def validate_record(record: Any, task: str, image_root: str | Path | None = None) -> None:
    """Raise :class:`RecordError` unless ``record`` is a valid Osprey-724K record of ``task``.

    With ``image_root``, the image the loader will open must exist there with the record's size.
    """
    n = check_header(record, task, None if image_root is None else Path(image_root))
    _BODY_CHECKS[task](record, n)
