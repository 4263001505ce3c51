"""One user's state in the app, as plain data: the open image, the prompt being built, the
regions, the chat, and the undo history. No models and no drawing here; the service
(``osprey/app/service.py``) changes it, the viewer (``osprey/app/drawing.py``) draws it.

Masks are stored compactly as COCO RLE (a few KB for a typical region, where a boolean array of a
12-megapixel photo takes 12 MB) and decoded when they are used.

Region names live here too, in one place: the model knows the regions as ``region1``,
``region2``, ... by position; the user may give them names ("dog"), which are resolved to the
model's names in questions and shown again in answers.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from osprey.core.errors import OspreyError, ServiceError
from osprey.core.images import ImageHandle
from osprey.core.masks import RleMasks, decode_rle, encode_rle, rle_area, rle_box

MAX_UNDO = 50
MAX_LABEL_LENGTH = 40
# A name: letters (any script), digits, spaces and a few joiners; starts with a letter or digit.
_LABEL = re.compile(r"[^\W_][\w .'\-]*", re.UNICODE)
_RESERVED = re.compile(r"region\s*\d+", re.IGNORECASE)
_MODEL_NAME = re.compile(r"\bregion(\d+)\b")
# Words that questions are made of: a region may not be named by one of them alone (articles,
# prepositions, pronouns, question words, common verbs and conjunctions, and "region" itself).
COMMON_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "this",
        "that",
        "these",
        "those",
        "some",
        "any",
        "each",
        "every",
        "all",
        "both",
        "either",
        "neither",
        "no",
        "in",
        "on",
        "at",
        "of",
        "to",
        "for",
        "with",
        "by",
        "from",
        "about",
        "into",
        "onto",
        "over",
        "under",
        "above",
        "below",
        "between",
        "among",
        "near",
        "behind",
        "before",
        "after",
        "around",
        "through",
        "across",
        "against",
        "along",
        "beside",
        "beyond",
        "inside",
        "outside",
        "within",
        "without",
        "up",
        "down",
        "off",
        "out",
        "than",
        "as",
        "like",
        "i",
        "me",
        "my",
        "mine",
        "you",
        "your",
        "yours",
        "he",
        "him",
        "his",
        "she",
        "her",
        "hers",
        "it",
        "its",
        "we",
        "us",
        "our",
        "ours",
        "they",
        "them",
        "their",
        "theirs",
        "myself",
        "yourself",
        "itself",
        "themselves",
        "one",
        "ones",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "where",
        "when",
        "why",
        "how",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "do",
        "does",
        "did",
        "done",
        "have",
        "has",
        "had",
        "can",
        "could",
        "will",
        "would",
        "shall",
        "should",
        "may",
        "might",
        "must",
        "and",
        "or",
        "but",
        "nor",
        "not",
        "so",
        "if",
        "then",
        "there",
        "here",
        "region",
        "regions",
        "image",
        "picture",
        "photo",
    ]
)


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
    top: tuple[tuple[str, float], ...] = ()  # top-k (class, probability) over `vocabulary`
    vocabulary: str = ""

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


@dataclass(eq=False)
class Session:
    """One browser tab (or API client session): everything the user has done on one image.
    Compared by identity (the service keeps a lock per session)."""

    image: ImageHandle | None = None
    points: list[tuple[float, float, int]] = field(default_factory=list)  # (x, y, 1 | 0)
    box_corner: tuple[float, float] | None = None  # first click of a box
    box: tuple[float, float, float, float] | None = None
    prediction: Proposal | None = None
    candidate: int = 0  # the chosen one of prediction.candidates
    regions: list[Region] = field(default_factory=list)
    history: list[tuple[str, str]] = field(default_factory=list)  # (question, answer), model names
    chat: list[dict[str, str]] = field(
        default_factory=list
    )  # the conversation as the page shows it
    pending: tuple[str, str] | None = None  # the exchange being answered: (question, text so far)
    undo_stack: list[list[Region]] = field(default_factory=list)
    redo_stack: list[list[Region]] = field(default_factory=list)
    auto: list[Candidate] = field(default_factory=list)  # "segment everything", largest first
    auto_labels: list[str] = field(default_factory=list)
    id: str = ""  # set when an image is opened (unique per opened image and session)
    prompt_serial: int = 0  # counts clear_prompt(): the page drops its own prompt when it changes
    revision: int = 0  # counts changes that renumber or reshape the regions (not a rename)

    def names(self) -> list[str]:
        return [display_name(i, r.label) for i, r in enumerate(self.regions)]

    def region_masks(self) -> RleMasks:
        """The regions' masks, each decoded when it is read (never all at once)."""
        return RleMasks([r.rle for r in self.regions])

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
        if _masks_changed(self.regions, regions) and not _appended(self.regions, regions):
            self.revision += 1
        self.undo_stack = [*self.undo_stack, self.regions][-MAX_UNDO:]
        self.redo_stack = []
        self.regions = regions
        if not keep_chat:
            self.history = []

    @property
    def can_undo(self) -> bool:
        return bool(self.undo_stack)

    @property
    def can_redo(self) -> bool:
        return bool(self.redo_stack)

    def undo_renumbers(self) -> bool:
        """Whether :meth:`undo` would change the regions themselves (not only a name)."""
        return bool(self.undo_stack) and _masks_changed(self.regions, self.undo_stack[-1])

    def redo_renumbers(self) -> bool:
        return bool(self.redo_stack) and _masks_changed(self.regions, self.redo_stack[-1])

    def undo(self) -> bool:
        """Step back one region edit. If that changes the regions (not only a name), the chat
        restarts: its answers may name regions that no longer exist or were renumbered."""
        if not self.undo_stack:
            return False
        self._step(self.undo_stack[-1])
        self.redo_stack = [*self.redo_stack, self.regions]
        self.regions, self.undo_stack = self.undo_stack[-1], self.undo_stack[:-1]
        return True

    def redo(self) -> bool:
        if not self.redo_stack:
            return False
        self._step(self.redo_stack[-1])
        self.undo_stack = [*self.undo_stack, self.regions]
        self.regions, self.redo_stack = self.redo_stack[-1], self.redo_stack[:-1]
        return True

    def _step(self, regions: list[Region]) -> None:
        if _masks_changed(self.regions, regions):
            self.revision += 1
            self.history = []

    def update_region(self, index: int, **changes: Any) -> None:
        """Change fields of one region in place (answers; not an undo step)."""
        regions = list(self.regions)
        regions[index] = replace(regions[index], **changes)
        self.regions = regions

    def record(self, asked: list[Region], changes: list[dict[str, Any]]) -> list[str | None]:
        """Keep answers computed for the regions ``asked`` (as they were when asked) on those
        regions as they are now: found by their masks, so a rename meanwhile keeps them and a
        region deleted meanwhile gets none. Returns each one's display name now (None: gone)."""
        regions, names = list(self.regions), []
        for region, change in zip(asked, changes):
            i = next(
                (k for k, r in enumerate(regions) if r.rle["counts"] == region.rle["counts"]), None
            )
            if i is not None:
                regions[i] = replace(regions[i], **change)
            names.append(None if i is None else display_name(i, regions[i].label))
        self.regions = regions
        return names


def _masks_changed(old: list[Region], new: list[Region]) -> bool:
    """Whether two region lists differ in more than names and answers."""
    return [r.rle["counts"] for r in old] != [r.rle["counts"] for r in new]


def _appended(old: list[Region], new: list[Region]) -> bool:
    """``new`` is ``old`` plus regions at the end (an answer about ``old`` stays true)."""
    return len(new) >= len(old) and not _masks_changed(old, new[: len(old)])


# ---------------------------------------------------------------------------------------------
# names


def model_name(index: int) -> str:
    """What the model calls the ``index``-th region (0-based): ``region1``, ``region2``, ..."""
    return f"region{index + 1}"


def display_name(index: int, label: str = "") -> str:
    """What the user sees: ``region2`` or ``region2 (dog)``."""
    return model_name(index) + (f" ({label})" if label else "")


def check_label(label: str, others: Sequence[str] = ()) -> str:
    """A region name as typed -> the name to keep; :class:`LabelError` says what is wrong.

    ``others``: the names of the image's other regions; a name is unique among them (case
    aside). A name that is a word questions are made of ("the", "a", "on", "it", "what", ...)
    is refused: every question holding that word would be read as naming the region."""
    label = " ".join(str(label).split())
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
    if label.lower() in COMMON_WORDS:
        raise LabelError(
            f"'{label}' is a word that questions are made of, so every question holding it "
            f"would name the region; choose a noun or a phrase instead (e.g. 'red cup')."
        )
    if label.lower() in (o.lower() for o in others if o):
        raise LabelError(f"Another region is already named '{label}'; choose another name.")
    return label


def _name_pattern(label: str) -> re.Pattern:
    """``label`` as whole words, case aside: "dog" matches in "the Dog's bowl", not in "hotdog"."""
    return re.compile(rf"(?<![\w]){re.escape(label)}(?![\w])", re.IGNORECASE)


def recognised_names(regions: list[Region], text: str) -> list[tuple[str, int]]:
    """The user's region names found in ``text`` as whole words (longest first, as
    :func:`to_model_names` reads them): (name, region index) pairs, in the regions' order."""
    found, rest = [], text
    for i, r in sorted(enumerate(regions), key=lambda p: -len(p[1].label)):
        if r.label and _name_pattern(r.label).search(rest):
            found.append((r.label, i))
            rest = _name_pattern(r.label).sub(" ", rest)
    return sorted(found, key=lambda p: p[1])


def to_model_names(regions: list[Region], text: str) -> str:
    """Replace the user's region names in ``text`` by the model's (``dog`` -> ``region2``),
    whole words only, longest names first so that "red car" wins over "car"."""
    for i, r in sorted(enumerate(regions), key=lambda p: -len(p[1].label)):
        if r.label:
            text = _name_pattern(r.label).sub(model_name(i), text)
    return text


def model_question(regions: list[Region], question: Any, max_chars: int) -> tuple[str, str]:
    """A user's question -> (the model's question, a note for the user: the names read as
    regions, and any ``regionK`` it names that the image does not have). :class:`ServiceError`
    for a question that is not text, empty, or longer than ``max_chars``."""
    if not isinstance(question, str) or not question.strip():
        raise ServiceError("Type a question.")
    question = question.strip()
    if len(question) > max_chars:
        raise ServiceError(f"A question is at most {max_chars} characters.")
    names = recognised_names(regions, question)
    model_q = to_model_names(regions, question)
    notes = [f"Read {', '.join(f'{n!r} as {model_name(i)}' for n, i in names)}."] if names else []
    missing = unknown_regions(model_q, len(regions))
    if missing:
        have = ", ".join(display_name(i, r.label) for i, r in enumerate(regions)) or "none yet"
        notes.append(f"This image has no {missing[0]} (its regions: {have}).")
    return model_q, " ".join(notes)


def unknown_regions(text: str, count: int) -> list[str]:
    """The ``regionK`` names in a (model's) question that no region has (K > ``count``)."""
    return [m.group(0) for m in _MODEL_NAME.finditer(text) if not 1 <= int(m.group(1)) <= count]


def to_user_names(regions: list[Region], text: str) -> str:
    """Replace the model's ``regionK`` in ``text`` by what the user sees (``region2 (dog)``)."""

    def sub(m: re.Match) -> str:
        i = int(m.group(1)) - 1
        return display_name(i, regions[i].label) if 0 <= i < len(regions) else m.group(0)

    return re.sub(r"\bregion(\d+)\b", sub, text)
