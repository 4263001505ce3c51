"""Dataset specs -> sources: the ``type`` names a stage config uses, and the original's names.

A spec is a dict such as ``{"type": "coco", "ann_file": "coco/annotations/instances_train2017.json",
"image_dir": "coco/imgs"}``; relative paths are resolved against the data root given at run time.
Optional keys: ``limit`` (first N records), ``max_regions`` (per-image cap of the stage-2 / VG
sources), ``text_only`` (LLaVA: ``keep``/``skip``), ``original_indexing`` (VCR).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from osprey.core.errors import OspreyError
from osprey.data.sources.base import Source
from osprey.data.sources.coco import CocoRegions, PartImageNet, PascalPart
from osprey.data.sources.llava import LlavaConversations
from osprey.data.sources.osprey724k import (
    OspreyConversation,
    OspreyDetailDescription,
    OspreyLvisPosNeg,
    OspreyPartLevel,
    OspreyShortForm,
)
from osprey.data.sources.refcoco import RefCOCO, RefCOCOPlus
from osprey.data.sources.vcr import VCR
from osprey.data.sources.vg import VisualGenome

SOURCES: dict[str, type[Source]] = {
    "coco": CocoRegions,
    "refcoco": RefCOCO,
    "refcoco+": RefCOCOPlus,
    "pascal_part": PascalPart,
    "part_imagenet": PartImageNet,
    "vg": VisualGenome,
    "vcr": VCR,
    "osprey_conversation": OspreyConversation,
    "osprey_short_form": OspreyShortForm,
    "osprey_part_level": OspreyPartLevel,
    "osprey_detail_description": OspreyDetailDescription,
    "osprey_lvis_posneg": OspreyLvisPosNeg,
    "llava": LlavaConversations,
}

# The ``type`` names of the original's dataset configs (stage2.json / stage3.json).
ORIGINAL_NAMES = {
    "coco_det": "coco",
    "coco_data": "coco",  # sic: the name in the original stage2.json, which its builder lacked
    "RefCOCO": "refcoco",
    "RefCOCOP": "refcoco+",
    "PascalPart": "pascal_part",
    "PartImagenet": "part_imagenet",
    "VGDATA": "vg",
    "OspreyConversations": "osprey_conversation",
    "OspreyShortForm": "osprey_short_form",
    "OspreyPartLevel": "osprey_part_level",
    "OspreyDetailedDescription": "osprey_detail_description",
    "OspreyLVISPosNeg": "osprey_lvis_posneg",
}


class SpecError(OspreyError, ValueError):
    """A dataset spec names an unknown type or option."""


def source_class(kind: str) -> type[Source]:
    name = ORIGINAL_NAMES.get(kind, kind)
    if name not in SOURCES:
        raise SpecError(f"unknown dataset type {kind!r}; known: {sorted(SOURCES)}")
    return SOURCES[name]


def build_source(spec: dict[str, Any], root: str | Path = ".") -> Source:
    """One source from its spec; ``img_prefix`` is accepted for ``image_dir`` (original name)."""
    spec = dict(spec)
    if "type" not in spec:
        raise SpecError(f"dataset spec without 'type': {spec}")
    cls = source_class(spec.pop("type"))
    if "img_prefix" in spec:
        spec["image_dir"] = spec.pop("img_prefix")
    for key in ("ann_file", "image_dir"):
        if key not in spec:
            raise SpecError(f"dataset spec for {cls.name} needs {key!r}")
        spec[key] = Path(root) / spec[key]
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = set(spec) - allowed
    if unknown:
        raise SpecError(
            f"{cls.name}: unknown options {sorted(unknown)}; allowed: {sorted(allowed)}"
        )
    return cls(**spec)


def build_sources(specs: list[dict[str, Any]], root: str | Path = ".") -> list[Source]:
    if not specs:
        raise SpecError("no datasets given")
    return [build_source(spec, root) for spec in specs]
