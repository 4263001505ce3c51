"""RegionChat: the app's operations over shared models, on per-user :class:`Session` data.

Each operation changes the session and returns data (answers, counts, messages for the user) or
raises :class:`ServiceError` with a message meant for the user. Nothing here draws (that is
``osprey/viz.py``) or knows about Gradio (``app.py``). The models (Osprey, and SAM through the
:class:`Segmenter` protocol) are shared by every session and serialise their own device work.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from osprey import export, viz
from osprey import vocabulary as vocab
from osprey.constants import DEFAULT_MAX_NEW_TOKENS
from osprey.conversation import ContextLengthError
from osprey.errors import ImageError, ServiceError
from osprey.images import ImageHandle, ImageLike
from osprey.pipeline import Generation, Osprey
from osprey.processor import RegionError
from osprey.prompting import MaskPrompts, Segmenter, need_image
from osprey.session import (
    Candidate,
    LabelError,
    Region,
    Session,
    check_label,
    display_name,
    model_name,
    to_model_names,
    to_user_names,
)

DETAIL_TOKENS = 1024  # a detailed description may run long (the paper's setting)
EVERYTHING_CATEGORY_TOKENS, EVERYTHING_CAPTION_TOKENS = 16, 48
TASK_FIELDS = {"category": "category", "short": "caption", "detailed": "detail"}
MAX_TOP_K = 50


@dataclass(frozen=True)
class Reply:
    """A chat answer as it streams: the text so far (with the user's region names) and, with the
    last one (``done``), a note for the user (e.g. old turns left out of the context)."""

    text: str
    done: bool = False
    note: str = ""


class RegionChat:
    """Point-and-describe over shared models: ``osprey`` answers, ``sam`` segments."""

    def __init__(
        self, osprey: Osprey, sam: Segmenter, *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        max_regions: int = 50, detail_tokens: int = DETAIL_TOKENS,
    ):  # fmt: skip
        self.osprey = osprey
        self.sam = sam
        self.masks = MaskPrompts(sam)
        self.max_new_tokens = max_new_tokens
        self.detail_tokens = detail_tokens
        self.max_regions = max_regions
        self.untrained = osprey.untrained or getattr(sam, "model_type", "") == "tiny"
        self._stops: dict[str, threading.Event] = {}

    # -- image -------------------------------------------------------------------------------

    def open_image(self, session: Session, image: ImageLike | None) -> ImageHandle:
        """Start over on a new image: encode it once for SAM and once for Osprey."""
        if image is None:
            raise ServiceError("Upload an image first.")
        try:
            handle = ImageHandle.of(self.sam.prepare(image))
        except (ImageError, ValueError) as exc:
            raise ServiceError(f"This image cannot be used: {exc}") from exc
        self.sam.set_image(handle)
        self.osprey.set_image(handle)
        session.reset(handle)
        return handle

    def _image(self, session: Session) -> ImageHandle:
        return need_image(session)

    # -- prompts -> candidate masks (SAM): see osprey/prompting.py --------------------------------

    def click(self, session: Session, x: float, y: float, mode: str = "positive") -> str:
        return self.masks.click(session, x, y, mode)

    def prompt(self, session: Session, points=(), labels=None, box=None) -> Candidate:
        return self.masks.prompt(session, points, labels, box)

    def choose_candidate(self, session: Session, index: int) -> None:
        self.masks.choose_candidate(session, index)

    def current_mask(self, session: Session) -> np.ndarray | None:
        return session.current_mask()

    def clear_prompt(self, session: Session) -> None:
        session.clear_prompt()

    def segment_everything(self, session: Session, points_per_side: int = 16, **options) -> int:
        return self.masks.segment_everything(session, points_per_side, **options)

    def pick_auto(self, session: Session, x: float, y: float) -> None:
        self.masks.pick_auto(session, x, y)

    # -- prompts -> candidate masks ------------------------------------------------------------

    # -- regions -------------------------------------------------------------------------------

    def add_region(self, session: Session, source: str = "click") -> Region:
        """Keep the current candidate as a new region (region1, region2, ...)."""
        mask = session.current_mask()
        if mask is None or not mask.any():
            raise ServiceError("There is no mask to add: click on the object first.")
        region = self._new_region(session, mask, "box" if session.box is not None else source)
        session.clear_prompt()
        return region

    def add_mask(self, session: Session, mask: np.ndarray, label: str = "") -> Region:
        """Add a region from a mask the user already has (same size as the image)."""
        handle = self._image(session)
        mask = np.asarray(mask).astype(bool)
        if mask.shape != (handle.height, handle.width):
            raise ServiceError(
                f"The mask is {mask.shape[1]}x{mask.shape[0]}, the image {handle.width}x{handle.height}."
            )
        if not mask.any():
            raise ServiceError("The mask is empty.")
        return self._new_region(session, mask, "upload", label=self._label(label))

    def _new_region(
        self, session: Session, mask: np.ndarray, source: str, label: str = ""
    ) -> Region:
        if len(session.regions) >= self.max_regions:
            raise ServiceError(f"At most {self.max_regions} regions per image.")
        region = Region.of(mask, viz.color(len(session.regions)), source, label=label)
        session.set_regions([*session.regions, region])
        return region

    def rename(self, session: Session, index: int, label: str) -> None:
        self._check_index(session, index)
        session.set_regions(_replaced(session.regions, index, label=self._label(label)))

    def delete(self, session: Session, index: int) -> None:
        """Remove a region; the ones after it are renumbered, so the chat about them restarts."""
        self._check_index(session, index)
        kept = [r for i, r in enumerate(session.regions) if i != index]
        recoloured = [replace(r, color=viz.color(i)) for i, r in enumerate(kept)]
        session.set_regions(recoloured, keep_chat=False)

    def clear_regions(self, session: Session) -> None:
        session.set_regions([], keep_chat=False)

    def undo(self, session: Session) -> None:
        if not session.undo():
            raise ServiceError("Nothing to undo.")

    def redo(self, session: Session) -> None:
        if not session.redo():
            raise ServiceError("Nothing to redo.")

    def _check_index(self, session: Session, index: int) -> None:
        if not 0 <= index < len(session.regions):
            raise ServiceError(f"There is no {model_name(index)}.")

    @staticmethod
    def _label(label: str) -> str:
        try:
            return check_label(label)
        except LabelError as exc:
            raise ServiceError(str(exc)) from exc

    # -- asking --------------------------------------------------------------------------------

    def describe(
        self, session: Session, task: str, indices: Sequence[int] | None = None
    ) -> list[tuple[str, str]]:
        """``category`` / ``short`` / ``detailed`` for the chosen regions (default: all), batched.
        Returns (region's display name, answer) pairs; the answers are kept on the regions."""
        handle = self._image(session)
        if not session.regions:
            raise ServiceError("Add a region first: click on the image, then 'Add region'.")
        if task not in TASK_FIELDS:
            raise ServiceError(f"Unknown task {task!r}; choose one of {sorted(TASK_FIELDS)}.")
        indices = list(range(len(session.regions))) if not indices else list(indices)
        for i in indices:
            self._check_index(session, i)
        tokens = self.detail_tokens if task == "detailed" else self.max_new_tokens
        masks = [session.regions[i].mask for i in indices]
        texts = _user_errors(lambda: self.osprey.describe(handle, masks, task, Generation(tokens)))
        for i, text in zip(indices, texts):
            session.update_region(i, **{TASK_FIELDS[task]: text.strip()})
        return [
            (display_name(i, session.regions[i].label), t.strip()) for i, t in zip(indices, texts)
        ]

    def ask(
        self, session: Session, question: str, stop: threading.Event | None = None
    ) -> Iterator[Reply]:
        """Stream the answer to a free question about all regions (by their names or regionK) or,
        with no region, about the whole image. The exchange joins the chat history at the end.
        :meth:`stop` (or setting ``stop``, when given) ends it early."""
        handle = self._image(session)
        question = question.strip()
        if not question:
            raise ServiceError("Type a question.")
        masks = [r.mask for r in session.regions] or None
        model_q = to_model_names(session.regions, question)
        if stop is None:
            stop = self._stops.setdefault(session.id, threading.Event())
            stop.clear()
        answers = []
        stream = self.osprey.stream(
            self.osprey.ask, handle, masks, model_q, session.history,
            Generation(self.max_new_tokens), stop=stop, on_answer=answers.append,
        )  # fmt: skip
        try:
            for text in stream:
                if not answers:  # still streaming
                    yield Reply(to_user_names(session.regions, text))
                    continue
                # the final, post-processed answer (stream() reported its Answer just before it)
                session.history = [*session.history, (model_q, text)]
                yield Reply(to_user_names(session.regions, text), True, _dropped_note(answers[0]))
        except (RegionError, ContextLengthError) as exc:
            raise ServiceError(str(exc)) from exc

    def stop(self, session: Session) -> None:
        """End the answer streaming for this session (the Stop button)."""
        self._stops.setdefault(session.id, threading.Event()).set()

    def classify(
        self, session: Session, vocabulary: str, indices: Sequence[int] | None = None,
        top_k: int = 5,
    ) -> list[tuple[str, list[tuple[str, float]]]]:  # fmt: skip
        """The ``top_k`` classes of ``vocabulary`` (a built-in name or comma-separated names)
        with their probabilities for the chosen regions (default: all; kept on the regions) or,
        with no region, for the whole image. Returns (region's display name, top list) pairs."""
        handle = self._image(session)
        v = _vocabulary(vocabulary)
        if not 1 <= int(top_k) <= MAX_TOP_K:
            raise ServiceError(f"top_k must be between 1 and {MAX_TOP_K}.")
        if not session.regions:
            top = _user_errors(lambda: self.osprey.classify(handle, None, v, int(top_k)))
            return [("the image", top[0])]
        indices = list(range(len(session.regions))) if not indices else list(indices)
        for i in indices:
            self._check_index(session, i)
        masks = [session.regions[i].mask for i in indices]
        tops = _user_errors(lambda: self.osprey.classify(handle, masks, v, int(top_k)))
        for i, top in zip(indices, tops):
            session.update_region(i, top=tuple(top), vocabulary=v.name)
        return [(display_name(i, session.regions[i].label), t) for i, t in zip(indices, tops)]

    # -- segment everything --------------------------------------------------------------------

    def describe_all(
        self, session: Session, limit: int = 50, vocabulary: str | None = None
    ) -> list[dict[str, Any]]:
        """Category and short caption of every "everything" mask (largest first, up to ``limit``);
        with a ``vocabulary``, also each mask's most probable class in it (``label``, ``prob``),
        which then labels the overlay."""
        handle = self._image(session)
        if not session.auto:
            raise ServiceError(
                "No masks to describe: run 'Segment everything' first (or lower its thresholds)."
            )
        autos = session.auto[:limit]
        masks = [a.mask for a in autos]
        v = _vocabulary(vocabulary) if vocabulary else None
        gens = Generation(EVERYTHING_CATEGORY_TOKENS), Generation(EVERYTHING_CAPTION_TOKENS)
        cats = _user_errors(lambda: self.osprey.describe(handle, masks, "category", gens[0]))
        caps = _user_errors(lambda: self.osprey.describe(handle, masks, "short", gens[1]))
        rows = [
            {"mask": i + 1, "category": c.strip(), "caption": s.strip(), "area": a.area, "box": list(a.box)}
            for i, (a, c, s) in enumerate(zip(autos, cats, caps))
        ]  # fmt: skip
        session.auto_labels = [c.strip() for c in cats]
        if v is not None:
            tops = _user_errors(lambda: self.osprey.classify(handle, masks, v, 1))
            for row, ((name, prob),) in zip(rows, tops):
                row.update(label=name, prob=round(prob, 4), vocabulary=v.name)
            session.auto_labels = [f"{r['label']} {r['prob']:.2f}" for r in rows]
        return rows

    # -- export --------------------------------------------------------------------------------

    # -- export --------------------------------------------------------------------------------

    def export(self, session: Session) -> dict[str, Any]:
        """COCO-RLE JSON of the regions with their names, answers and the chat."""
        self._image(session)
        return export.to_json(session, self.osprey.name, self.untrained)

    def export_masks_zip(self, session: Session) -> bytes:
        """A zip with one 0/255 PNG per region, the overlay as the app draws it, and the JSON."""
        return export.to_zip(session, self.export(session))


# ---------------------------------------------------------------------------------------------
# helpers


def _user_errors(fn):
    """Run ``fn``; region and context errors become :class:`ServiceError`."""
    try:
        return fn()
    except (RegionError, ContextLengthError) as exc:
        raise ServiceError(str(exc)) from exc


def _vocabulary(spec: str | None) -> vocab.Vocabulary:
    """A user's vocabulary (never a server path): :class:`ServiceError` if unusable."""
    try:
        return vocab.resolve(spec or "")
    except vocab.VocabularyError as exc:
        raise ServiceError(f"Vocabulary: {exc}.") from exc


def _dropped_note(answer) -> str:
    n = answer.dropped_turns
    if not n:
        return ""
    return f"The chat no longer fits the model's context: its {n} oldest turn(s) were left out."


def _replaced(regions: list[Region], index: int, **changes: Any) -> list[Region]:
    out = list(regions)
    out[index] = replace(out[index], **changes)
    return out
