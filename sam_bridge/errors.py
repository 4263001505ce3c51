"""The exceptions sam_bridge raises. Kept apart so that every module (and callers) can import them
without pulling in torch."""

from __future__ import annotations


class SamBridgeError(ValueError):
    """A request sam_bridge cannot serve: no prompt, a point outside the image, a zero-area box, an
    unknown model type, logits from another image, ..."""


class EmptyMaskError(SamBridgeError):
    """SAM returned only empty masks for this prompt (nothing to select)."""


class CheckpointError(RuntimeError):
    """A checkpoint cannot be found, downloaded, verified or loaded. The message says how to fix it."""
