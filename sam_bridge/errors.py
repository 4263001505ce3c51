"""The exceptions sam_bridge raises, on the project's one base class (:mod:`osprey.core.errors`). Kept
apart so that every module (and callers) can import them without pulling in torch."""

from __future__ import annotations

from osprey.core.errors import CheckpointError, ImageError, MaskError, OspreyError

__all__ = ["CheckpointError", "EmptyMaskError", "ImageError", "MaskError", "SamBridgeError"]


class SamBridgeError(OspreyError, ValueError):
    """A request sam_bridge cannot serve: no prompt, a point outside the image, a zero-area box, an
    unknown model type, logits from another image, ..."""


class EmptyMaskError(SamBridgeError):
    """SAM returned only empty masks for this prompt (nothing to select)."""
