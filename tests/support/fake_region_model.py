"""A deterministic stand-in for ``osprey.Osprey`` in the evaluation tests.

It really looks at its inputs: a region is named after the known mask it overlaps most (IoU), so
a wrong or misaligned mask gives a wrong answer; regions smaller than ``min_area`` pixels get
``small_answer`` (a deliberate mistake the tests can count). Image-level questions (no masks) are
answered "Yes, there is ..." when the named class is among the known labels, else "No, there is
not." For ``--scoring likelihood`` it ranks: the class named like its answer gets ``0.7``, the
rest share what is left (no class named so: all equal).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np


class FakeRegionModel:
    def __init__(
        self,
        masks: np.ndarray,
        names: Sequence[str],
        min_area: int = 400,
        small_answer: str = "a small thing",
        prefix: str = "",
    ):
        self.masks = np.asarray(masks, dtype=bool)
        self.names = list(names)
        self.min_area = min_area
        self.small_answer = small_answer
        self.prefix = prefix
        self.calls: list[dict] = []

    def name_for(self, mask: np.ndarray) -> str:
        if mask.sum() < self.min_area:
            return self.small_answer
        inter = (self.masks & mask).sum(axis=(1, 2))
        union = (self.masks | mask).sum(axis=(1, 2))
        return self.names[int(np.argmax(inter / np.maximum(union, 1)))]

    def generate(
        self,
        image,
        masks,
        message,
        *,
        max_new_tokens=1024,
        do_sample=False,
        temperature=0.2,
        top_p=0.6,
        seed=None,
    ) -> str:
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        assert message.count("<mask><pos>") == len(masks)
        self.calls.append(
            {"message": message, "n_masks": len(masks), "seed": seed, "do_sample": do_sample}
        )
        if masks:
            return self.prefix + " and ".join(self.name_for(m) for m in masks)
        asked = re.search(r"Is there an? (.+?) in the image", message)
        if asked and asked.group(1) in self.names:
            return f"Yes, there is a {asked.group(1)} in the image."
        return "No, there is not."

    def rank(self, image, masks, vocabulary) -> np.ndarray:
        assert image.ndim == 3 and all(m.shape == image.shape[:2] for m in masks)
        self.calls.append({"rank": len(masks), "vocabulary": vocabulary.name})
        k = len(vocabulary)
        out = np.full((len(masks), k), 1.0 / k)
        for row, mask in zip(out, masks):
            name = self.name_for(mask)
            if name in vocabulary.names:
                row[:] = 0.3 / (k - 1) if k > 1 else 0.0
                row[vocabulary.names.index(name)] = 0.7 if k > 1 else 1.0
        return out
