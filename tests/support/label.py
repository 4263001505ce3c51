"""Test helpers for ``osprey.label``: small image folders and a Ray actor that dies once."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from osprey.label.inputs import ImageItem
from osprey.label.regions import EverythingOptions

# The tiny SAM passes none of Meta's thresholds; with these it keeps a few (meaningless) masks.
LOOSE = EverythingOptions(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                          box_nms_thresh=1.0)  # fmt: skip


# the command-line flags of LOOSE, with tiny models, short answers and no progress bar
TINY_FLAGS = [
    "--tiny", "--points-per-side", "2", "--pred-iou-thresh", "0", "--stability-score-thresh", "0",
    "--box-nms-thresh", "1", "--max-regions", "3", "--max-new-tokens", "6", "--no-progress",
]  # fmt: skip


SIZES = [(96, 128), (120, 90), (80, 100)]  # (height, width) of the photos of photo_folder


def photo_folder(root: Path, rgb: np.ndarray) -> Path:
    """A folder of crops of ``rgb`` (img0.jpg, sub/img1.jpg, img2.png; sizes SIZES) and two
    unreadable images (broken.jpg: not an image; sub/truncated.jpg: a third of a JPEG), plus a
    file that is not listed (notes.txt)."""
    root.mkdir(parents=True, exist_ok=True)
    for i, (h, w) in enumerate(SIZES):
        path = root / ("sub" if i % 2 else "") / f"img{i}.{'png' if i % 3 == 2 else 'jpg'}"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(np.ascontiguousarray(rgb[i * 7 : i * 7 + h, i * 5 : i * 5 + w])).save(path)
    (root / "broken.jpg").write_bytes(b"not an image at all")
    real = (root / "img0.jpg").read_bytes()
    (root / "sub" / "truncated.jpg").write_bytes(real[: len(real) // 3])
    (root / "notes.txt").write_text("not listed: not an image suffix")
    return root


def dying_actor(marker: Path, victim: str) -> type:
    """A LabelActor class whose process exits (as a crash would) the first time any actor of
    the run is handed the image ``victim``; ``marker`` records that it happened. Defined in a
    function so that Ray pickles it by value (workers need not import the tests)."""
    from osprey.label.ray_backend import LabelActor

    class DyingActor(LabelActor):
        def __call__(self, batch):
            names = [ImageItem.from_json(str(t)).file_name for t in batch["item"]]
            if victim in names:
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    pass  # the retry: label it this time
                else:
                    os._exit(1)
            return super().__call__(batch)

    return DyingActor


def tiny_settings(**changes):
    """LabelSettings equal to TINY_FLAGS (tasks and the rest as given)."""
    from osprey.label.job import LabelSettings

    return LabelSettings(model="tiny-random", everything=LOOSE, max_regions=3, max_new_tokens=6,
                         **changes)  # fmt: skip
