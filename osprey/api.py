"""The app's HTTP API: typed endpoint functions over :class:`~osprey.service.RegionChat`, which
``app.py`` registers with Gradio's ``gr.api`` (so clients see typed parameters, no UI components).

One-shot endpoints take an image and answer at once: ``/segment``, ``/describe``,
``/describe_all``, ``/classify``. The ``/session_*`` endpoints keep state between calls of one
client (a ``gradio_client.Client`` has its own session), as a browser tab does: open an image,
click, add regions, ask, export. Every endpoint calls the same service functions as the UI; README "API"
lists them with a runnable example each.
"""

# No ``from __future__ import annotations`` here: gr.api reads the return annotations as real types
# (a tuple annotation declares several outputs).
import json
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import gradio as gr
from gradio import FileData

from osprey.masks import encode_rle, load_mask_png, save_mask_png
from osprey.service import RegionChat, ServiceError
from osprey.session import Session

API_SESSION_TTL = 3600.0  # seconds an idle API session is kept
MAX_API_SESSIONS = 256


def _path(file: Any) -> str:
    """A file parameter as Gradio passes it (a FileData dict, or a path) -> its local path."""
    if isinstance(file, dict):
        return file["path"]
    return str(getattr(file, "path", file))


def _json(text: str, what: str, default: Any) -> Any:
    if text is None or not str(text).strip():
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ServiceError(f"{what} must be JSON, e.g. [[310, 190]]: {exc.msg}") from exc


class Sessions:
    """API sessions by client id (Gradio's session hash), least recently used first; idle ones
    expire after ``ttl`` seconds and at most ``capacity`` are kept."""

    def __init__(self, ttl: float = API_SESSION_TTL, capacity: int = MAX_API_SESSIONS):
        self.ttl, self.capacity = ttl, capacity
        self._items: OrderedDict[str, tuple[float, Session]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, client: str) -> Session:
        now = time.monotonic()
        with self._lock:
            for key in [k for k, (t, _) in self._items.items() if now - t > self.ttl]:
                del self._items[key]
            _, session = self._items.pop(client, (now, None))
            session = session or Session()
            self._items[client] = (now, session)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
            return session

    def __len__(self) -> int:
        return len(self._items)


class Endpoints:
    """The typed endpoint functions (methods: ``gr.api`` reads their signatures)."""

    NAMES = (
        "segment", "describe", "describe_all",
        "session_open", "session_click", "session_add", "session_ask", "session_export",
        "classify",
    )  # fmt: skip

    def __init__(self, service: RegionChat):
        self.service = service
        self.sessions = Sessions()
        self._out = Path(tempfile.mkdtemp(prefix="osprey-api-"))

    # -- one-shot ------------------------------------------------------------------------------

    def segment(
        self, image: FileData, points: str = "[]", labels: str = "[]", box: str = ""
    ) -> tuple[FileData, dict]:
        """SAM mask for clicks (``points`` JSON [[x, y], ...], ``labels`` JSON [1, 0, ...]) and/or
        a ``box`` JSON [x0, y0, x1, y1]: the mask as a 0/255 PNG and {score, area, box}."""
        s = Session()
        self.service.open_image(s, _path(image))
        best = self.service.prompt(
            s, _json(points, "points", []), _json(labels, "labels", None) or None,
            _json(box, "box", None),
        )  # fmt: skip
        out = save_mask_png(best.mask, tempfile.mktemp(suffix=".png", dir=self._out))
        return FileData(path=str(out)), {"score": best.score, "area": best.area, "box": best.box}

    def describe(
        self, image: FileData, masks: list[FileData], task: str = "short", question: str = ""
    ) -> str:
        """Per-region answers to ``task`` (category, short, detailed) as a JSON list, or with a
        ``question`` the answer about all the masks (region1, region2, ... in their order)."""
        s = Session()
        self.service.open_image(s, _path(image))
        for f in masks or []:
            self.service.add_mask(s, load_mask_png(_path(f)))
        if question:
            return _last(self.service.ask(s, question)).text
        return json.dumps([text for _, text in self.service.describe(s, task or "short")])

    def describe_all(
        self, image: FileData, points_per_side: float = 16, pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95, vocabulary: str = "",
    ) -> list[dict]:  # fmt: skip
        """Segment everything, then category and short caption of every mask (one row each);
        with a ``vocabulary`` (built-in name or comma-separated names), also each mask's most
        probable class in it (``label``, ``prob``)."""
        s = Session()
        self.service.open_image(s, _path(image))
        self.service.segment_everything(
            s, int(points_per_side or 16), pred_iou_thresh=float(pred_iou_thresh),
            stability_score_thresh=float(stability_score_thresh),
        )  # fmt: skip
        return self.service.describe_all(s, vocabulary=vocabulary or None) if s.auto else []

    def classify(
        self, image: FileData, masks: list[FileData], vocabulary: str = "coco", top_k: float = 5
    ) -> list:
        """The ``top_k`` classes of ``vocabulary`` (``coco``, ``lvis``, ``ade20k``,
        ``cityscapes``, ``paco`` or comma-separated names) per mask, each a list of
        {name, prob}; with no mask, one list for the whole image."""
        s = Session()
        self.service.open_image(s, _path(image))
        for f in masks or []:
            self.service.add_mask(s, load_mask_png(_path(f)))
        tops = self.service.classify(s, vocabulary, top_k=int(top_k))
        return [[{"name": n, "prob": p} for n, p in top] for _, top in tops]

    # -- a session over several calls ------------------------------------------------------------

    def session_open(self, image: FileData, request: gr.Request) -> dict:
        """Open an image in this client's session (regions and chat start over)."""
        s = self.sessions.get(request.session_hash)
        handle = self.service.open_image(s, _path(image))
        return {"height": handle.height, "width": handle.width}

    def session_click(self, x: float, y: float, mode: str, request: gr.Request) -> dict:
        """A click (mode positive, negative or box) on the open image: the current mask as RLE."""
        s = self.sessions.get(request.session_hash)
        self.service.click(s, float(x), float(y), mode or "positive")
        mask = s.current_mask()
        return {"rle": encode_rle(mask) if mask is not None else None, "points": len(s.points)}

    def session_add(self, request: gr.Request) -> list[str]:
        """Keep the current mask as the next region; returns the region names."""
        s = self.sessions.get(request.session_hash)
        self.service.add_region(s)
        return s.names()

    def session_ask(self, question: str, request: gr.Request) -> str:
        """Ask about the session's regions (or the whole image); the answer joins its chat."""
        return _last(self.service.ask(self.sessions.get(request.session_hash), question)).text

    def session_export(self, request: gr.Request) -> dict:
        """The session's regions, answers and chat as COCO-RLE JSON."""
        return self.service.export(self.sessions.get(request.session_hash))


def _last(replies):
    """The final reply of a streamed answer."""
    replies = list(replies)
    if not replies:
        raise ServiceError("No answer.")
    return replies[-1]
