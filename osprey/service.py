"""RegionChat: the app's operations over shared models, on per-user :class:`Session` data.

Each operation changes the session and returns data (answers, counts, messages for the user) or
raises :class:`ServiceError` with a message meant for the user. Nothing here draws (that is
``osprey/viz.py``) or knows about Gradio (``app.py``). The models (Osprey, and SAM through the
:class:`Segmenter` protocol) are shared by every session and guard their own device work. On a
CPU, new uploads are encoded on a lane of their own at a lower OS priority
(:mod:`osprey.priority`): a click never waits for, or shares the cores equally with, someone
else's new image.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from osprey import export, viz
from osprey.constants import DEFAULT_MAX_NEW_TOKENS
from osprey.conversation import ContextLengthError
from osprey.errors import ImageError, ServiceError
from osprey.generation import Waiting
from osprey.images import ImageHandle, ImageLike
from osprey.pipeline import Generation, Osprey
from osprey.priority import ENCODE_NICE, Lane
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

MAX_QUESTION_CHARS = 2000
DETAIL_TOKENS = 1024  # a detailed description may run long (the paper's setting)
# seconds: an answer streams at most 10 updates a second (the words since in one): with 8
# visitors streaming, 20 a second made the p95 click 116-126 ms on a 2-core CPU, 10 made it 96-100 ms
STREAM_INTERVAL = 0.1
EVERYTHING_CATEGORY_TOKENS, EVERYTHING_CAPTION_TOKENS = 16, 48
TASK_FIELDS = {"category": "category", "short": "caption", "detailed": "detail"}


@dataclass(frozen=True)
class Reply:
    """A chat answer as it streams: the text so far (with the user's region names) and, with the
    last one (``done``), a note for the user (e.g. old turns left out of the context)."""

    text: str
    done: bool = False
    note: str = ""
    waiting: int = 0  # > 0: the answer waits in line (its place); the text has not started


class RegionChat:
    """Point-and-describe over shared models: ``osprey`` answers, ``sam`` segments."""

    def __init__(
        self, osprey: Osprey, sam: Segmenter, *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        max_regions: int = 50, detail_tokens: int = DETAIL_TOKENS,
        everything: dict[str, Any] | None = None, stream_interval: float = STREAM_INTERVAL,
        encode_lane: bool | None = None,
    ):  # fmt: skip
        """``everything``: default options of "segment everything" (SAM's grid and thresholds;
        the tiny, untrained SAM finds masks only with its thresholds at 0). ``stream_interval``:
        an answer streams at most one update per this many seconds. ``encode_lane``: new uploads
        encoded on a nicer thread of their own (default: when a model is on the CPU)."""
        self.osprey, self.sam = osprey, sam
        self.everything = {"points_per_side": 16, **(everything or {})}
        self.masks = MaskPrompts(sam)
        self.max_new_tokens, self.detail_tokens = max_new_tokens, detail_tokens
        self.max_regions = max_regions
        self.untrained = osprey.untrained or getattr(sam, "model_type", "") == "tiny"
        self.stream_interval = stream_interval
        self._stops: dict[str, threading.Event] = {}
        self._encoder = _encode_lane(osprey, sam, encode_lane)  # see the module's docstring

    # -- image -------------------------------------------------------------------------------

    def open_image(self, session: Session, image: ImageLike | None) -> ImageHandle:
        """Start over on a new image: encode it once for SAM and once for Osprey."""
        if image is None:
            raise ServiceError("Upload an image first.")
        try:
            handle = ImageHandle.of(self.sam.prepare(image))
        except (ImageError, ValueError) as exc:
            raise ServiceError(f"This image cannot be used: {exc}") from exc
        run = self._encoder.run if self._encoder else lambda fn: fn()
        run(lambda: (self.sam.set_image(handle), self.osprey.set_image(handle)))
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

    def segment_everything(self, session: Session, **options: Any) -> int:
        """Every mask SAM finds; ``options`` override :attr:`everything`."""
        return self.masks.segment_everything(session, **{**self.everything, **options})

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
        return self._new_region(session, mask, "upload", label=_checked_label(label))

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
        session.set_regions(_replaced(session.regions, index, label=_checked_label(label)))

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

    # -- asking --------------------------------------------------------------------------------

    def token_budget(self, task: str = "", requested: int = 0) -> int:
        """Longest answer for ``task``: the app's setting, or ``requested`` (0: the setting) up to
        it; asking for more is a :class:`ServiceError` (a client cannot ask for a million)."""
        limit = self.detail_tokens if task == "detailed" else self.max_new_tokens
        if requested and not 1 <= requested <= limit:
            raise ServiceError(f"max_new_tokens must be between 1 and {limit} here")
        return requested or limit

    def describe(
        self, session: Session, task: str, indices: Sequence[int] | None = None,
        max_new_tokens: int = 0,
    ) -> list[tuple[str, str]]:  # fmt: skip
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
        tokens = self.token_budget(task, max_new_tokens)
        masks = [session.regions[i].mask for i in indices]
        texts = _user_errors(lambda: self.osprey.describe(handle, masks, task, Generation(tokens)))
        for i, text in zip(indices, texts):
            session.update_region(i, **{TASK_FIELDS[task]: text.strip()})
        return [
            (display_name(i, session.regions[i].label), t.strip()) for i, t in zip(indices, texts)
        ]

    def ask(
        self, session: Session, question: str, stop: threading.Event | None = None,
        max_new_tokens: int = 0,
    ) -> Iterator[Reply]:  # fmt: skip
        """Stream the answer to a free question about all regions (by their names or regionK) or,
        with no region, about the whole image. The exchange joins the chat history at the end.
        :meth:`stop` (or setting ``stop``, when given) ends it early."""
        handle = self._image(session)
        question = question.strip()
        if not question:
            raise ServiceError("Type a question.")
        if len(question) > MAX_QUESTION_CHARS:
            raise ServiceError(f"A question is at most {MAX_QUESTION_CHARS} characters.")
        masks = [r.mask for r in session.regions] or None
        model_q = to_model_names(session.regions, question)
        if stop is None:
            stop = self._stops.setdefault(session.id, threading.Event())
            stop.clear()
        answers = []
        stream = self.osprey.stream(
            self.osprey.ask, handle, masks, model_q, session.history,
            Generation(self.token_budget("", max_new_tokens)), stop=stop, on_answer=answers.append,
            report_waiting=True, interval=self.stream_interval,
        )  # fmt: skip
        session.pending = (model_q, "")  # an export taken meanwhile shows the partial turn
        try:
            for text in stream:
                if isinstance(text, Waiting):  # in line for the batching engine
                    yield Reply("", waiting=text.position)
                    continue
                if not answers:  # still streaming
                    session.pending = (model_q, text)
                    yield Reply(to_user_names(session.regions, text))
                    continue
                # the final, post-processed answer (stream() reported its Answer just before it)
                session.history, session.pending = [*session.history, (model_q, text)], None
                yield Reply(to_user_names(session.regions, text), True, _dropped_note(answers[0]))
        except (RegionError, ContextLengthError) as exc:
            raise ServiceError(str(exc)) from exc
        finally:
            session.pending = None

    def stop(self, session: Session) -> None:
        """End the answer streaming for this session (the Stop button)."""
        self._stops.setdefault(session.id, threading.Event()).set()

    def close(self, session: Session) -> None:
        """The user left (tab closed, session expired): stop its answer, free its data."""
        event = self._stops.pop(session.id, None)
        if event is not None:
            event.set()
        session.reset()
        session.id = ""

    # -- segment everything --------------------------------------------------------------------

    def describe_all(self, session: Session, limit: int = 50) -> list[dict[str, Any]]:
        """Category and short caption of every "everything" mask (largest first, up to ``limit``)."""
        handle = self._image(session)
        if not session.auto:
            raise ServiceError(
                "No masks to describe: run 'Segment everything' first (or lower its thresholds)."
            )
        autos = session.auto[:limit]
        masks = [a.mask for a in autos]
        gens = Generation(EVERYTHING_CATEGORY_TOKENS), Generation(EVERYTHING_CAPTION_TOKENS)
        cats = _user_errors(lambda: self.osprey.describe(handle, masks, "category", gens[0]))
        caps = _user_errors(lambda: self.osprey.describe(handle, masks, "short", gens[1]))
        session.auto_labels = [c.strip() for c in cats]
        return [
            {"mask": i + 1, "category": c.strip(), "caption": s.strip(), "area": a.area, "box": list(a.box)}
            for i, (a, c, s) in enumerate(zip(autos, cats, caps))
        ]  # fmt: skip

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


def _checked_label(label: str) -> str:
    try:
        return check_label(label)
    except LabelError as exc:
        raise ServiceError(str(exc)) from exc


def _encode_lane(osprey: Osprey, sam: Segmenter, wanted: bool | None) -> Lane | None:
    """The lane encoding new uploads: if ``wanted`` (None: when a model is on the CPU)."""
    if wanted is None:
        devices = (getattr(sam, "device", "cpu"), osprey.model.device)
        wanted = any(getattr(d, "type", d) == "cpu" for d in devices)
    return Lane("osprey-encode", ENCODE_NICE) if wanted else None


def _user_errors(fn):
    """Run ``fn``; region and context errors become :class:`ServiceError`."""
    try:
        return fn()
    except (RegionError, ContextLengthError) as exc:
        raise ServiceError(str(exc)) from exc


def _dropped_note(answer) -> str:
    n = answer.dropped_turns
    if not n:
        return ""
    return f"The chat no longer fits the model's context: its {n} oldest turn(s) were left out."


def _replaced(regions: list[Region], index: int, **changes: Any) -> list[Region]:
    out = list(regions)
    out[index] = replace(out[index], **changes)
    return out
