"""ZeroGPU Spaces lend the GPU per request: handlers that use it are decorated with
``spaces.GPU``, a no-op elsewhere. ``spaces`` must be imported before torch in the process,
which ``app.py`` (the Space's entry file) does first."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

SECONDS = 120  # the longest a request may hold a lent GPU


def gpu(fn: Callable) -> Callable:
    """``fn`` as a ZeroGPU handler (``spaces.GPU``), or ``fn`` itself where ``spaces`` is not
    installed."""
    try:
        import spaces
    except ImportError:  # pragma: no cover - spaces is in requirements.txt
        return fn
    return spaces.GPU(duration=SECONDS)(fn)


def zero_gpu(consequence: str) -> bool:
    """On ZeroGPU Spaces the GPU is lent per request (no background thread can hold it): say
    ``consequence`` once and return True there."""
    if os.environ.get("SPACES_ZERO_GPU"):
        print(f"ZeroGPU: {consequence} (the GPU is not held between requests)", file=sys.stderr)
        return True
    return False
