"""sam_bridge: clicks, boxes and "segment everything" to class-agnostic masks (Segment Anything).

Knows nothing about the Osprey model: it takes an image and prompts and returns boolean masks in
the image's own pixel coordinates. It builds on the project's base layer only (``osprey.core.errors``,
``osprey.core.images``, ``osprey.core.masks``, ``osprey.core.lru``, ``osprey.core.devices``, ``osprey.core.options``; the
layering test allows exactly these). Submodules are imported lazily so ``import sam_bridge`` stays
cheap (no torch until a public name that needs it is used).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> the submodule that owns it
_EXPORTS = {
    "SamBridge": "predictor",
    "Prediction": "predictor",
    "Candidate": "predictor",
    "ImageKey": "predictor",
    "AutoMask": "everything",
    "segment_everything": "everything",
    "mask_at": "everything",
    "CacheStats": "cache",
    "build_sam": "build",
    "build_tiny_sam": "build",
    "CHECKPOINTS": "checkpoints",
    "MODEL_TYPES": "checkpoints",
    "CheckpointSpec": "checkpoints",
    "ensure_checkpoint": "checkpoints",
    "download_checkpoint": "checkpoints",
    "verify_checkpoint": "checkpoints",
    "SamBridgeError": "errors",
    "EmptyMaskError": "errors",
    "CheckpointError": "errors",
    "ImageError": "errors",
    "MaskError": "errors",
}

__all__ = [
    "CHECKPOINTS",
    "MODEL_TYPES",
    "AutoMask",
    "CacheStats",
    "Candidate",
    "CheckpointError",
    "CheckpointSpec",
    "EmptyMaskError",
    "ImageError",
    "ImageKey",
    "MaskError",
    "Prediction",
    "SamBridge",
    "SamBridgeError",
    "build_sam",
    "build_tiny_sam",
    "download_checkpoint",
    "ensure_checkpoint",
    "mask_at",
    "segment_everything",
    "verify_checkpoint",
]

if TYPE_CHECKING:
    from sam_bridge.build import build_sam, build_tiny_sam
    from sam_bridge.cache import CacheStats
    from sam_bridge.checkpoints import (
        CHECKPOINTS,
        MODEL_TYPES,
        CheckpointSpec,
        download_checkpoint,
        ensure_checkpoint,
        verify_checkpoint,
    )
    from sam_bridge.errors import (
        CheckpointError,
        EmptyMaskError,
        ImageError,
        MaskError,
        SamBridgeError,
    )
    from sam_bridge.everything import AutoMask, mask_at, segment_everything
    from sam_bridge.predictor import Candidate, ImageKey, Prediction, SamBridge


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sam_bridge' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"sam_bridge.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
