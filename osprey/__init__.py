"""osprey-open: a clean re-implementation of Osprey (CVPR 2024), pixel understanding with visual
instruction tuning.

Importing this package is cheap: the public names below load their modules on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "Osprey": "osprey.inference.facade",
    "Answer": "osprey.inference.facade",
    "Generation": "osprey.inference.facade",
    "OspreyConfig": "osprey.model.config",
    "OspreyModel": "osprey.model.osprey",
    "load_osprey": "osprey.model.checkpoint",
    "save_osprey": "osprey.model.checkpoint",
    "export_original": "osprey.model.checkpoint",
    "Turn": "osprey.inference.prompt_format",
    "load_image": "osprey.core.images",
    "load_mask_png": "osprey.core.masks",
    "save_mask_png": "osprey.core.masks",
}

__all__ = [
    "Answer",
    "Generation",
    "Osprey",
    "OspreyConfig",
    "OspreyModel",
    "Turn",
    "__version__",
    "export_original",
    "load_image",
    "load_mask_png",
    "load_osprey",
    "save_mask_png",
    "save_osprey",
]

if TYPE_CHECKING:
    from osprey.core.images import load_image
    from osprey.core.masks import load_mask_png, save_mask_png
    from osprey.inference.facade import Answer, Generation, Osprey
    from osprey.inference.prompt_format import Turn
    from osprey.model.checkpoint import export_original, load_osprey, save_osprey
    from osprey.model.config import OspreyConfig
    from osprey.model.osprey import OspreyModel


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'osprey' has no attribute {name!r}")
