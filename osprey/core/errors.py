"""The project's exceptions: one base class, :class:`OspreyError`, for every failure the user can
act on. Its message is written for the user (what is wrong and what to do); the command lines and
the app print it as one line, never a traceback.

Kept free of imports so that every module, ``sam_bridge`` included, can use it. Errors that belong
to one module (``RenderError``, ``SpliceError``, ``DataError``, ...) are defined there, on this base;
the ones several packages raise live here.
"""

from __future__ import annotations


class OspreyError(Exception):
    """Base of every error meant for the user (bad input, missing weights, impossible settings)."""


class UsageError(OspreyError, ValueError):
    """A setting or argument that cannot work (an unknown dtype, a device that is not there, ...)."""


class ImageError(OspreyError, ValueError):
    """The input cannot be read as an image (corrupt, unsupported, empty or too large)."""


class MaskError(OspreyError, ValueError):
    """A mask cannot be decoded, or does not fit its image."""


class CheckpointError(OspreyError, RuntimeError):
    """A checkpoint cannot be found, downloaded, verified or loaded (Osprey, CLIP or SAM). The
    message says how to fix it."""


class CheckpointNotFound(CheckpointError, FileNotFoundError):
    """Weights are missing locally and cannot be downloaded (offline, no access, wrong name)."""


class ServiceError(OspreyError, ValueError):
    """Something the user of the app should fix (no image yet, a click outside it, no region)."""
