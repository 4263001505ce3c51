"""The unit every source yields: an image, its region masks and the conversation about them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from osprey.inference.prompt_format import Turn


class Rejected(Exception):
    """A record that cannot become a training sample.

    ``reason`` is a short stable label (``empty_mask``, ``region_ref_out_of_range`` ...) under which
    the rejection is counted and reported; ``detail`` says which record and why, for logs.
    """

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Sample:
    """One conversation about one image (or none: a text-only sample).

    ``masks`` are bool (H, W) arrays in the image's own pixels, bound in order to the
    ``<mask><pos>`` pairs of ``turns``. ``size`` is the (H, W) the annotation claims, checked
    against the decoded image. ``events`` counts what the source dropped while building it
    (regions over the per-image cap, empty masks ...), reported with the training logs.
    """

    turns: list[Turn]
    image_path: Path | None = None
    masks: list[np.ndarray] = field(default_factory=list)
    size: tuple[int, int] | None = None
    source: str = ""
    key: str = ""
    events: Counter = field(default_factory=Counter)
