"""Part-level category and attribute questions from PACO-style annotations.

Input: a PACO-LVIS-style COCO file whose categories are objects (``"spoon"``) and parts
(``"spoon:bowl"``), whose part annotations point to their object through ``obj_ann_id``, and whose
annotations carry ``attribute_ids`` into the file's ``attributes`` list. Regions are objects
followed by their parts (objects first, as in the paper's Table 15), at most ``max_regions``.

Two records per image, as two work items keyed ``<image id>:categories`` and
``<image id>:attributes``:

* categories, from the annotations directly: "What's the category of <regionK>?" ->
  "Spoon." / "Bowl of a spoon.";
* attributes, from an LLM (GPT-4 in the paper) given ``<regionK> name: attr, attr, ...`` lines
  with the paper's system message and example (only regions with known attributes).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

from osprey.datagen import templates
from osprey.datagen.context import chat_messages, part_context
from osprey.datagen.records import make_skeleton, region_tag
from osprey.datagen.replies import parse_qa
from osprey.datagen.runner import WorkItem
from osprey.datagen.sources import (
    CocoData,
    ImageEntry,
    Instance,
    image_order,
    readable,
    rng_for,
    short_name,
)

PART_KINDS = ("categories", "attributes")

# ---------------------------------------------------------------------------------------------
# names


def is_part(category: str) -> bool:
    return ":" in category


def category_answer(category: str) -> str:
    """``"spoon"`` -> ``"Spoon."``; ``"spoon:bowl"`` -> ``"Bowl of a spoon."``."""
    whole, _, part = category.partition(":")
    whole = short_name(whole)
    if part:
        article = "an" if whole[:1].lower() in "aeiou" else "a"
        whole = f"{short_name(part)} of {article} {whole}"
    return whole[:1].upper() + whole[1:] + "."


def attribute_words(instance: Instance, attributes: dict[int, str]) -> list[str]:
    """The instance's attribute names in id order (PACO: colour, pattern, material,
    reflectance), without PACO's ``other(...)`` placeholders."""
    names = [attributes.get(int(a), "") for a in sorted(instance.raw.get("attribute_ids") or [])]
    return [readable(n) for n in names if n and not n.startswith("other")]


# ---------------------------------------------------------------------------------------------
# regions


def part_groups(instances: Sequence[Instance]) -> list[list[Instance]]:
    """[object, its parts...] per object in file order; parts whose object is absent follow
    as groups of their own."""
    parts: dict[Any, list[Instance]] = {}
    for inst in instances:
        if is_part(inst.category):
            parts.setdefault(inst.raw.get("obj_ann_id"), []).append(inst)
    objects = [i for i in instances if not is_part(i.category) and not i.iscrowd]
    groups = [[obj, *parts.pop(obj.ann_id, [])] for obj in objects]
    return groups + [[p] for orphans in parts.values() for p in orphans]


def part_regions(instances: Sequence[Instance], max_regions: int | None) -> list[Instance]:
    """Whole groups while they fit in ``max_regions``; objects first, then the parts."""
    chosen: list[list[Instance]] = []
    for group in part_groups(instances):
        used = sum(map(len, chosen))
        if max_regions and used + len(group) > max_regions:
            if used:
                continue
            group = group[:max_regions]
        chosen.append(group)
    return [g[0] for g in chosen] + [p for g in chosen for p in g[1:]]


# ---------------------------------------------------------------------------------------------
# records


def category_conversation(regions: Sequence[Instance], rng: random.Random) -> list[dict[str, Any]]:
    """One category question per region, in region order."""
    turns: list[dict[str, Any]] = []
    for k, inst in enumerate(regions, 1):
        question = rng.choice(templates.PART_CATEGORY_QUESTIONS).replace("<region>", region_tag(k))
        turns.append({"from": "human", "value": question})
        turns.append({"from": "gpt", "value": category_answer(inst.category)})
    return turns


def _categories_body(
    regions: list[Instance], seed: int, key: str, _reply: str | None
) -> dict[str, Any]:
    return {"conversations": category_conversation(regions, rng_for(seed, key, "questions"))}


def _attributes_body(n_regions: int, reply: str | None) -> dict[str, Any]:
    return {"conversations": parse_qa(reply, n_regions)}


def _categories_item(image: ImageEntry, max_regions: int | None, seed: int) -> WorkItem | None:
    regions = part_regions(image.instances, max_regions)
    if not regions:
        return None
    key = f"{image.image_id}:categories"
    build = partial(_categories_body, regions, seed, key)
    return WorkItem(key, make_skeleton(image, regions), None, build)


def _attributes_item(image: ImageEntry, data: CocoData, max_regions: int | None) -> WorkItem | None:
    described = [i for i in image.instances if attribute_words(i, data.attributes)]
    regions = part_regions(described, max_regions)
    if not regions:
        return None
    lines = [(readable(r.category), attribute_words(r, data.attributes)) for r in regions]
    messages = chat_messages("part-level", part_context(lines))
    build = partial(_attributes_body, len(regions))
    return WorkItem(f"{image.image_id}:attributes", make_skeleton(image, regions), messages, build)


def _item(
    kind: str, image: ImageEntry, data: CocoData, max_regions: int | None, seed: int
) -> WorkItem | None:
    if kind == "categories":
        return _categories_item(image, max_regions, seed)
    if kind == "attributes":
        return _attributes_item(image, data, max_regions)
    raise ValueError(f"unknown part-level record kind {kind!r}; expected one of {PART_KINDS}")


def part_items(
    data: CocoData,
    *,
    kinds: Sequence[str] = PART_KINDS,
    max_regions: int | None = 10,
    limit: int | None = None,
    seed: int = 0,
    skipped: Counter | None = None,
) -> Iterator[WorkItem]:
    """Up to one item per kind per image; images without usable regions go to ``skipped``."""
    skipped = skipped if skipped is not None else Counter()
    made = 0
    for image in image_order(data.images, limit, seed):
        if limit and made >= limit:
            return
        items = {kind: _item(kind, image, data, max_regions, seed) for kind in kinds}
        for kind in kinds:
            if items[kind] is None:
                skipped[f"no_{kind}"] += 1
        if any(items.values()):
            made += 1
            yield from (item for item in items.values() if item is not None)
