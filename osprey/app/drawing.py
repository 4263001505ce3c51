"""Drawing: the one place that turns masks and sessions into pixels, for the app's canvas, its
candidate thumbnails, "describe all" overlays and the export. Pure numpy / OpenCV (no UI code)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from osprey.app.session import Session

# The mask being built (gold, see-through, white outline); "segment everything" masks are lighter.
CURRENT = (255, 215, 0)
AUTO_ALPHA = 0.35
# What the page is sent to show: at most this many pixels on the long side (never the original).
DISPLAY_SIDE = 1024

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


def highlight(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The mask being built: a gold see-through fill with a white outline, on a copy."""
    return contour(blend(image, mask, CURRENT, 0.5), mask, (255, 255, 255))


# ---------------------------------------------------------------------------------------------
# display resolution (the one place that scales image pixels for display)


def display_size(height: int, width: int, side: int = DISPLAY_SIDE) -> tuple[int, int]:
    """(h, w) an image of ``height`` x ``width`` is shown at: the long side at most ``side``."""
    scale = min(1.0, side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def to_display(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An (H, W, 3) image or a bool (H, W) mask at ``size`` = (h, w) (area averaging; a mask
    keeps the pixels at least half covered)."""
    if image.shape[:2] == tuple(size):
        return image
    h, w = size
    if image.dtype == bool:
        small = cv2.resize(image.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
        return small >= 0.5
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------------------------------------
# a whole session


def render(
    session: Session, show_auto: bool = True, size: tuple[int, int] | None = None,
    prompt: bool = True, base: np.ndarray | None = None,
) -> np.ndarray | None:  # fmt: skip
    """The canvas for ``session``: its regions (coloured, named), the mask being built, the
    clicks and the box; with no region yet, the "segment everything" masks (numbered, with
    their labels once described). None before an image is open. ``size`` (h, w): drawn at that
    size (the display size) instead of the image's; ``prompt=False`` leaves out the mask being
    built, the clicks and the box (the page draws those); ``base``: the image at ``size``."""
    if session.image is None:
        return None
    size = size or (session.image.height, session.image.width)
    image = base if base is not None else to_display(session.image.rgb, size)
    out = image
    if show_auto and session.auto and not session.regions:
        out = draw_regions(out, [to_display(a.mask, size) for a in session.auto],
                           [color(i) for i in range(len(session.auto))], auto_names(session),
                           alpha=AUTO_ALPHA)  # fmt: skip
    if session.regions:
        out = draw_regions(
            out, [to_display(r.mask, size) for r in session.regions],
            [r.color for r in session.regions], session.names(),
        )  # fmt: skip
    out = out.copy() if out is image else out
    if prompt:
        _draw_prompt(out, session, size[1] / session.image.width)
    return out


def _draw_prompt(out: np.ndarray, session: Session, scale: float) -> None:
    """The mask being built, the clicks and the box, in place on ``out`` (``scale``: display
    pixels per image pixel)."""
    mask = session.current_mask()
    if mask is not None and mask.any():
        out[:] = highlight(out, to_display(mask, out.shape[:2]))
    draw_points(out, [(x * scale, y * scale, lab) for x, y, lab in session.points])
    if session.box is not None:
        draw_box(out, [v * scale for v in session.box])
    if session.box_corner is not None:
        draw_points(out, [(session.box_corner[0] * scale, session.box_corner[1] * scale, 1)])


def auto_names(session: Session) -> list[str] | None:
    """Labels of the "segment everything" masks once described (``3:dog``), else None."""
    n = len(session.auto_labels)
    if not n:
        return None
    return [f"{i + 1}:{session.auto_labels[i]}" if i < n else "" for i in range(len(session.auto))]


def candidates(
    session: Session, size: tuple[int, int] | None = None
) -> list[tuple[np.ndarray, str]]:
    """SAM's candidates for the prompt being built, each highlighted on the image (at ``size``,
    default the image's) with its score (none when there is only one)."""
    pred = session.prediction
    if pred is None or session.image is None or len(pred.candidates) < 2:
        return []
    size = size or (session.image.height, session.image.width)
    image = to_display(session.image.rgb, size)
    return [(highlight(image, to_display(c.mask, size)), f"{c.score:.2f}") for c in pred.candidates]
