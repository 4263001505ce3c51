"""One user's state in the app, as plain data: the open image, the prompt being built, the
regions, the chat, and the undo history. No models and no drawing here; the service
(``osprey/service.py``) changes it, the viewer (``osprey/viz.py``) draws it.

Masks are stored compactly as COCO RLE (a few KB for a typical region, where a boolean array of a
12-megapixel photo takes 12 MB) and decoded when they are used.

Region names live here too, in one place: the model knows the regions as ``region1``,
``region2``, ... by position; the user may give them names ("dog"), which are resolved to the
model's names in questions and shown again in answers.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from osprey.errors import OspreyError
from osprey.images import ImageHandle
from osprey.masks import decode_rle, encode_rle, rle_area, rle_box

MAX_UNDO = 50
MAX_LABEL_LENGTH = 40
# A name: letters (any script), digits, spaces and a few joiners; starts with a letter or digit.
_LABEL = re.compile(r"[^\W_][\w .'\-]*", re.UNICODE)
_RESERVED = re.compile(r"region\s*\d+", re.IGNORECASE)


class LabelError(OspreyError, ValueError):
    """A region name the user typed cannot be used (reserved, too long, odd characters)."""


# ---------------------------------------------------------------------------------------------
# masks


@dataclass(frozen=True, eq=False)
class Candidate:
    """A mask SAM proposes (for the prompt being built, or from "segment everything")."""

    rle: dict[str, Any]  # compressed COCO RLE of the mask, in the image's pixels
    score: float  # SAM's predicted IoU
    area: int
    box: tuple[int, int, int, int] | None  # (x0, y0, x1, y1), exclusive; None when empty

    @classmethod
    def of(cls, mask: np.ndarray, score: float) -> Candidate:
        rle = encode_rle(mask)
        return cls(rle, float(score), rle_area(rle), rle_box(rle))

    @property
    def mask(self) -> np.ndarray:
        """bool (H, W), decoded on each access."""
        return decode_rle(self.rle)


@dataclass(frozen=True, eq=False)
class Proposal:
    """SAM's answer to the prompt being built: candidates sorted by score, highest first, and the
    low-resolution logits of the best one (fed back to SAM when the next click refines it)."""

    candidates: tuple[Candidate, ...]
    logits: np.ndarray | None = None  # float32 (256, 256)

    @property
    def is_empty(self) -> bool:
        return all(c.area == 0 for c in self.candidates)


@dataclass(frozen=True, eq=False)
class Region:
    rle: dict[str, Any]  # the mask, compressed COCO RLE
    color: tuple[int, int, int]
    source: str  # click, box, everything, upload
    label: str = ""  # the user's name for it ("dog"); the model calls it regionK by position
    category: str = ""
    caption: str = ""
    detail: str = ""

    @classmethod
    def of(cls, mask: np.ndarray, color: tuple[int, int, int], source: str, **kw: str) -> Region:
        return cls(encode_rle(mask), color, source, **kw)

    @property
    def mask(self) -> np.ndarray:
        """bool (H, W), decoded on each access."""
        return decode_rle(self.rle)

    @property
    def area(self) -> int:
        return rle_area(self.rle)

    @property
    def box(self) -> tuple[int, int, int, int] | None:
        return rle_box(self.rle)


# ---------------------------------------------------------------------------------------------
# the session


@dataclass
class Session:
    """One browser tab (or API client session): everything the user has done on one image."""

    image: ImageHandle | None = None
    points: list[tuple[float, float, int]] = field(default_factory=list)  # (x, y, 1 | 0)
    box_corner: tuple[float, float] | None = None  # first click of a box
    box: tuple[float, float, float, float] | None = None
    prediction: Proposal | None = None
    candidate: int = 0  # the chosen one of prediction.candidates
    regions: list[Region] = field(default_factory=list)
    history: list[tuple[str, str]] = field(default_factory=list)  # (question, answer), model names
    pending: tuple[str, str] | None = None  # the exchange being answered: (question, text so far)
    undo_stack: list[list[Region]] = field(default_factory=list)
    redo_stack: list[list[Region]] = field(default_factory=list)
    auto: list[Candidate] = field(default_factory=list)  # "segment everything", largest first
    auto_labels: list[str] = field(default_factory=list)
    id: str = ""  # set when an image is opened (unique per opened image and session)
    prompt_serial: int = 0  # counts clear_prompt(): the page drops its own prompt when it changes

    def names(self) -> list[str]:
        return [display_name(i, r.label) for i, r in enumerate(self.regions)]

    def current_mask(self) -> np.ndarray | None:
        if self.prediction is None:
            return None
        return self.prediction.candidates[self.candidate].mask

    def reset(self, image: ImageHandle | None = None) -> None:
        """Start over (a new image): every field back to its default, a new id."""
        self.__init__(image=image, id=uuid.uuid4().hex)  # type: ignore[misc]

    def clear_prompt(self) -> None:
        self.points, self.box, self.box_corner, self.prediction = [], None, None, None
        self.prompt_serial += 1

    # -- region list with undo / redo -----------------------------------------------------------

    def set_regions(self, regions: list[Region], keep_chat: bool = True) -> None:
        """Replace the region list as one undoable step; ``keep_chat=False`` restarts the chat
        (regions were renumbered, so old answers name the wrong ones)."""
        self.undo_stack = [*self.undo_stack, self.regions][-MAX_UNDO:]
        self.redo_stack = []
        self.regions = regions
        if not keep_chat:
            self.history = []

    def undo(self) -> bool:
        if not self.undo_stack:
            return False
        self.redo_stack = [*self.redo_stack, self.regions]
        self.regions, self.undo_stack = self.undo_stack[-1], self.undo_stack[:-1]
        return True

    def redo(self) -> bool:
        if not self.redo_stack:
            return False
        self.undo_stack = [*self.undo_stack, self.regions]
        self.regions, self.redo_stack = self.redo_stack[-1], self.redo_stack[:-1]
        return True

    def update_region(self, index: int, **changes: Any) -> None:
        """Change fields of one region in place (answers; not an undo step)."""
        regions = list(self.regions)
        regions[index] = replace(regions[index], **changes)
        self.regions = regions


# ---------------------------------------------------------------------------------------------
# names


def model_name(index: int) -> str:
    """What the model calls the ``index``-th region (0-based): ``region1``, ``region2``, ..."""
    return f"region{index + 1}"


def display_name(index: int, label: str = "") -> str:
    """What the user sees: ``region2`` or ``region2 (dog)``."""
    return model_name(index) + (f" ({label})" if label else "")


def check_label(label: str) -> str:
    """A region name as typed -> the name to keep; :class:`LabelError` says what is wrong."""
    label = " ".join(label.split())
    if not label:
        return ""
    if len(label) > MAX_LABEL_LENGTH:
        raise LabelError(f"A region name is at most {MAX_LABEL_LENGTH} characters.")
    if _RESERVED.fullmatch(label):
        raise LabelError("Names like 'region3' are reserved for the model's own numbering.")
    if not _LABEL.fullmatch(label):
        raise LabelError(
            "A region name holds letters, digits, spaces and . ' - only, and starts with a "
            "letter or digit."
        )
    return label


def to_model_names(regions: list[Region], text: str) -> str:
    """Replace the user's region names in ``text`` by the model's (``dog`` -> ``region2``),
    longest names first so that "red car" wins over "car"."""
    for i, r in sorted(enumerate(regions), key=lambda p: -len(p[1].label)):
        if r.label:
            text = re.sub(rf"\b{re.escape(r.label)}\b", model_name(i), text, flags=re.IGNORECASE)
    return text


def to_user_names(regions: list[Region], text: str) -> str:
    """Replace the model's ``regionK`` in ``text`` by what the user sees (``region2 (dog)``)."""

    def sub(m: re.Match) -> str:
        i = int(m.group(1)) - 1
        return display_name(i, regions[i].label) if 0 <= i < len(regions) else m.group(0)

    return re.sub(r"\bregion(\d+)\b", sub, text)
