"""RegionChat: the app's service layer (no UI code). Shared models, per-session state.

A :class:`Session` holds one user's image, clicks, candidate masks, regions and chat; the app
keeps it in ``gr.State`` (one per browser tab), so no session ever sees another's data. The models
(Osprey, SAM) are shared and serialise their own device work. Every method raises
:class:`ServiceError` with a message meant for the user when the input is wrong.
"""

from __future__ import annotations

import io
import json
import re
import threading
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from osprey import viz
from osprey.conversation import ContextLengthError
from osprey.pipeline import Generation, Osprey
from osprey.processor import RegionError
from sam_bridge.images import ImageError
from sam_bridge.masks import encode_rle, mask_box

MAX_HISTORY_UNDO = 50


class ServiceError(ValueError):
    """Something the user should fix (no image yet, a click outside it, no region, ...)."""


@dataclass(frozen=True)
class Region:
    mask: np.ndarray  # bool (H, W)
    color: tuple[int, int, int]
    source: str  # click, box, everything
    label: str = ""  # the user's name for it ("dog"); the model calls it regionK by position
    category: str = ""
    caption: str = ""
    detail: str = ""

    @property
    def area(self) -> int:
        return int(self.mask.sum())


@dataclass
class Session:
    image: np.ndarray | None = None
    points: list[tuple[float, float, int]] = field(default_factory=list)
    box_corner: tuple[float, float] | None = None
    box: tuple[float, float, float, float] | None = None
    prediction: Any = None  # sam_bridge Prediction of the prompt being built
    candidate: int = 0
    regions: list[Region] = field(default_factory=list)
    history: list[tuple[str, str]] = field(default_factory=list)
    undo_stack: list[list[Region]] = field(default_factory=list)
    redo_stack: list[list[Region]] = field(default_factory=list)
    auto: list[Any] = field(default_factory=list)  # sam_bridge AutoMask from "segment everything"
    auto_labels: list[str] = field(default_factory=list)
    notice: str = ""  # last informational message (dropped chat turns, ...)

    def names(self) -> list[str]:
        return [name_of(i, r) for i, r in enumerate(self.regions)]


def name_of(index: int, region: Region) -> str:
    return f"region{index + 1}" + (f" ({region.label})" if region.label else "")


# ---------------------------------------------------------------------------------------------
# the service


class RegionChat:
    """Point-and-describe over shared models. ``osprey``: :class:`osprey.pipeline.Osprey`;
    ``sam``: a :class:`sam_bridge.SamBridge` (or anything with ``prepare``/``set_image``/
    ``predict``/``everything``)."""

    def __init__(
        self,
        osprey: Osprey,
        sam: Any,
        *,
        max_new_tokens: int = 512,
        max_regions: int = 50,
        detail_tokens: int = 1024,
    ):
        self.osprey = osprey
        self.sam = sam
        self.max_new_tokens = max_new_tokens
        self.detail_tokens = detail_tokens
        self.max_regions = max_regions
        self.untrained = osprey.untrained or getattr(sam, "model_type", "") == "tiny"

    # -- image -------------------------------------------------------------------------------

    def open_image(self, session: Session, image: Any) -> None:
        """Start over on a new image: encode it once for SAM and once for Osprey."""
        if image is None:
            raise ServiceError("Upload an image first.")
        try:
            rgb = self.sam.prepare(image)
        except (ImageError, ValueError) as exc:
            raise ServiceError(f"This image cannot be used: {exc}") from exc
        self.sam.set_image(rgb)
        self.osprey.encode_image(rgb)
        session.__init__()  # reset every field
        session.image = rgb

    def _need_image(self, session: Session) -> np.ndarray:
        if session.image is None:
            raise ServiceError("Upload an image (or pick an example) first.")
        return session.image

    # -- prompts -> candidate masks ------------------------------------------------------------

    def click(self, session: Session, x: float, y: float, mode: str = "positive") -> None:
        """A click in ``positive`` / ``negative`` mode adds a point (refining the current mask);
        in ``box`` mode two clicks make a box."""
        rgb = self._need_image(session)
        h, w = rgb.shape[:2]
        if not (0 <= x < w and 0 <= y < h):
            raise ServiceError(f"The click ({x:.0f}, {y:.0f}) is outside the {w}x{h} image.")
        if mode == "box":
            if session.box_corner is None:
                session.box_corner = (x, y)
                return
            (x0, y0), session.box_corner = session.box_corner, None
            if abs(x - x0) < 2 or abs(y - y0) < 2:
                raise ServiceError("The box is too thin: click two opposite corners.")
            session.box = (min(x0, x), min(y0, y), max(x0, x), max(y0, y))
        else:
            session.points.append((x, y, 0 if mode == "negative" else 1))
        self._predict(session)

    def prompt(
        self,
        session: Session,
        points: Sequence[Sequence[float]] = (),
        labels: Sequence[int] | None = None,
        box: Sequence[float] | None = None,
    ) -> None:
        """Set a whole prompt at once (points with labels 1/0, and/or a box), as the API does."""
        self._need_image(session)
        labels = list(labels) if labels is not None else [1] * len(points)
        if len(labels) != len(points):
            raise ServiceError(f"{len(points)} points but {len(labels)} labels")
        if not points and box is None:
            raise ServiceError("Give at least one point or a box.")
        session.points = [(float(x), float(y), int(lab)) for (x, y), lab in zip(points, labels)]
        session.box = tuple(float(v) for v in box) if box is not None else None
        session.prediction = None
        self._predict(session)
        if session.prediction.is_empty:
            raise ServiceError("SAM found no region for this prompt.")

    def add_mask(self, session: Session, mask: np.ndarray, label: str = "") -> Region:
        """Add a region from a mask the user already has (same size as the image)."""
        rgb = self._need_image(session)
        mask = np.asarray(mask).astype(bool)
        if mask.shape != rgb.shape[:2]:
            raise ServiceError(
                f"The mask is {mask.shape[1]}x{mask.shape[0]}, the image {rgb.shape[1]}x{rgb.shape[0]}."
            )
        if not mask.any():
            raise ServiceError("The mask is empty.")
        if len(session.regions) >= self.max_regions:
            raise ServiceError(f"At most {self.max_regions} regions per image.")
        region = Region(
            mask=mask, color=viz.color(len(session.regions)), source="upload", label=label
        )
        self._edit(session, [*session.regions, region])
        return region

    def _predict(self, session: Session) -> None:
        pts = [(x, y) for x, y, _ in session.points] or None
        labels = [lab for _, _, lab in session.points] or None
        refine = session.prediction if session.points and len(session.points) > 1 else None
        try:
            pred = self.sam.predict(
                session.image, points=pts, labels=labels, box=session.box, previous=refine
            )
        except ValueError as exc:
            raise ServiceError(str(exc)) from exc
        session.prediction, session.candidate = pred, 0
        if pred.is_empty:
            session.notice = "SAM found no region for this prompt; try another point."

    def choose_candidate(self, session: Session, index: int) -> None:
        if session.prediction is None or not 0 <= index < len(session.prediction.candidates):
            raise ServiceError("No such candidate: click on the image first.")
        session.candidate = index

    def current_mask(self, session: Session) -> np.ndarray | None:
        if session.prediction is None:
            return None
        return session.prediction.candidates[session.candidate].mask

    def clear_prompt(self, session: Session) -> None:
        session.points, session.box, session.box_corner, session.prediction = [], None, None, None

    def add_region(self, session: Session, source: str = "click") -> Region:
        """Keep the current candidate as a new region (region1, region2, ...)."""
        mask = self.current_mask(session)
        if mask is None or not mask.any():
            raise ServiceError("There is no mask to add: click on the object first.")
        if len(session.regions) >= self.max_regions:
            raise ServiceError(f"At most {self.max_regions} regions per image.")
        src = "box" if session.box is not None else source
        region = Region(mask=mask, color=viz.color(len(session.regions)), source=src)
        self._edit(session, [*session.regions, region])
        self.clear_prompt(session)
        return region

    # -- region list ---------------------------------------------------------------------------

    def _edit(self, session: Session, regions: list[Region], keep_chat: bool = True) -> None:
        session.undo_stack = [*session.undo_stack, session.regions][-MAX_HISTORY_UNDO:]
        session.redo_stack = []
        session.regions = regions
        if not keep_chat:
            session.history = []

    def rename(self, session: Session, index: int, label: str) -> None:
        self._check_index(session, index)
        label = label.strip()
        if re.fullmatch(r"region\d+", label, re.IGNORECASE):
            raise ServiceError("Names like 'region3' are reserved for the model's own numbering.")
        regions = list(session.regions)
        regions[index] = replace(regions[index], label=label)
        self._edit(session, regions)

    def delete(self, session: Session, index: int) -> None:
        """Remove a region; the ones after it are renumbered, so the chat about them restarts."""
        self._check_index(session, index)
        regions = [r for i, r in enumerate(session.regions) if i != index]
        self._edit(
            session,
            [replace(r, color=viz.color(i)) for i, r in enumerate(regions)],
            keep_chat=False,
        )

    def clear_regions(self, session: Session) -> None:
        self._edit(session, [], keep_chat=False)

    def undo(self, session: Session) -> None:
        if not session.undo_stack:
            raise ServiceError("Nothing to undo.")
        session.redo_stack = [*session.redo_stack, session.regions]
        session.regions = session.undo_stack[-1]
        session.undo_stack = session.undo_stack[:-1]

    def redo(self, session: Session) -> None:
        if not session.redo_stack:
            raise ServiceError("Nothing to redo.")
        session.undo_stack = [*session.undo_stack, session.regions]
        session.regions = session.redo_stack[-1]
        session.redo_stack = session.redo_stack[:-1]

    def _check_index(self, session: Session, index: int) -> None:
        if not 0 <= index < len(session.regions):
            raise ServiceError(f"There is no region{index + 1}.")

    # -- asking --------------------------------------------------------------------------------

    def describe(
        self, session: Session, task: str, indices: Sequence[int] | None = None
    ) -> list[tuple[str, str]]:
        """``category`` / ``short`` / ``detailed`` for the chosen regions (default: all), batched."""
        rgb = self._need_image(session)
        if not session.regions:
            raise ServiceError("Add a region first: click on the image, then 'Add region'.")
        indices = list(range(len(session.regions))) if not indices else list(indices)
        for i in indices:
            self._check_index(session, i)
        tokens = self.detail_tokens if task == "detailed" else self.max_new_tokens
        texts = self._run(
            lambda: self.osprey.describe(
                rgb, [session.regions[i].mask for i in indices], task, Generation(tokens)
            )
        )
        field_name = {"category": "category", "short": "caption", "detailed": "detail"}[task]
        regions = list(session.regions)
        for i, text in zip(indices, texts):
            regions[i] = replace(regions[i], **{field_name: text.strip()})
        session.regions = regions
        return [(name_of(i, session.regions[i]), t.strip()) for i, t in zip(indices, texts)]

    def ask(
        self, session: Session, question: str, stop: threading.Event | None = None
    ) -> Iterator[str]:
        """Stream the answer to a free question about all regions (by their names or regionK) or,
        with no region, about the whole image. The exchange joins the chat history at the end."""
        rgb = self._need_image(session)
        question = question.strip()
        if not question:
            raise ServiceError("Type a question.")
        masks = [r.mask for r in session.regions]
        model_q = self._to_model_names(session, question)
        gen = Generation(self.max_new_tokens)

        def report(answer) -> None:
            if answer.dropped_turns:
                n = answer.dropped_turns
                session.notice = f"The chat no longer fits the model's context: its {n} oldest turn(s) were left out."

        stream = self.osprey.stream(
            self.osprey.ask,
            rgb,
            masks or None,
            model_q,
            session.history,
            gen,
            stop=stop,
            on_answer=report,
        )
        text = ""
        try:
            for text in stream:
                yield self._to_user_names(session, text)
        except (RegionError, ContextLengthError) as exc:
            raise ServiceError(str(exc)) from exc
        session.history = [*session.history, (model_q, text)]

    def _run(self, fn):
        try:
            return fn()
        except (RegionError, ContextLengthError) as exc:
            raise ServiceError(str(exc)) from exc

    def _to_model_names(self, session: Session, text: str) -> str:
        for i, r in sorted(enumerate(session.regions), key=lambda p: -len(p[1].label)):
            if r.label:
                text = re.sub(
                    rf"\b{re.escape(r.label)}\b", f"region{i + 1}", text, flags=re.IGNORECASE
                )
        return text

    def _to_user_names(self, session: Session, text: str) -> str:
        def sub(m: re.Match) -> str:
            i = int(m.group(1)) - 1
            return name_of(i, session.regions[i]) if 0 <= i < len(session.regions) else m.group(0)

        return re.sub(r"\bregion(\d+)\b", sub, text)

    # -- segment everything --------------------------------------------------------------------

    def segment_everything(
        self, session: Session, points_per_side: int = 16, **options: Any
    ) -> int:
        rgb = self._need_image(session)
        session.auto = self.sam.everything(rgb, points_per_side=points_per_side, **options)
        session.auto_labels = []
        if not session.auto:
            session.notice = "Segment everything found no mask; try a denser grid."
        return len(session.auto)

    def pick_auto(self, session: Session, x: float, y: float) -> None:
        """Make the smallest "everything" mask under the click the current candidate."""
        from sam_bridge.everything import mask_at

        found = mask_at(session.auto, x, y)
        if found is None:
            raise ServiceError("No mask under this click.")
        session.prediction = _Picked(found.mask, float(found.score))
        session.candidate = 0

    def describe_all(self, session: Session, limit: int = 50) -> list[dict[str, Any]]:
        """Category and short caption of every "everything" mask (largest first, up to ``limit``)."""
        rgb = self._need_image(session)
        if not session.auto:
            raise ServiceError(
                "No masks to describe: run 'Segment everything' first (or lower its thresholds)."
            )
        autos = session.auto[:limit]
        masks = [a.mask for a in autos]
        cats = self._run(lambda: self.osprey.describe(rgb, masks, "category", Generation(16)))
        caps = self._run(lambda: self.osprey.describe(rgb, masks, "short", Generation(48)))
        session.auto_labels = [c.strip() for c in cats]
        return [
            {
                "mask": i + 1,
                "category": c.strip(),
                "caption": s.strip(),
                "area": a.area,
                "box": list(a.box),
            }
            for i, (a, c, s) in enumerate(zip(autos, cats, caps))
        ]

    # -- drawing and export --------------------------------------------------------------------

    def render(self, session: Session, show_auto: bool = True) -> np.ndarray | None:
        if session.image is None:
            return None
        out = session.image
        if show_auto and session.auto and not session.regions:
            n = len(session.auto_labels)
            out = viz.draw_regions(
                out, [a.mask for a in session.auto], [viz.color(i) for i in range(len(session.auto))],
                [f"{i + 1}:{session.auto_labels[i]}" if i < n else "" for i in range(len(session.auto))] if n else None,
                alpha=0.35,
            )  # fmt: skip
        if session.regions:
            out = viz.draw_regions(
                out,
                [r.mask for r in session.regions],
                [r.color for r in session.regions],
                session.names(),
            )
        mask = self.current_mask(session)
        if mask is not None and mask.any():
            out = viz.contour(viz.blend(out, mask, (255, 215, 0), 0.5), mask, (255, 255, 255))
        out = out.copy() if out is session.image else out
        viz.draw_points(out, session.points)
        if session.box is not None:
            viz.draw_box(out, session.box)
        if session.box_corner is not None:
            viz.draw_points(out, [(*session.box_corner, 1)])
        return out

    def export(self, session: Session) -> dict[str, Any]:
        """COCO-RLE JSON of the regions with their names, answers and the chat."""
        rgb = self._need_image(session)
        regions = []
        for i, r in enumerate(session.regions):
            box = mask_box(r.mask)
            regions.append({
                "id": i + 1, "name": f"region{i + 1}", "label": r.label, "source": r.source,
                "segmentation": encode_rle(r.mask), "area": r.area,
                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]] if box else None,
                "category": r.category, "caption": r.caption, "detail": r.detail,
            })  # fmt: skip
        chat = [{"question": q, "answer": a} for q, a in session.history]
        return {
            "image": {"height": int(rgb.shape[0]), "width": int(rgb.shape[1])},
            "model": self.osprey.name, "untrained": self.untrained, "regions": regions, "chat": chat,
        }  # fmt: skip

    def export_masks_zip(self, session: Session) -> bytes:
        """A zip with one 0/255 PNG per region and the JSON export."""
        from PIL import Image

        data = self.export(session)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for i, r in enumerate(session.regions):
                png = io.BytesIO()
                Image.fromarray(r.mask.astype(np.uint8) * 255).save(png, format="PNG")
                zf.writestr(f"region{i + 1}.png", png.getvalue())
            zf.writestr("regions.json", json.dumps(data, indent=2))
        return buf.getvalue()


@dataclass(frozen=True)
class _Candidate:
    mask: np.ndarray
    score: float


class _Picked:
    """A one-candidate stand-in for a SAM Prediction (a mask picked from "segment everything")."""

    def __init__(self, mask: np.ndarray, score: float):
        self.candidates = (_Candidate(mask, score),)
        self.is_empty = not mask.any()
