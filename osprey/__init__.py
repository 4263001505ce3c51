"""osprey-open: a clean re-implementation of Osprey (CVPR 2024), pixel understanding with visual
instruction tuning.

Importing this package is cheap: the public names below load their modules on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "Osprey": "osprey.pipeline",
    "Answer": "osprey.pipeline",
    "Generation": "osprey.pipeline",
    "OspreyConfig": "osprey.config",
    "OspreyModel": "osprey.model.osprey",
    "load_osprey": "osprey.checkpoint",
    "save_osprey": "osprey.checkpoint",
    "export_original": "osprey.checkpoint",
    "Turn": "osprey.conversation",
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
    "load_osprey",
    "save_osprey",
]

if TYPE_CHECKING:
    from osprey.checkpoint import export_original, load_osprey, save_osprey
    from osprey.config import OspreyConfig
    from osprey.conversation import Turn
    from osprey.model.osprey import OspreyModel
    from osprey.pipeline import Answer, Generation, Osprey


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'osprey' has no attribute {name!r}")
