"""Drawing masks on images: pure numpy / OpenCV helpers the app uses (no UI code here)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# Distinct, readable colours (RGB) for region1, region2, ...; cycled beyond the table.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
    (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40),
    (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128),
)  # fmt: skip


def color(i: int) -> tuple[int, int, int]:
    """Colour of the i-th region (0-based)."""
    return PALETTE[i % len(PALETTE)]


def blend(
    image: np.ndarray, mask: np.ndarray, rgb: Sequence[int], alpha: float = 0.5
) -> np.ndarray:
    """See-through fill of ``mask`` (bool (H, W)) on ``image`` ((H, W, 3) uint8), returns a copy."""
    out = image.copy()
    m = mask.astype(bool)
    tint = np.asarray(rgb, dtype=np.float32)
    out[m] = np.clip(out[m].astype(np.float32) * (1 - alpha) + tint * alpha, 0, 255).astype(
        np.uint8
    )
    return out


def contour(
    image: np.ndarray, mask: np.ndarray, rgb: Sequence[int], thickness: int = 2
) -> np.ndarray:
    """Draw the outline of ``mask`` in place and return the image."""
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    cv2.drawContours(
        image, contours, -1, tuple(int(c) for c in rgb), thickness, lineType=cv2.LINE_AA
    )
    return image


def label(image: np.ndarray, mask: np.ndarray, text: str, rgb: Sequence[int]) -> np.ndarray:
    """Write ``text`` on a filled box at the mask's most interior point (distance transform)."""
    m = mask.astype(np.uint8)
    if not m.any():
        return image
    dist = cv2.distanceTransform(np.pad(m, 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    scale = max(0.4, min(image.shape[:2]) / 900)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x0 = int(np.clip(x - tw // 2, 0, max(0, image.shape[1] - tw - 4)))
    y0 = int(np.clip(y - th // 2, 0, max(0, image.shape[0] - th - base - 4)))
    cv2.rectangle(
        image, (x0, y0), (x0 + tw + 4, y0 + th + base + 4), tuple(int(c) for c in rgb), -1
    )
    dark = sum(rgb) > 382
    cv2.putText(
        image, text, (x0 + 2, y0 + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
        (0, 0, 0) if dark else (255, 255, 255), 1, cv2.LINE_AA,
    )  # fmt: skip
    return image


def draw_regions(
    image: np.ndarray,
    masks: Sequence[np.ndarray],
    colors: Sequence[Sequence[int]],
    names: Sequence[str] | None = None,
    alpha: float = 0.45,
) -> np.ndarray:
    """All regions: fills (larger first, so small ones stay visible), outlines, optional labels."""
    out = image.copy()
    order = sorted(range(len(masks)), key=lambda i: -int(masks[i].sum()))
    for i in order:
        out = blend(out, masks[i], colors[i], alpha)
    for i in order:
        contour(out, masks[i], colors[i])
    if names:
        for i in order:
            label(out, masks[i], names[i], colors[i])
    return out


def draw_points(image: np.ndarray, points: Sequence[tuple[float, float, int]]) -> np.ndarray:
    """Clicks as dots: green for positive, red for negative (label 1 / 0); in place."""
    radius = max(4, min(image.shape[:2]) // 100)
    for x, y, lab in points:
        fill = (40, 200, 60) if lab else (220, 40, 40)
        cv2.circle(
            image, (int(round(x)), int(round(y))), radius + 2, (255, 255, 255), -1, cv2.LINE_AA
        )
        cv2.circle(image, (int(round(x)), int(round(y))), radius, fill, -1, cv2.LINE_AA)
    return image


def draw_box(
    image: np.ndarray, box: Sequence[float], rgb: Sequence[int] = (255, 215, 0)
) -> np.ndarray:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    cv2.rectangle(image, (x0, y0), (x1, y1), tuple(int(c) for c in rgb), 2, cv2.LINE_AA)
    return image


def focus(image: np.ndarray, mask: np.ndarray, dim: float = 0.5) -> np.ndarray:
    """Darken everything outside ``mask`` and outline it in white (the original demo's selection)."""
    out = image.copy()
    outside = ~mask.astype(bool)
    out[outside] = (out[outside].astype(np.float32) * (1 - dim)).astype(np.uint8)
    return contour(out, mask, (255, 255, 255))
