"""LVIS positive/negative category questions (no LLM).

Per image, up to ``max_regions`` objects (a seeded sample, kept in annotation order) become the
record's regions; each gets one yes/no question "is region K <category>?", in region order, half
of them with the true category and half with a negative one (odd counts: a coin flip). A negative
is, with probability ``spatial_prob``, the class of the nearest other-class object in the image,
otherwise (or when the image holds one class only) one of the 8 most similar class names.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import numpy as np

from osprey.core.masks import decode_segmentation
from osprey.datagen import templates
from osprey.datagen.negatives import SimilarNames, nearest_other
from osprey.datagen.records import make_skeleton, region_tag
from osprey.datagen.runner import WorkItem
from osprey.datagen.sources import (
    CocoData,
    ImageEntry,
    Instance,
    image_order,
    rng_for,
    short_name,
)


def _fill(template: str, region: int, category: str) -> str:
    text = template.replace("<region>", region_tag(region)).replace("<category>", category)
    return text[0].upper() + text[1:]


def _polarities(n: int, rng: random.Random) -> list[bool]:
    """Half True (positive), half False; the odd one out by a coin flip; shuffled."""
    positives = n // 2 + (n % 2 if rng.random() < 0.5 else 0)
    flags = [True] * positives + [False] * (n - positives)
    rng.shuffle(flags)
    return flags


class LazyMasks:
    """The image's instance masks, each decoded on first access (spatial negatives look at a
    few objects near the target only)."""

    def __init__(self, image: ImageEntry):
        self.image = image
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.image.instances)

    def __getitem__(self, index: int) -> np.ndarray:
        if index not in self._cache:
            inst, image = self.image.instances[index], self.image
            self._cache[index] = decode_segmentation(inst.segmentation, image.height, image.width)
        return self._cache[index]


def _negative(
    target: int,
    image: ImageEntry,
    masks: LazyMasks,
    sampler: SimilarNames,
    rng: random.Random,
    spatial_prob: float,
) -> str | None:
    classes = [short_name(i.category) for i in image.instances]
    if rng.random() < spatial_prob:
        nearest = nearest_other(target, masks, classes, [i.bbox for i in image.instances])
        if nearest is not None:
            return classes[nearest]
    similar = sampler.sample(image.instances[target].category, rng)
    return short_name(similar) if similar is not None else None


def posneg_conversation(
    image: ImageEntry,
    chosen: Sequence[int],
    sampler: SimilarNames,
    rng: random.Random,
    spatial_prob: float = 0.5,
) -> list[dict[str, Any]]:
    """One question per chosen instance (indices into ``image.instances``), in order."""
    masks = LazyMasks(image)
    turns: list[dict[str, Any]] = []
    for k, (target, positive) in enumerate(zip(chosen, _polarities(len(chosen), rng)), 1):
        category = short_name(image.instances[target].category)
        if not positive:
            negative = _negative(target, image, masks, sampler, rng, spatial_prob)
            positive, category = negative is None, negative or category
        answers = templates.POSNEG_YES_ANSWERS if positive else templates.POSNEG_NO_ANSWERS
        turns.append(
            {"from": "human", "value": _fill(rng.choice(templates.POSNEG_QUESTIONS), k, category)}
        )
        turns.append({"from": "gpt", "value": _fill(rng.choice(answers), k, category)})
    return turns


def _body(
    image: ImageEntry,
    chosen: list[int],
    sampler: SimilarNames,
    seed: int,
    spatial_prob: float,
    _reply: str | None,
) -> dict[str, Any]:
    rng = rng_for(seed, str(image.image_id), "questions")
    return {"conversations": posneg_conversation(image, chosen, sampler, rng, spatial_prob)}


def posneg_items(
    data: CocoData,
    sampler: SimilarNames,
    *,
    max_regions: int | None = 5,
    limit: int | None = None,
    seed: int = 0,
    spatial_prob: float = 0.5,
    skipped: Counter | None = None,
) -> Iterator[WorkItem]:
    """One work item per image with at least one non-crowd object."""
    skipped = skipped if skipped is not None else Counter()
    made = 0
    for image in image_order(data.images, limit, seed):
        if limit and made >= limit:
            return
        usable = [i for i, inst in enumerate(image.instances) if not inst.iscrowd]
        if not usable:
            skipped["no_regions"] += 1
            continue
        if max_regions and len(usable) > max_regions:
            usable = sorted(
                rng_for(seed, str(image.image_id), "regions").sample(usable, max_regions)
            )
        regions: list[Instance] = [image.instances[i] for i in usable]
        build = partial(_body, image, usable, sampler, seed, spatial_prob)
        yield WorkItem(str(image.image_id), make_skeleton(image, regions), None, build)
        made += 1
