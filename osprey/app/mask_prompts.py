"""From prompts to candidate masks: clicks, boxes and "segment everything", on a session's image,
through SAM (any :class:`Segmenter`; ``sam_bridge.SamBridge`` is the real one).

:class:`MaskPrompts` changes the prompt part of a :class:`~osprey.app.session.Session` (points, box,
SAM's candidates, the "everything" masks) and returns messages for the user or raises
:class:`~osprey.core.errors.ServiceError`. Turning a candidate into a region is the service's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from osprey.app.session import Candidate, Proposal, Session
from osprey.core.constants import MAX_POINTS_PER_PROMPT
from osprey.core.errors import ServiceError
from osprey.core.images import ImageHandle, ImageLike

CLICK_MODES = ("positive", "negative", "box")  # what a click may be (pick mode is the page's)


class Segmenter(Protocol):
    """What the app needs from SAM (``sam_bridge.SamBridge`` implements it)."""

    model_type: str

    def prepare(self, image: ImageLike) -> np.ndarray: ...

    def check(self, height: int, width: int) -> None: ...

    def set_image(self, image: ImageLike) -> str: ...

    def predict(
        self, image: ImageLike, points=None, labels=None, box=None, previous=None, **options: Any
    ): ...

    def everything(self, image: ImageLike, **options: Any) -> list: ...


def need_image(session: Session) -> ImageHandle:
    """The session's open image (noted as used: idle ones are the first moved to disk)."""
    if session.image is None:
        raise ServiceError("Upload an image (or pick an example) first.")
    session.image.touch()
    return session.image


def prompt_labels(
    points: Sequence[Sequence[float]], labels: Sequence[int] | None, box: Sequence[float] | None
) -> list[int]:
    """A whole prompt's labels (1 for every point when none are given), checked: one per point,
    a point or a box at least, at most ``MAX_POINTS_PER_PROMPT`` points. Images and video
    frames share it."""
    labels = list(labels) if labels is not None else [1] * len(points)
    if len(labels) != len(points):
        raise ServiceError(f"{len(points)} points but {len(labels)} labels")
    if not points and box is None:
        raise ServiceError("Give at least one point or a box.")
    if len(points) > MAX_POINTS_PER_PROMPT:
        raise ServiceError(f"at most {MAX_POINTS_PER_PROMPT} points per prompt")
    return labels


def _inside(handle: ImageHandle, x: float, y: float) -> None:
    if not (0 <= x < handle.width and 0 <= y < handle.height):
        raise ServiceError(
            f"The click ({x:g}, {y:g}) is outside the {handle.width}x{handle.height} image."
        )


def _check_box(handle: ImageHandle, box: Sequence[float]) -> None:
    """A box [x0, y0, x1, y1] of positive size inside the image (the edges included)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x0 < x1 and y0 < y1):
        raise ServiceError(
            f"The box [{x0:g}, {y0:g}, {x1:g}, {y1:g}] needs x0 < x1 and y0 < y1 (its "
            "top-left corner first)."
        )
    if not (x0 >= 0 and y0 >= 0 and x1 <= handle.width and y1 <= handle.height):
        raise ServiceError(
            f"The box [{x0:g}, {y0:g}, {x1:g}, {y1:g}] is not inside the "
            f"{handle.width}x{handle.height} image."
        )


class MaskPrompts:
    """Prompt -> candidate masks on one shared SAM."""

    def __init__(self, sam: Segmenter):
        self.sam = sam

    def click(
        self, session: Session, x: float, y: float, mode: str = "positive",
        mask_size: tuple[int, int] | None = None,
    ) -> str:  # fmt: skip
        """A click in ``positive`` / ``negative`` mode adds a point (refining the current mask);
        in ``box`` mode two clicks make a box. Returns a message for the user ("" if none).
        ``mask_size`` (h, w): the candidates' masks at that size (a preview for the page)."""
        if mode not in CLICK_MODES:
            raise ServiceError(f"Unknown click mode {str(mode)[:20]!r}: use one of {CLICK_MODES}.")
        _inside(need_image(session), x, y)
        if len(session.points) >= MAX_POINTS_PER_PROMPT:
            raise ServiceError(
                f"At most {MAX_POINTS_PER_PROMPT} clicks make one mask: add it as a region or "
                "clear the clicks."
            )
        if mode == "box":
            if session.box_corner is None:
                session.box_corner = (x, y)
                return "Now click the opposite corner of the box."
            (x0, y0), session.box_corner = session.box_corner, None
            if abs(x - x0) < 2 or abs(y - y0) < 2:
                raise ServiceError("The box is too thin: click two opposite corners.")
            session.box = (min(x0, x), min(y0, y), max(x0, x), max(y0, y))
        else:
            session.points.append((x, y, 0 if mode == "negative" else 1))
        return self._predict(session, mask_size)

    def prompt(
        self, session: Session, points: Sequence[Sequence[float]] = (),
        labels: Sequence[int] | None = None, box: Sequence[float] | None = None,
    ) -> Candidate:  # fmt: skip
        """Set a whole prompt at once (points with labels 1/0, and/or a box), as the API does;
        returns the best candidate."""
        handle = need_image(session)
        labels = prompt_labels(points, labels, box)
        if box is not None:
            _check_box(handle, box)
        session.points = [(float(x), float(y), int(lab)) for (x, y), lab in zip(points, labels)]
        session.box = tuple(float(v) for v in box) if box is not None else None
        session.prediction = None
        self._predict(session)
        if session.prediction.is_empty:
            raise ServiceError("SAM found no region for this prompt.")
        return session.prediction.candidates[0]

    def _predict(self, session: Session, mask_size: tuple[int, int] | None = None) -> str:
        """SAM on the session's whole prompt, refining the previous mask after the first click."""
        pts = [(x, y) for x, y, _ in session.points] or None
        labels = [lab for _, _, lab in session.points] or None
        refine = session.prediction is not None and len(session.points) > 1
        previous = session.prediction.logits if refine else None
        try:
            pred = self.sam.predict(
                session.image, points=pts, labels=labels, box=session.box, previous=previous,
                **({"mask_size": mask_size} if mask_size else {}),
            )  # fmt: skip
        except ValueError as exc:
            raise ServiceError(str(exc)) from exc
        candidates = tuple(Candidate.of(c.mask, c.score) for c in pred.candidates)
        session.prediction = Proposal(candidates, None if pred.is_empty else pred.best.logits)
        session.candidate = 0
        return "SAM found no region for this prompt; try another point." if pred.is_empty else ""

    def choose_candidate(self, session: Session, index: int) -> None:
        if session.prediction is None or not 0 <= index < len(session.prediction.candidates):
            raise ServiceError("No such candidate: click on the image first.")
        session.candidate = index

    def segment_everything(
        self, session: Session, points_per_side: int = 16, **options: Any
    ) -> int:  # options: SAM's thresholds, see sam_bridge.everything.segment_everything
        """Every mask SAM finds (largest first); returns how many."""
        handle = need_image(session)
        try:
            found = self.sam.everything(handle, points_per_side=points_per_side, **options)
        except ValueError as exc:
            raise ServiceError(str(exc)) from exc
        session.auto = [Candidate(a.rle, a.score, a.area, a.box) for a in found]
        session.auto_labels = []
        return len(session.auto)

    def pick_auto(self, session: Session, x: float, y: float) -> None:
        """Make the smallest "everything" mask under the click the current candidate."""
        _inside(need_image(session), x, y)
        col, row = int(x), int(y)
        for c in sorted(session.auto, key=lambda a: a.area):
            x0, y0, x1, y1 = c.box or (0, 0, 0, 0)
            if x0 <= col < x1 and y0 <= row < y1 and c.mask[row, col]:
                session.prediction, session.candidate = Proposal((c,)), 0
                return
        raise ServiceError("No mask under this click.")
