"""Prompt checking: clicks and boxes in an image's own pixel coordinates, validated before SAM.

Conventions (SAM's): a point is ``(x, y)`` = (column, row) in pixels of the original image; label
1 is a positive click ("this"), 0 a negative one ("not this"). A box is ``(x0, y0, x1, y1)`` with
the same axes. Sub-pixel floats are fine. SAM maps points into its 1024-pixel frame by scaling
alone (``ResizeLongestSide.apply_coords``), so an integer click lands inside its own pixel (at its
top-left corner: at most half a pixel from the centre), never in a neighbour. Pure numpy: no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sam_bridge.errors import SamBridgeError

PointsLike = Sequence[Sequence[float]] | Sequence[float] | np.ndarray
BoxLike = Sequence[float] | np.ndarray


@dataclass(frozen=True, eq=False)
class Prompt:
    """A checked prompt for one image of size ``image_size`` = (H, W)."""

    image_size: tuple[int, int]
    points: np.ndarray | None  # float64 (N, 2) as (x, y); None when there are no points
    labels: np.ndarray | None  # int32 (N,), 1 positive / 0 negative
    box: np.ndarray | None  # float64 (4,) as (x0, y0, x1, y1), x0 < x1 and y0 < y1

    @property
    def num_points(self) -> int:
        return 0 if self.points is None else len(self.points)


# ---------------------------------------------------------------------------------------------
# helpers


def _as_points(points: PointsLike) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 2:
        arr = arr[None]
    if arr.size == 0:
        return arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise SamBridgeError(f"points must be (N, 2) as (x, y), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise SamBridgeError("points hold NaN or infinite coordinates")
    return arr


def _as_labels(labels: Sequence[int] | np.ndarray | None, n: int) -> np.ndarray:
    if labels is None:
        return np.ones(n, dtype=np.int32)
    arr = np.asarray(labels).reshape(-1)
    if arr.shape[0] != n:
        raise SamBridgeError(f"{n} points but {arr.shape[0]} labels")
    if not np.isin(arr, (0, 1)).all():
        raise SamBridgeError(f"labels must be 1 (positive) or 0 (negative), got {arr.tolist()}")
    return arr.astype(np.int32)


def _check_inside(points: np.ndarray, height: int, width: int) -> None:
    outside = (points[:, 0] < 0) | (points[:, 0] >= width)
    outside |= (points[:, 1] < 0) | (points[:, 1] >= height)
    if outside.any():
        x, y = points[np.flatnonzero(outside)[0]]
        raise SamBridgeError(
            f"point ({x:g}, {y:g}) is outside the {width}x{height} image "
            f"(x must be in [0, {width}), y in [0, {height}))"
        )


def _as_box(box: BoxLike, height: int, width: int) -> np.ndarray:
    """Corners in any order -> (x0, y0, x1, y1), clipped to the image; zero area is an error."""
    arr = np.asarray(box, dtype=np.float64).reshape(-1)
    if arr.shape != (4,) or not np.isfinite(arr).all():
        raise SamBridgeError(f"a box is 4 finite numbers (x0, y0, x1, y1), got {np.asarray(box)}")
    x0, x1 = sorted(arr[[0, 2]])
    y0, y1 = sorted(arr[[1, 3]])
    clipped = np.array([max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)])
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        where = "has zero area" if x1 <= x0 or y1 <= y0 else "lies outside the image"
        raise SamBridgeError(f"box {arr.tolist()} {where} ({width}x{height})")
    return clipped


# ---------------------------------------------------------------------------------------------
# public API


def make_prompt(
    image_size: tuple[int, int],
    points: PointsLike | None = None,
    labels: Sequence[int] | np.ndarray | None = None,
    box: BoxLike | None = None,
) -> Prompt:
    """Check and normalise a prompt for an image of ``image_size`` = (H, W).

    ``points`` is (N, 2) or a single (x, y); ``labels`` defaults to all positive. Points must lie
    inside the image (0 <= x < W, 0 <= y < H). A box may be given corner-first in any order and is
    clipped to the image; a box of zero area (before or after clipping) is an error. At least one
    positive point or a box is required. Raises :class:`SamBridgeError` otherwise.
    """
    height, width = image_size
    pts = _as_points(points) if points is not None else np.zeros((0, 2))
    if labels is not None and points is None:
        raise SamBridgeError("labels given without points")
    lbl = _as_labels(labels, len(pts))
    _check_inside(pts, height, width)
    checked_box = _as_box(box, height, width) if box is not None else None
    if checked_box is None and not (lbl == 1).any():
        what = "only negative points" if len(pts) else "no prompt at all"
        raise SamBridgeError(f"{what}: give at least one positive point or a box")
    if len(pts) == 0:
        return Prompt((height, width), None, None, checked_box)
    return Prompt((height, width), pts, lbl, checked_box)
