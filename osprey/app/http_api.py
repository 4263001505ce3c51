"""The app's HTTP API: typed endpoint functions over :class:`~osprey.app.service.RegionChat`, which
``osprey/app/demo.py`` registers with Gradio's ``gr.api`` (so clients see typed parameters, no UI components).

One-shot endpoints take an image and answer at once: ``/segment``, ``/describe``,
``/describe_all``, ``/classify``. The ``/session_*`` endpoints keep state between calls of one
client (a ``gradio_client.Client`` has its own session), as a browser tab does: open an image,
click, add regions, ask, export. Every endpoint calls the same service functions as the UI
(``osprey/app/service.py``, ``osprey/app/top_classes.py``); README "API" lists them with a runnable example
each.
"""

# No ``from __future__ import annotations`` here: gr.api reads the return annotations as real types
# (a tuple annotation declares several outputs).
import json
import math
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
from gradio import FileData

from osprey.app import top_classes
from osprey.app.fair_share import client_address, whole_image
from osprey.app.service import RegionChat, ServiceError
from osprey.app.session import Session
from osprey.app.uploads import read_upload
from osprey.core.constants import MAX_MASKS_PER_REQUEST, MAX_POINTS_PER_PROMPT
from osprey.core.errors import MaskError, OspreyError
from osprey.core.images import probe_image
from osprey.core.masks import encode_rle, load_mask, save_mask_png
from osprey.inference.vocabularies import MAX_TOP_K

API_SESSION_TTL = 900.0  # seconds an idle API session is kept
MAX_API_SESSIONS = 256
SESSIONS_PER_ADDRESS = 16  # API sessions one client address may hold open
MAX_POINTS = MAX_POINTS_PER_PROMPT  # clicks in one prompt
MAX_POINTS_PER_SIDE = 32  # "segment everything" grid: 32 x 32 clicks
MAX_JSON_CHARS = 10_000
MAX_MASK_FILES = MAX_MASKS_PER_REQUEST


# ---------------------------------------------------------------------------------------------
# arguments: every value a client sends is checked here, with a message naming the argument


def _show(value: Any) -> str:
    """A client's value, short, for a message (a 1 MB string or a 309-digit number is not
    echoed back whole)."""
    if isinstance(value, float):
        return f"{value:g}"
    text = repr(value)
    return text if len(text) <= 24 else text[:20] + "..."


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number(value: Any, name: str, low: float | None = None, high: float | None = None) -> float:
    """A finite number (in [low, high] when given), or :class:`ServiceError` naming ``name``."""
    if low is None or high is None:
        if not _number(value):
            raise ServiceError(f"{name} must be a finite number, got {_show(value)}")
    elif not _number(value) or not low <= value <= high:
        raise ServiceError(f"{name} must be a number from {low:g} to {high:g}, got {_show(value)}")
    return float(value)


def whole(value: Any, name: str, low: int, high: int) -> int:
    """A whole number in [low, high] (3.0 counts; 2.9 does not)."""
    if not _number(value) or float(value) != int(value) or not low <= value <= high:
        raise ServiceError(
            f"{name} must be a whole number from {low} to {high}, got {_show(value)}"
        )
    return int(value)


def text(value: Any, name: str, limit: int = MAX_JSON_CHARS) -> str:
    """A string ("" for None), at most ``limit`` characters."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ServiceError(f"{name} must be text, got {_show(value)}")
    if len(value) > limit:
        raise ServiceError(f"{name} is too long (at most {limit} characters)")
    return value


def files(value: Any, name: str, limit: int) -> list:
    """A list of at most ``limit`` file objects (None: none)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ServiceError(f"{name} must be a list of uploaded files")
    if len(value) > limit:
        raise ServiceError(f"at most {limit} {name} per request")
    return value


def _open(service: RegionChat, session: Session, image: Any):
    """Open an uploaded image (Gradio's file object) in ``session``."""
    return service.open_image(session, read_upload(image, "image"))


def _json(value: Any, what: str, example: str) -> Any:
    if isinstance(value, list):  # already parsed by the client
        return value
    if value is not None and not isinstance(value, str):
        raise ServiceError(f"{what} must be JSON text like {example}, got {_show(value)}")
    if value is None or not value.strip():
        return None
    if len(value) > MAX_JSON_CHARS:
        raise ServiceError(f"{what} is too long (at most {MAX_JSON_CHARS} characters)")
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ServiceError(f"{what} must be JSON like {example}: {exc.msg}") from None
    except RecursionError:
        raise ServiceError(f"{what} is nested too deeply: JSON like {example}") from None


def parse_prompt(points: str, labels: str, box: str) -> tuple[list, list | None, list | None]:
    """The /segment prompt from its JSON strings, checked: ``points`` [[x, y], ...] (at most
    :data:`MAX_POINTS`), ``labels`` [1, 0, ...] (one per point), ``box`` [x0, y0, x1, y1]."""
    pts = _json(points, "points", "[[310, 190], [420, 60]]") or []
    if not isinstance(pts, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(map(_number, p)) for p in pts
    ):
        raise ServiceError("points must be a list of [x, y] pairs of numbers, e.g. [[310, 190]]")
    if len(pts) > MAX_POINTS:
        raise ServiceError(f"at most {MAX_POINTS} points per prompt")
    labs = _json(labels, "labels", "[1, 0]")
    if labs is not None and (
        not isinstance(labs, list)
        or not all(lab in (0, 1) and not isinstance(lab, bool) for lab in labs)
    ):
        raise ServiceError("labels must be a list of 1 (positive) and 0 (negative), e.g. [1, 0]")
    bx = _json(box, "box", "[120, 40, 480, 390]")
    if bx is not None and not (isinstance(bx, list) and len(bx) == 4 and all(map(_number, bx))):
        raise ServiceError("box must be [x0, y0, x1, y1] in pixels, e.g. [120, 40, 480, 390]")
    return pts, labs or None, bx


class Sessions:
    """API sessions by client id (Gradio's session hash), least recently used first. Idle ones
    expire after ``ttl`` seconds. Only ``/session_open`` makes one; at most ``capacity`` are kept
    and at most ``per_address`` for one client address. A session holding an image is never
    pushed out by other clients' traffic: when the server is full, an empty one goes, else the
    new one is refused ("too many open sessions")."""

    def __init__(
        self, ttl: float = API_SESSION_TTL, capacity: int = MAX_API_SESSIONS,
        per_address: int = SESSIONS_PER_ADDRESS,
    ):  # fmt: skip
        self.ttl, self.capacity, self.per_address = ttl, capacity, per_address
        self._items: OrderedDict[str, tuple[float, Session, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, client: str, create: bool = False, address: str = "") -> Session:
        """The client's session (now the most recently used); with ``create``, a new one if it
        has none. :class:`ServiceError` when it has none and may not get one."""
        now = time.monotonic()
        with self._lock:
            for key in [k for k, (t, _, _) in self._items.items() if now - t > self.ttl]:
                del self._items[key]
            entry = self._items.pop(client, None)
            if entry is None and not create:
                raise ServiceError("This client has no open image: call /session_open first.")
            if entry is None:
                self._make_room(address)
                entry = (now, Session(), address)
            self._items[client] = (now, entry[1], entry[2])
            return entry[1]

    def _make_room(self, address: str) -> None:
        mine = sum(1 for _, _, a in self._items.values() if a == address)
        if mine >= self.per_address:
            raise ServiceError(
                f"This address already has {mine} open sessions: close one (/session_close) "
                "or wait for it to expire."
            )
        if len(self._items) < self.capacity:
            return
        empty = next((k for k, (_, s, _) in self._items.items() if s.image is None), None)
        if empty is None:
            raise ServiceError("The server has too many open sessions; try again in a few minutes.")
        del self._items[empty]

    def pop(self, client: str) -> Session | None:
        with self._lock:
            entry = self._items.pop(client, None)
        return entry[1] if entry else None

    def __len__(self) -> int:
        return len(self._items)


class Endpoints:
    """The typed endpoint functions (methods: ``gr.api`` reads their signatures)."""

    NAMES = (
        "segment", "describe", "describe_all",
        "session_open", "session_click", "session_add", "session_ask", "session_export",
        "session_close", "classify",
    )  # fmt: skip

    def __init__(self, service: RegionChat, trust_proxy: bool = False):
        """``trust_proxy``: a client's address is the last entry of ``X-Forwarded-For``."""
        self.service, self.trust_proxy = service, trust_proxy
        self.sessions = Sessions()
        self._out = Path(tempfile.mkdtemp(prefix="osprey-api-"))

    # -- one-shot ------------------------------------------------------------------------------

    def segment(
        self, image: FileData, points: str = "[]", labels: str = "[]", box: str = ""
    ) -> tuple[FileData, dict]:
        """SAM mask for clicks (``points`` JSON [[x, y], ...], ``labels`` JSON [1, 0, ...]) and/or
        a ``box`` JSON [x0, y0, x1, y1]: the mask as a 0/255 PNG and {score, area, box}."""
        pts, labs, bx = parse_prompt(points, labels, box)
        s = Session()
        _open(self.service, s, image)
        best = self.service.prompt(s, pts, labs, bx)
        out = save_mask_png(best.mask, tempfile.mktemp(suffix=".png", dir=self._out))
        return FileData(path=str(out)), {"score": best.score, "area": best.area, "box": best.box}

    def describe(
        self, image: FileData, masks: list[FileData], task: str = "short", question: str = "",
        max_new_tokens: int = 0,
    ) -> list[str] | str:  # fmt: skip
        """Per-region answers to ``task`` (category, short, detailed), one string per mask; or
        with a ``question`` the answer about all the masks (region1, region2, ... in their order),
        streamed as it grows (``Client.submit`` sees every step, ``predict`` the final answer).
        ``max_new_tokens``: 0 for the app's default, else at most the app's limit."""
        masks = files(masks, "masks", MAX_MASK_FILES)
        task, question = text(task, "task") or "short", text(question, "question", 10**6)
        limit = self.service.token_budget(task)
        tokens = self.service.token_budget(task, whole(max_new_tokens, "max_new_tokens", 0, limit))
        s = self._with_masks(image, masks)
        if question:
            yield from _texts(self.service.ask(s, question, max_new_tokens=tokens))
            return
        yield [answer for _, answer in self.service.describe(s, task, max_new_tokens=tokens)]

    @whole_image
    def describe_all(
        self, image: FileData, points_per_side: float = 16, pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95, vocabulary: str = "",
    ) -> list[dict]:  # fmt: skip
        """Segment everything (a ``points_per_side``² grid of clicks, at most
        :data:`MAX_POINTS_PER_SIDE`; SAM's thresholds), then category and short caption of every
        mask (one row each); with a ``vocabulary`` (built-in name or comma-separated names), also
        each mask's most probable class in it (``label``, ``prob``)."""
        side = whole(points_per_side, "points_per_side", 1, MAX_POINTS_PER_SIDE)
        iou = number(pred_iou_thresh, "pred_iou_thresh", 0, 1)
        stability = number(stability_score_thresh, "stability_score_thresh", 0, 1)
        vocabulary = text(vocabulary, "vocabulary", 10**6)
        if vocabulary:
            top_classes.user_vocabulary(vocabulary)  # a bad one fails before segmenting
        s = Session()
        _open(self.service, s, image)
        self.service.segment_everything(
            s, points_per_side=side, pred_iou_thresh=iou, stability_score_thresh=stability
        )
        rows = self.service.describe_all(s) if s.auto else []
        return (
            top_classes.label_all(self.service.osprey, s, rows, vocabulary) if vocabulary else rows
        )

    def classify(
        self, image: FileData, masks: list[FileData], vocabulary: str = "coco", top_k: float = 5
    ) -> list:
        """The ``top_k`` classes of ``vocabulary`` (``coco``, ``lvis``, ``ade20k``,
        ``cityscapes``, ``paco`` or comma-separated names) per mask, each a list of
        {name, prob}; with no mask, one list for the whole image."""
        masks = files(masks, "masks", MAX_MASK_FILES)
        k = whole(top_k, "top_k", 1, MAX_TOP_K)
        v = top_classes.user_vocabulary(text(vocabulary, "vocabulary", 10**6) or "coco")
        s = self._with_masks(image, masks)
        tops = top_classes.classify(self.service.osprey, s, v, top_k=k)
        return [[{"name": n, "prob": p} for n, p in top] for _, top in tops]

    def _with_masks(self, image: Any, masks: list) -> Session:
        """A new session with ``image`` open and ``masks`` (uploads) as its regions. Every mask's
        size is read from its header and checked against the image's before anything is
        decoded; then the masks are decoded one at a time (each kept as RLE)."""
        data = read_upload(image, "image")
        width, height = probe_image(data)
        sources = [read_upload(f, f"mask {i + 1}") for i, f in enumerate(masks)]
        for i, source in enumerate(sources):
            _mask(source, i, (height, width), header_only=True)
        s = Session()
        self.service.open_image(s, data)
        for i, source in enumerate(sources):
            self.service.add_mask(s, _mask(source, i, (s.image.height, s.image.width)))
        return s

    # -- a session over several calls ------------------------------------------------------------

    def session_open(self, image: FileData, request: gr.Request) -> dict:
        """Open an image in this client's session (regions and chat start over)."""
        data = read_upload(image, "image")
        address = client_address(request.client, request.headers, self.trust_proxy)
        s = self.sessions.get(request.session_hash, create=True, address=address)
        handle = self.service.open_image(s, data)
        return {"height": handle.height, "width": handle.width}

    def session_click(self, x: float, y: float, mode: str, request: gr.Request) -> dict:
        """A click (mode positive, negative or box) on the open image: the current mask as RLE."""
        x, y = number(x, "x"), number(y, "y")
        mode = text(mode, "mode", 20) or "positive"
        s = self.sessions.get(request.session_hash)
        with self.service.editing(s):
            self.service.click(s, x, y, mode)
            mask = s.current_mask()
            return {"rle": encode_rle(mask) if mask is not None else None, "points": len(s.points)}

    def session_add(self, request: gr.Request) -> list[str]:
        """Keep the current mask as the next region; returns the region names."""
        s = self.sessions.get(request.session_hash)
        with self.service.editing(s):
            self.service.add_region(s)
            return s.names()

    def session_ask(self, question: str, request: gr.Request) -> str:
        """Ask about the session's regions (or the whole image), streamed; the answer joins the
        session's chat."""
        question = text(question, "question", 10**6)
        yield from _texts(self.service.ask(self.sessions.get(request.session_hash), question))

    def session_export(self, request: gr.Request) -> dict:
        """The session's regions, answers and chat as COCO-RLE JSON."""
        return self.service.export(self.sessions.get(request.session_hash))

    def session_close(self, request: gr.Request) -> bool:
        """Forget this client's session now (otherwise it expires after 15 idle minutes)."""
        session = self.sessions.pop(request.session_hash)
        if session is not None:
            self.service.close(session)
        return session is not None


def _mask(source: bytes, index: int, size: tuple[int, int], header_only: bool = False) -> Any:
    """Mask ``index`` (0-based) of a request, checked against the image's (height, width) from
    its header; then decoded, unless ``header_only``."""
    what = f"mask {index + 1}"
    try:
        if not header_only:
            return load_mask(source, size, what)
        width, height = probe_image(source, what)
        if (height, width) != tuple(size):
            raise MaskError(f"{what} is {width}x{height}, the image {size[1]}x{size[0]}")
        return None
    except OspreyError as exc:
        raise ServiceError(f"A mask cannot be used: {exc}") from exc


def _texts(replies) -> Iterator[str]:
    """A streamed answer's texts (steps spent waiting in line are skipped)."""
    for reply in replies:
        if reply.text or reply.done:
            yield reply.text
