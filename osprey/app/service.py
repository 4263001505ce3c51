"""RegionChat: the app's operations over shared models, on per-user :class:`Session` data.

Each operation changes the session and returns data (answers, counts, messages for the user) or
raises :class:`ServiceError` with a message meant for the user. Nothing here draws (that is
``osprey/app/drawing.py``) or knows about Gradio (``osprey/app/wiring.py``). The models (Osprey, and SAM through the
:class:`Segmenter` protocol) are shared by every session and guard their own device work. On a
CPU, new uploads are encoded on a lane of their own at a lower OS priority
(:mod:`osprey.core.priority`): a click never waits for, or shares the cores equally with, someone
else's new image.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from osprey.app import drawing, everything, export
from osprey.app.mask_prompts import MaskPrompts, Segmenter, need_image
from osprey.app.session import (
    Candidate,
    LabelError,
    Region,
    Session,
    check_label,
    model_name,
    model_question,
    to_user_names,
)
from osprey.app.session_images import SessionImages
from osprey.core.constants import DEFAULT_MAX_NEW_TOKENS, MAX_MASKS_PER_REQUEST, MIN_IMAGE_SIDE
from osprey.core.errors import ImageError, ServiceError
from osprey.core.images import ImageHandle, ImageLike
from osprey.core.masks import RleMasks, to_bool_mask
from osprey.core.memory import TRIM_PIXELS, give_back_freed_memory
from osprey.core.priority import ENCODE_NICE, Lane
from osprey.inference.facade import Generation, Osprey, task_prompt
from osprey.inference.generator import Waiting
from osprey.inference.preprocess import RegionError
from osprey.inference.prompt_format import ContextLengthError

MAX_QUESTION_CHARS = 2000
DETAIL_TOKENS = 1024  # a detailed description may run long (the paper's setting)
# seconds: an answer streams at most 10 updates a second (the words since in one): with 8
# visitors streaming, 20 a second made the p95 click 116-126 ms on a 2-core CPU, 10 made it 96-100 ms
STREAM_INTERVAL = 0.1
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
        max_regions: int = MAX_MASKS_PER_REQUEST, detail_tokens: int = DETAIL_TOKENS,
        everything: dict[str, Any] | None = None, stream_interval: float = STREAM_INTERVAL,
        encode_lane: bool | None = None, images: SessionImages | None = None,
    ):  # fmt: skip
        """``everything``: default options of "segment everything" (SAM's grid and thresholds;
        the tiny, untrained SAM finds masks only with its thresholds at 0). ``stream_interval``:
        an answer streams at most one update per this many seconds. ``encode_lane``: new uploads
        encoded on a nicer thread of their own (default: when a model is on the CPU).
        ``images``: what all sessions hold of their images, within its budget."""
        self.osprey, self.sam = osprey, sam
        self.everything = {"points_per_side": 16, **(everything or {})}
        self.masks = MaskPrompts(sam)
        self.max_new_tokens, self.detail_tokens = max_new_tokens, detail_tokens
        self.max_regions = max_regions
        self.untrained = osprey.untrained or bool(getattr(sam, "untrained", False))
        self.stream_interval = stream_interval
        self._stops = StopEvents()
        self._encoder = _encode_lane(osprey, sam, encode_lane)  # see the module's docstring
        self._locks = SessionLocks()
        self.images = images if images is not None else SessionImages()
        self.budgets = None  # the memory plan it runs under (osprey.app.budgets), set at start-up

    def editing(self, session: Session):
        """Hold ``session`` for one change (see :class:`SessionLocks`)."""
        return self._locks.hold(session)

    # -- image -------------------------------------------------------------------------------

    def open_image(self, session: Session, image: ImageLike | None) -> ImageHandle:
        """Start over on a new image (encoded once for SAM, once for Osprey): an answer
        streaming stops, the chat restarts; the session keeps compressed bytes, not pixels."""
        return list(self.open_steps(session, image))[-1]

    def open_steps(self, session: Session, image: ImageLike | None) -> Iterator[ImageHandle]:
        """:meth:`open_image` in two steps, for a page that shows its progress: at the first
        yield the session holds the image and SAM its embedding (clicks work from then on); at
        the second Osprey has its image features too (answers start at once)."""
        return _open_steps(self, session, image)

    # -- prompts -> candidate masks (SAM): see osprey/app/mask_prompts.py --------------------------------

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
        handle = need_image(session)
        mask = to_bool_mask(np.asarray(mask))
        if mask.shape != (handle.height, handle.width):
            raise ServiceError(
                f"The mask is {mask.shape[1]}x{mask.shape[0]}, the image {handle.width}x{handle.height}."
            )
        if not mask.any():
            raise ServiceError("The mask is empty.")
        others = [r.label for r in session.regions]
        return self._new_region(session, mask, "upload", label=_checked_label(label, others))

    def _new_region(
        self, session: Session, mask: np.ndarray, source: str, label: str = ""
    ) -> Region:
        if len(session.regions) >= self.max_regions:
            raise ServiceError(f"At most {self.max_regions} regions per image.")
        region = Region.of(mask, drawing.color(len(session.regions)), source, label=label)
        session.set_regions([*session.regions, region])
        return region

    def rename(self, session: Session, index: int, label: str) -> None:
        """Name a region ("dog"); the name then stands for it in questions. Names are unique
        (case aside) and cannot be words that questions are made of."""
        self._check_index(session, index)
        others = [r.label for i, r in enumerate(session.regions) if i != index]
        label = _checked_label(label, others)
        session.set_regions(_replaced(session.regions, index, label=label))

    def delete(self, session: Session, index: int) -> None:
        """Remove a region; the ones after it are renumbered, so the chat about them restarts
        (an answer streaming meanwhile stops first)."""
        self._check_index(session, index)
        self._end_answer(session)
        kept = [r for i, r in enumerate(session.regions) if i != index]
        recoloured = [replace(r, color=drawing.color(i)) for i, r in enumerate(kept)]
        session.set_regions(recoloured, keep_chat=False)

    def clear_regions(self, session: Session) -> None:
        self._end_answer(session)
        session.set_regions([], keep_chat=False)

    def undo(self, session: Session) -> None:
        """Undo the last region edit; when it changes the regions (not only a name), an answer
        streaming stops and the chat restarts, as after a delete."""
        if not session.can_undo:
            raise ServiceError("Nothing to undo.")
        if session.undo_renumbers():
            self._end_answer(session)
        session.undo()

    def redo(self, session: Session) -> None:
        if not session.can_redo:
            raise ServiceError("Nothing to redo.")
        if session.redo_renumbers():
            self._end_answer(session)
        session.redo()

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
        handle = need_image(session)
        if not session.regions:
            raise ServiceError("Add a region first: click on the image, then 'Add region'.")
        _checked_task(task)
        indices = list(range(len(session.regions))) if not indices else list(indices)
        for i in indices:
            self._check_index(session, i)
        tokens = self.token_budget(task, max_new_tokens)
        asked = [session.regions[i] for i in indices]
        masks = RleMasks([r.rle for r in asked])
        texts = _user_errors(lambda: self.osprey.describe(handle, masks, task, Generation(tokens)))
        with self.editing(session):  # the regions may have changed while the model answered
            names = session.record(asked, [{TASK_FIELDS[task]: t.strip()} for t in texts])
        return [(name, t.strip()) for name, t in zip(names, texts) if name is not None]

    def describe_stream(
        self, session: Session, task: str, index: int, max_new_tokens: int = 0
    ) -> Iterator[Reply]:
        """:meth:`describe` for one region, streamed: the same prompt and answer, the text as it
        grows (the last Reply ``done``, and the answer kept on the region then). :meth:`stop`
        ends it early."""
        handle = need_image(session)
        self._check_index(session, index)
        region, (message, mode) = session.regions[index], task_prompt(_checked_task(task))
        stop, gen = self._stops.fresh(session), Generation(self.token_budget(task, max_new_tokens))
        kept = _TaskAnswer(session, region, TASK_FIELDS[task], self.editing)
        yield from kept.replies(self.osprey.stream(
            self.osprey.generate, handle, RleMasks([region.rle]), message, gen, postprocess=mode,
            stop=stop, on_answer=kept.answers.append, report_waiting=True,
            interval=self.stream_interval,
        ))  # fmt: skip

    def ask(
        self, session: Session, question: str, stop: threading.Event | None = None,
        max_new_tokens: int = 0,
    ) -> Iterator[Reply]:  # fmt: skip
        """Stream the answer to a free question about all regions (by their names or regionK) or,
        with no region, about the whole image. The exchange joins the chat history at the end,
        unless the image or the regions changed meanwhile (then the answer is shown, not kept).
        :meth:`stop` (or setting ``stop``, when given) ends it early."""
        with self.editing(session):
            handle = need_image(session)
            model_q, names = model_question(session.regions, question, MAX_QUESTION_CHARS)
            masks = session.region_masks() or None
            history, opened = list(session.history), (session.id, session.revision)
            stop = stop or self._stops.fresh(session)
            session.pending = (model_q, "")  # an export taken meanwhile shows the partial turn
        answers = []
        stream = self.osprey.stream(
            self.osprey.ask, handle, masks, model_q, history,
            Generation(self.token_budget("", max_new_tokens)), stop=stop, on_answer=answers.append,
            report_waiting=True, interval=self.stream_interval,
        )  # fmt: skip
        turn = _Turn(session, opened, model_q, names, self.editing)
        yield from turn.replies(stream, answers)

    def stop(self, session: Session) -> None:
        """End the answer streaming for this session (the Stop button)."""
        self._stops.stop(session)

    def stop_all(self) -> None:
        """End every answer streaming (the server is stopping)."""
        self._stops.stop_all()

    def _end_answer(self, session: Session) -> None:
        """Stop the answer streaming for ``session``'s current image, if any."""
        self._stops.end(session)

    def close(self, session: Session) -> None:
        """The user left (tab closed, session expired): stop its answer, free its data."""
        self._end_answer(session)
        session.reset()
        session.id = ""

    # -- segment everything --------------------------------------------------------------------

    def describe_all(self, session: Session, limit: int = 50) -> list[dict[str, Any]]:
        """Category and short caption of every "everything" mask (see osprey/app/everything.py)."""
        return everything.describe_all(self.osprey, session, limit)

    # -- export --------------------------------------------------------------------------------

    def export(self, session: Session) -> dict[str, Any]:
        """COCO-RLE JSON of the regions with their names, answers and the chat."""
        need_image(session)
        return export.to_json(session, self.osprey.name, self.untrained)

    def export_masks_zip(self, session: Session) -> bytes:
        """A zip with one 0/255 PNG per region, the overlay as the app draws it, and the JSON."""
        return export.to_zip(session, self.export(session))


# ---------------------------------------------------------------------------------------------
# helpers


class StopEvents:
    """One event per session that stops the answer it is streaming (Stop, a new image, an edit
    that renumbers the regions)."""

    def __init__(self) -> None:
        self._events: dict[str, threading.Event] = {}

    def fresh(self, session: Session) -> threading.Event:
        """The event of the answer starting now (cleared)."""
        event = self._events.setdefault(session.id, threading.Event())
        event.clear()
        return event

    def stop(self, session: Session) -> None:
        self._events.setdefault(session.id, threading.Event()).set()

    def stop_all(self) -> None:
        for event in list(self._events.values()):
            event.set()

    def end(self, session: Session) -> None:
        """Stop the answer streaming, if any; the event goes (the next answer gets a new one)."""
        event = self._events.pop(session.id, None)
        if event is not None:
            event.set()


class SessionLocks:
    """One lock per session (held weakly: a session that goes away takes its lock with it).
    Two requests of one visitor (a rename and a delete at the same moment) run one after the
    other, never interleaved; a streaming answer holds it only to start and to finish."""

    def __init__(self) -> None:
        self._locks: weakref.WeakKeyDictionary[Session, threading.RLock] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, session: Session) -> Iterator[Session]:
        with self._lock:
            lock = self._locks.setdefault(session, threading.RLock())
        with lock:
            yield session


def _checked_label(label: str, others: Sequence[str] = ()) -> str:
    try:
        return check_label(label, others)
    except LabelError as exc:
        raise ServiceError(str(exc)) from exc


def _open_steps(
    service: RegionChat, session: Session, image: ImageLike | None
) -> Iterator[ImageHandle]:
    """:meth:`RegionChat.open_steps`: SAM's embedding, the session reset (first yield), Osprey's
    features, then the handle held within the sessions' budget (second yield)."""
    handle = _intake(service.sam, image)
    run = service._encoder.run if service._encoder else lambda fn: fn()
    with _released(handle):  # also when the page goes away between the steps
        run(lambda: service.sam.set_image(handle))
        with service.editing(session):
            service._end_answer(session)
            session.reset(handle)
        yield handle
        run(lambda: service.osprey.set_image(handle))
    kept = service.images.add(handle)  # within the sessions' budget; shared when the same
    if kept is not handle:
        with service.editing(session):
            if session.image is handle:
                session.image = kept
    yield kept


def _intake(sam: Segmenter, image: ImageLike | None) -> ImageHandle:
    """An image a user opens, decoded and checked (the app's size limits, then SAM's own)."""
    if image is None:
        raise ServiceError("Upload an image first.")
    try:
        handle = ImageHandle.of(image)
        if min(handle.height, handle.width) < MIN_IMAGE_SIDE:
            raise ImageError(
                f"image is {handle.width}x{handle.height}: too small (at least "
                f"{MIN_IMAGE_SIDE} pixels on each side)"
            )
        sam.check(handle.height, handle.width)  # SAM's own limits (an extreme aspect ratio)
    except (ImageError, ValueError) as exc:
        raise ServiceError(f"This image cannot be used: {exc}") from exc
    return handle


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


def _checked_task(task: str) -> str:
    if task not in TASK_FIELDS:
        raise ServiceError(f"Unknown task {task!r}; choose one of {sorted(TASK_FIELDS)}.")
    return task


@contextmanager
def _released(handle: ImageHandle) -> Iterator[ImageHandle]:
    """Hold ``handle``'s decoded pixels while it is encoded; then free them (and hand a large
    photo's memory back to the system)."""
    try:
        yield handle
    finally:
        handle.release()
        if handle.height * handle.width >= TRIM_PIXELS:
            give_back_freed_memory()


GONE = "The region was deleted while this answer was written: it is shown, not kept."


@dataclass
class _TaskAnswer:
    """One region's task answer as it streams; kept on the region (found by its mask, as
    :meth:`Session.record` does) at the end."""

    session: Session
    region: Region
    column: str  # the region field: category, caption or detail
    editing: Any  # the service's session lock
    answers: list = field(default_factory=list)  # the final Answer, from the stream

    def replies(self, stream: Iterator) -> Iterator[Reply]:
        text = ""
        try:
            for text in stream:
                if isinstance(text, Waiting):
                    yield Reply("", waiting=text.position)
                elif not self.answers:
                    yield Reply(text.strip())
        except (RegionError, ContextLengthError) as exc:
            raise ServiceError(str(exc)) from exc
        with self.editing(self.session):  # the regions may have changed meanwhile
            kept = self.session.record([self.region], [{self.column: text.strip()}])[0]
        yield Reply(text.strip(), True, "" if kept else GONE)


CHANGED = (
    "The image or its regions changed while this answer was written: it is shown, not kept in "
    "the chat."
)


@dataclass
class _Turn:
    """One question's answer as it streams into ``session``'s chat: kept in the history at the
    end only if the session still shows the image and regions it was asked about (``opened``:
    its id and region revision then)."""

    session: Session
    opened: tuple[str, int]
    question: str  # the model's question
    note: str  # the names read as regions, for the user
    editing: Any  # the service's session lock

    @property
    def current(self) -> bool:
        return (self.session.id, self.session.revision) == self.opened

    def replies(self, stream: Iterator, answers: list) -> Iterator[Reply]:
        s = self.session
        try:
            for text in stream:
                if isinstance(text, Waiting):  # in line for the batching engine
                    yield Reply("", waiting=text.position)
                elif not answers:  # still streaming
                    if self.current:
                        s.pending = (self.question, text)
                    yield Reply(to_user_names(s.regions if self.current else [], text))
                else:  # the final answer (stream() reported its Answer just before it)
                    with self.editing(s):
                        kept = self.current
                        if kept:
                            s.history, s.pending = [*s.history, (self.question, text)], None
                    notes = [_dropped_note(answers[0]), self.note, "" if kept else CHANGED]
                    shown = to_user_names(s.regions if kept else [], text)
                    yield Reply(shown, True, " ".join(n for n in notes if n))
        except (RegionError, ContextLengthError) as exc:
            raise ServiceError(str(exc)) from exc
        finally:
            if self.current:
                s.pending = None


def _dropped_note(answer) -> str:
    n = answer.dropped_turns
    if not n:
        return ""
    return f"The chat no longer fits the model's context: its {n} oldest turn(s) were left out."


def _replaced(regions: list[Region], index: int, **changes: Any) -> list[Region]:
    out = list(regions)
    out[index] = replace(out[index], **changes)
    return out
