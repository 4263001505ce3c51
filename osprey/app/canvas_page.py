"""The canvas page's server side: what the page is sent, and what it sends back. No Gradio here
(``osprey/app/canvas_component.py`` is the component; ``osprey/app/static/canvas.js`` the page).

The page runs SAM's prompt encoder and mask decoder itself (ONNX in onnxruntime-web) on the
image embedding it fetches once, so a click, a hover, a box, a refinement, a candidate or a pick
costs no request. The server sends it a small JSON *view* of the session with links to files at
display resolution (the image with the regions drawn, the "segment everything" masks as RLE) and, once per image, the embedding (float16) with its geometry. The page keeps the prompt
being built (its clicks in order, and the chosen candidate) and sends it when a region is added;
the server then replays those clicks through :class:`~osprey.app.mask_prompts.MaskPrompts` at full
resolution with the same weights, so regions, answers, the API and the export are exactly what
the server path gives. When the page cannot run the decoder (no WebAssembly, the model failed to
load), it sends each click's prompt instead and the server answers with display-size masks.

Every number the page sends is checked here (:func:`parse_prompt`): at most :data:`MAX_CLICKS`
clicks, finite coordinates inside the image, known modes.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from osprey.app import drawing, saved
from osprey.app.mask_prompts import CLICK_MODES, MaskPrompts, need_image
from osprey.app.session import Proposal, Session
from osprey.core.constants import MAX_POINTS_PER_PROMPT
from osprey.core.errors import ServiceError
from osprey.core.images import ImageHandle
from osprey.core.lru import LRUCache
from osprey.core.masks import encode_rle

MODES = (*CLICK_MODES, "pick")  # what the page may send: clicks, and picks in "everything"
MAX_CLICKS = MAX_POINTS_PER_PROMPT
DEFAULT_ASSETS = Path(tempfile.gettempdir()) / "osprey-page"
PRUNED = ("b-", "a-", "r-", "e-", "p-")  # generated files (images, masks, maps, previews): pruned


@dataclass(frozen=True)
class PagePrompt:
    """The prompt the page built: clicks in order (x, y in image pixels, mode) and the chosen
    candidate (its rank by score, as the page shows them)."""

    clicks: tuple[tuple[float, float, str], ...] = ()
    candidate: int = 0


@dataclass(frozen=True, eq=False)
class PageView:
    """What a handler returns for the canvas: the session, a message for the user, and, for a
    fallback click, the display-size candidates of the page's prompt (:meth:`Page.preview`).
    ``preparing``: what the server is still doing with a new image (the page says so);
    ``refused``: the image the page sent was refused (the page goes back to what it showed, and
    shows ``message``); ``forget``: the page drops what this browser kept ("Clear all")."""

    session: Session
    preview: dict[str, Any] | None = None
    message: str = ""
    preparing: str = ""
    refused: bool = False
    forget: bool = False


# ---------------------------------------------------------------------------------------------
# helpers


def parse_prompt(data: Any, handle: ImageHandle) -> PagePrompt:
    """The page's prompt as it arrives (untrusted JSON) -> a checked :class:`PagePrompt`."""
    if not isinstance(data, dict):
        raise ServiceError("The page sent no prompt: click on the image first.")
    clicks = data.get("clicks", [])
    if not isinstance(clicks, list) or len(clicks) > MAX_CLICKS:
        raise ServiceError(f"A prompt has at most {MAX_CLICKS} clicks; clear the clicks.")
    checked = []
    for click in clicks:
        if not (isinstance(click, list) and len(click) == 3 and click[2] in MODES):
            raise ServiceError("The page sent a malformed click; reload the page.")
        x, y = _number(click[0]), _number(click[1])
        if not (0 <= x < handle.width and 0 <= y < handle.height):
            raise ServiceError(f"The click ({x:g}, {y:g}) is outside the image.")
        checked.append((x, y, click[2]))
    candidate = data.get("candidate", 0)
    if isinstance(candidate, bool) or not isinstance(candidate, int) or not 0 <= candidate < 4:
        raise ServiceError("The page sent an unknown candidate; click on the image again.")
    return PagePrompt(tuple(checked), candidate)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ServiceError("The page sent a malformed click; reload the page.")
    return float(value)


def replay(
    masks: MaskPrompts, session: Session, clicks: Sequence[tuple[float, float, str]],
    mask_size: tuple[int, int] | None = None,
) -> str:  # fmt: skip
    """Apply ``clicks`` to ``session``'s prompt as the server applies clicks one by one
    (refinement, boxes, picks); returns the last message for the user."""
    message = ""
    for x, y, mode in clicks:
        if mode == "pick" and mask_size is None:
            masks.pick_auto(session, x, y)
        elif mode == "pick":  # a preview: the page draws the picked mask itself
            session.prediction, session.candidate = Proposal(()), 0
        else:
            message = masks.click(session, x, y, mode, mask_size=mask_size)
    return message


def pack_masks(masks: Sequence[np.ndarray]) -> bytes:
    """Up to 8 bool (h, w) masks as one grayscale PNG, mask i in bit i. (Level 6: level 9 is
    ten times slower for 8 % fewer bytes; WebP lossless is smaller but old browsers, the ones
    that need this fallback, lack it.)"""
    planes = np.zeros(masks[0].shape, np.uint8)
    for i, m in enumerate(masks):
        planes |= m.astype(np.uint8) << i
    _, png = cv2.imencode(".png", planes, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    return png.tobytes()


def pack_maps(maps: Sequence[np.ndarray]) -> bytes:
    """SAM 2's float16 maps in one file as its page decoder reads them (osprey/app/static/
    sam2_decoder.js): the maps' values in order, their low bytes first, then their high bytes
    (sign and exponent, which repeat, so gzip finds them), gzip level 1. The tiny Hiera's maps
    of a photo: 8.0 MiB -> 6.1 MiB in 0.5 s on 2 cores (without the byte split 6.8 MiB)."""
    half = np.concatenate([np.ascontiguousarray(m, np.float16).reshape(-1) for m in maps])
    split = half.view(np.uint8).reshape(-1, 2).T  # (2, n): low bytes, high bytes (little-endian)
    return gzip.compress(np.ascontiguousarray(split).tobytes(), compresslevel=1)


def display_masks(found: Sequence[Any], size: tuple[int, int]) -> bytes:
    """Masks (the "segment everything" ones, or regions) at display ``size`` as JSON: each mask's
    COCO RLE (column-major, compressed counts) and its area in image pixels (the page picks the
    smallest "everything" mask under a click, as
    :meth:`~osprey.app.mask_prompts.MaskPrompts.pick_auto` does)."""
    masks = [{"counts": encode_rle(drawing.to_display(m.mask, size))["counts"], "area": m.area}
             for m in found]  # fmt: skip
    return json.dumps({"size": list(size), "masks": masks}).encode()


def region_chips(session: Session) -> dict[str, Any]:
    """The regions as the page's chips show them: name, colour, answers, and an ``id`` that
    follows a region through renames and renumbering (its mask's digest); and whether undo and
    redo can run."""
    chips = [
        {"id": key, "name": name, "label": r.label, "color": _hex(r.color),
         "category": r.category, "caption": r.caption}
        for key, r, name in zip(_chip_ids(session), session.regions, session.names())
    ]  # fmt: skip
    return {"regions": chips, "can_undo": session.can_undo, "can_redo": session.can_redo,
            "image": session.image is not None}  # fmt: skip


def chip_indices(session: Session, ids: Any) -> list[int]:
    """The indices of the regions the page's chips name by ``id`` (ids of regions that are gone
    are left out: the page's ticks may be older than the last edit)."""
    if not isinstance(ids, list):
        return []
    wanted = {x for x in ids if isinstance(x, str)}
    return [i for i, key in enumerate(_chip_ids(session)) if key in wanted]


def _chip_ids(session: Session) -> list[str]:
    """Each region's mask digest, and how many regions before it have the same mask."""
    ids, seen = [], {}
    for r in session.regions:
        digest = hashlib.sha1(r.rle["counts"].encode()).hexdigest()[:16]
        seen[digest] = seen.get(digest, -1) + 1
        ids.append(f"{digest}-{seen[digest]}")
    return ids


def _hex(rgb: Sequence[int]) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


# ---------------------------------------------------------------------------------------------
# files the page fetches


@dataclass
class Assets:
    """A folder of files the app serves to the page (``gradio_api/file=...``), named by content;
    generated ones beyond ``capacity`` files or ``max_bytes`` are deleted oldest first."""

    directory: Path = DEFAULT_ASSETS
    capacity: int = 512
    max_bytes: int = 256 << 20  # a ViT-B embedding is 2 MB
    _written: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self.directory = Path(self.directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)

    def url(self, name: str) -> str:
        """The page's (relative) address of file ``name``."""
        return f"gradio_api/file={self.directory / name}"

    def has(self, name: str) -> bool:
        return (self.directory / name).is_file()

    def write(self, name: str, data: bytes) -> str:
        path = self.directory / name
        if not path.is_file():
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".part")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
            self._written += 1
            if self._written % 32 == 0:
                self.prune()
        return self.url(name)

    def copy(self, source: Path) -> str:
        """Serve ``source`` (kept: never pruned) under its own name."""
        dest = self.directory / source.name
        if not dest.is_file() or dest.stat().st_size != source.stat().st_size:
            shutil.copyfile(source, dest)
        return self.url(source.name)

    def prune(self) -> None:
        files = [e for e in os.scandir(self.directory) if e.name.startswith(PRUNED)]
        files.sort(key=lambda e: -e.stat().st_mtime)  # newest first: kept while within limits
        total = 0
        for n, entry in enumerate(files):
            total += entry.stat().st_size
            if n >= self.capacity or total > self.max_bytes:
                Path(entry.path).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# the page's server side


class Page:
    """Views of sessions for the canvas page, over one shared SAM (``sam``: a
    :class:`~osprey.app.mask_prompts.Segmenter`; with ``page_embedding`` and ``decoder_onnx`` the page
    decodes clicks itself, without them every click is decoded here)."""

    def __init__(self, masks: MaskPrompts, assets: Assets | None = None, side: int = 1024):
        self.masks = masks
        self.assets = assets or Assets()
        self.side = side
        self._display = LRUCache[np.ndarray](8)  # display-size images by image key
        self._embeddings = LRUCache[dict](64)  # what the page needs to fetch an embedding
        self._previews = LRUCache[tuple](256)  # session id -> (clicks, scratch session)
        family = getattr(masks.sam, "family", None)  # sam_bridge's SAM 1 / SAM 2
        self.decoder_kind = getattr(family, "name", "sam1")  # which inputs the decoder takes
        self.decoder_url = self._decoder()

    def _decoder(self) -> str | None:
        """The page's decoder file as an asset URL; None (clicks decode on the server, and the
        page says so) where the segmenter has none or its export fails."""
        export = getattr(self.masks.sam, "decoder_onnx", None)
        if export is None:
            return None
        try:
            return self.assets.copy(export())
        except Exception as exc:  # the app still serves, with the server's click path
            print(f"The page's SAM decoder could not be built ({type(exc).__name__}: {exc}); "
                  "clicks will be decoded on the server.", file=sys.stderr)  # fmt: skip
            return None

    # -- the view --------------------------------------------------------------------------------

    def view(self, value: Session | PageView | None) -> dict[str, Any]:
        """The canvas payload (JSON) for a session, or a :class:`PageView` of one."""
        view = value if isinstance(value, PageView) else PageView(value or Session())
        s = view.session
        out: dict[str, Any] = {"image": None, "decoder": self.decoder_url, "auto": None,
                               "regions": None, "decoder_kind": self.decoder_kind,
                               "prompt": f"{s.id}:{s.prompt_serial}", "preview": view.preview,
                               "message": view.message, "preparing": view.preparing,
                               "refused": view.refused, "forget": view.forget,
                               "saved": saved.snapshot(s)}  # fmt: skip
        if s.image is None:
            return out
        h, w = s.image.height, s.image.width
        size = drawing.display_size(h, w, self.side)
        out["image"] = {"key": s.image.key, "width": w, "height": h, "shown": [size[1], size[0]],
                        "base": self._base(s, size), **self._embedding(s.image)}  # fmt: skip
        if s.auto:
            out["auto"] = self._masks("a", s.auto, size)
        if s.regions:
            out["regions"] = self._masks("r", s.regions, size)
        return out

    def display_image(self, handle: ImageHandle) -> np.ndarray:
        """The image at display size (cached by content)."""
        size = drawing.display_size(handle.height, handle.width, self.side)
        return self._display.get_or_compute(
            handle.key, lambda: drawing.to_display(handle.rgb, size)
        )

    def _base(self, s: Session, size: tuple[int, int]) -> str:
        """The image with the regions (or the "everything" masks) drawn, as a JPEG."""
        digest = hashlib.sha1(s.image.key.encode())
        for r, name in zip(s.regions, s.names()):
            digest.update(repr((r.rle["counts"], r.color, name)).encode())
        if not s.regions:
            digest.update(repr(([a.rle["counts"] for a in s.auto], s.auto_labels)).encode())
        name = f"b-{digest.hexdigest()[:24]}.jpg"
        if not self.assets.has(name):
            rgb = drawing.render(s, size=size, prompt=False, base=self.display_image(s.image))
            _, jpg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
            return self.assets.write(name, jpg.tobytes())
        return self.assets.url(name)

    def _masks(self, prefix: str, found: Sequence[Any], size: tuple[int, int]) -> str:
        """A file of ``found``'s masks at display size (:func:`display_masks`), named by content."""
        digest = hashlib.sha1(repr([m.rle["counts"] for m in found]).encode()).hexdigest()
        name = f"{prefix}-{digest[:24]}-{size[0]}x{size[1]}.json"
        if not self.assets.has(name):
            return self.assets.write(name, display_masks(found, size))
        return self.assets.url(name)

    def _embedding(self, handle: ImageHandle) -> dict[str, Any]:
        """{embedding url, channels, input size, the maps' shapes}, the file written once per
        image (SAM 2's three maps packed by :func:`pack_maps`)."""
        export = getattr(self.masks.sam, "page_embedding", None)
        if export is None or self.decoder_url is None:
            return {"embedding": None}
        sam2 = self.decoder_kind == "sam2"
        model = Path(self.decoder_url).stem  # the decoder names its weights: one file per model
        suffix = ".f16.gz" if sam2 else ".f16"
        name = f"e-{handle.key}-{hashlib.sha1(model.encode()).hexdigest()[:12]}{suffix}"
        facts = self._embeddings.get(handle.key)
        if facts is None or not self.assets.has(name):
            emb = export(handle)
            maps = getattr(emb, "maps", (emb.features,))
            data = pack_maps(maps) if sam2 else np.ascontiguousarray(emb.features).tobytes()
            url = self.assets.write(name, data)
            facts = {"embedding": url, "channels": int(emb.features.shape[1]),
                     "grid": list(emb.features.shape[2:]), "input": list(emb.input_size),
                     "maps": [list(m.shape) for m in maps], "gzip": sam2}  # fmt: skip
            self._embeddings.put(handle.key, facts)
        return facts

    # -- what the page sends -----------------------------------------------------------------------

    def apply(self, session: Session, value: Any) -> None:
        """Make the page's prompt (in the canvas ``value``) the session's, at full resolution."""
        handle = need_image(session)
        prompt = parse_prompt(
            (value or {}).get("page") if isinstance(value, dict) else None, handle
        )
        session.clear_prompt()
        replay(self.masks, session, prompt.clicks)
        if session.prediction is not None and prompt.candidate < len(session.prediction.candidates):
            self.masks.choose_candidate(session, prompt.candidate)

    def preview(self, session: Session, data: Any) -> PageView:
        """Display-size candidates for the page's prompt ``data`` (the fallback when the page
        cannot decode): SAM's decoder on the cached embedding, masks at display size. The last
        prompt of each session is kept, so a new click costs one decoder run."""
        handle = need_image(session)
        prompt = parse_prompt(data, handle)
        size = drawing.display_size(handle.height, handle.width, self.side)
        cached = self._previews.get(session.id)
        if cached is not None and cached[0] == prompt.clicks[:-1] and cached[1].image is handle:
            scratch, todo = cached[1], prompt.clicks[-1:]
        else:
            scratch, todo = Session(image=handle, id=session.id), prompt.clicks
        self._previews.put(session.id, (None, scratch))  # a failing click leaves no stale state
        message = replay(self.masks, scratch, todo, mask_size=size)
        self._previews.put(session.id, (prompt.clicks, scratch))
        pred = scratch.prediction
        ask = data.get("id") if isinstance(data, dict) else None
        preview: dict[str, Any] = {"id": ask if isinstance(ask, int) else None, "message": message}
        if pred is not None and pred.candidates:
            png = pack_masks([c.mask for c in pred.candidates])  # a file: no base64 in the JSON
            preview["masks"] = self.assets.write(f"p-{hashlib.sha1(png).hexdigest()[:24]}.png", png)
            preview["scores"] = [round(c.score, 4) for c in pred.candidates]
        return PageView(session, preview)
