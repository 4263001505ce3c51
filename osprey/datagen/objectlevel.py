"""Object-level tasks: detailed region descriptions, conversations and short-form QA.

For each image the LLM receives what the paper gave GPT-4: a detailed image description (or the
image captions), every object's category and normalised box (description task), and for each
region its category, box and referring expressions. Regions are the objects that have referring
expressions when ``refs`` are given (the paper's setting: RefCOCO/+/g on COCO), otherwise every
non-crowd object; at most ``max_regions`` of them, the largest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from osprey.datagen.context import (
    ImageText,
    Region,
    chat_messages,
    description_context,
    format_box,
    qa_context,
)
from osprey.datagen.records import make_skeleton
from osprey.datagen.replies import parse_description, parse_qa
from osprey.datagen.runner import WorkItem
from osprey.datagen.sources import (
    CocoData,
    ImageEntry,
    Instance,
    image_order,
    largest,
    lookup,
    readable,
)

OBJECT_TASKS = ("description", "conversation", "short-form")


@dataclass(frozen=True)
class ObjectSources:
    """Optional text about the images; every table may be empty."""

    captions: dict[str, list[str]] = field(default_factory=dict)  # image id -> captions
    descriptions: dict[str, str] = field(default_factory=dict)  # image id -> description
    refs: dict[int, list[str]] = field(default_factory=dict)  # annotation id -> expressions


def choose_regions(
    image: ImageEntry, sources: ObjectSources, max_regions: int | None
) -> list[Instance]:
    """Referred objects in the order the refs first mention them (as the original did), or all
    non-crowd objects in file order; at most ``max_regions`` of them, the largest."""
    candidates = [i for i in image.instances if not i.iscrowd]
    if sources.refs:
        rank = {ann_id: r for r, ann_id in enumerate(sources.refs)}
        referred = (i for i in candidates if i.ann_id in rank)
        candidates = sorted(referred, key=lambda i: rank[i.ann_id])
    return largest(candidates, max_regions)


def image_text(
    image: ImageEntry, regions: Sequence[Instance], sources: ObjectSources, with_objects: bool
) -> ImageText:
    def box(inst: Instance) -> str:
        return format_box(inst.bbox, image.width, image.height)

    return ImageText(
        description=lookup(sources.descriptions, image),
        captions=tuple(lookup(sources.captions, image) or ()),
        objects=tuple((readable(i.category), box(i)) for i in image.instances)
        if with_objects
        else (),
        regions=tuple(
            Region(readable(r.category), box(r), tuple(sources.refs.get(r.ann_id, ())))
            for r in regions
        ),
    )


def _description_body(n_regions: int, text: str | None) -> dict[str, Any]:
    return {"description": parse_description(text, n_regions)}


def _qa_body(n_regions: int, text: str | None) -> dict[str, Any]:
    return {"conversations": parse_qa(text, n_regions)}


def object_item(
    task: str, image: ImageEntry, regions: Sequence[Instance], text: ImageText
) -> WorkItem:
    """The request for one image of an object-level task."""
    if task == "description":
        context, body = description_context(text), _description_body
    else:
        context, body = qa_context(text), _qa_body
    return WorkItem(
        key=str(image.image_id),
        skeleton=make_skeleton(image, regions),
        messages=chat_messages(task, context),
        build=partial(body, len(regions)),
    )


def object_items(
    task: str,
    data: CocoData,
    sources: ObjectSources,
    *,
    max_regions: int | None = 10,
    limit: int | None = None,
    seed: int = 0,
    skipped: Counter | None = None,
) -> Iterator[WorkItem]:
    """One work item per usable image; images without regions are counted in ``skipped``."""
    if task not in OBJECT_TASKS:
        raise ValueError(f"{task!r} is not an object-level task {OBJECT_TASKS}")
    skipped = skipped if skipped is not None else Counter()
    made = 0
    for image in image_order(data.images, limit, seed):
        if limit and made >= limit:
            return
        regions = choose_regions(image, sources, max_regions)
        if not regions:
            skipped["no_regions"] += 1
            continue
        text = image_text(image, regions, sources, with_objects=task == "description")
        yield object_item(task, image, regions, text)
        made += 1
