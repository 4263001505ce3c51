"""Osprey on a clip: every region question of the image app asked about one frame (the tracks
seen on it are its regions, named as the tracks are), and "describe over time": a category and
a short caption for each track at its keyframes, decoded together, merged into spans where
consecutive keyframes say the same.

A frame's questions run on an image :class:`~osprey.app.session.Session` made for that frame
(:func:`frame_session`): the image app's service answers them unchanged. Its chat lasts while
the frame and the tracks' masks stay as they were.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

from pycocotools import mask as mask_utils

from osprey.app import top_classes
from osprey.app.service import RegionChat, Reply
from osprey.app.session import Region, Session
from osprey.app.video_service import VideoChat
from osprey.app.video_session import Span, Track, VideoSession
from osprey.core.errors import ServiceError
from osprey.core.masks import RleMasks
from osprey.inference.facade import Generation
from osprey.inference.preprocess import RegionError

CATEGORY_TOKENS, CAPTION_TOKENS = 16, 48
MAX_KEYFRAMES = 200  # (track, frame) pairs one "describe over time" answers
CHANGE_IOU = 0.8  # below this overlap with the previous frame a mask "changes"


def frame_session(chat: RegionChat, vs: VideoSession, frame: int) -> Session:
    """The image session for ``frame``: its picture and, as regions, the tracks seen on it (in
    track order, each named as its track). Made again when the frame or a mask changed."""
    if vs.clip is None:
        raise ServiceError("Open a video first.")
    if vs.frame_chat is not None and vs.chat_key == (frame, vs.revision):
        return vs.frame_chat
    session = Session()
    session.reset(vs.clip.handle(frame))
    regions = [
        Region(t.mask(frame), t.color, "track", label=t.label)
        for t in vs.tracks
        if t.mask(frame) is not None
    ]
    session.set_regions(regions)
    session.undo_stack = []
    vs.frame_chat, vs.chat_key = session, (frame, vs.revision)
    return session


class VideoAnswers:
    """Questions about frames and tracks, over the image app's service (``chat``)."""

    def __init__(self, chat: RegionChat, video: VideoChat):
        self.chat, self.video = chat, video

    def _frame(self, vs: VideoSession, frame: Any) -> Session:
        return frame_session(self.chat, vs, self.video.frame(vs, frame))

    def describe(self, vs: VideoSession, frame: Any, task: str, max_new_tokens: int = 0):
        """``category`` / ``short`` / ``detailed`` for every track seen on ``frame``: (track
        name, answer) pairs."""
        session = self._frame(vs, frame)
        if not session.regions:
            raise ServiceError(f"No track is seen on frame {int(frame)}: track an object first.")
        answers = self.chat.describe(session, task, max_new_tokens=max_new_tokens)
        return [(name.split(" (", 1)[-1].rstrip(")"), text) for name, text in answers]

    def ask(self, vs: VideoSession, frame: Any, question: str,
            stop: threading.Event | None = None, max_new_tokens: int = 0) -> Iterator[Reply]:  # fmt: skip
        """A free question about the tracks seen on ``frame`` (by their names), or about the
        whole frame when none is; streamed, kept in the frame's chat."""
        session = self._frame(vs, frame)
        return self.chat.ask(session, question, stop=stop, max_new_tokens=max_new_tokens)

    def classify(self, vs: VideoSession, frame: Any, vocabulary: str, top_k: int = 5):
        """Top-k classes of ``vocabulary`` with probabilities for each track seen on ``frame``
        (the whole frame when none is)."""
        session = self._frame(vs, frame)
        return top_classes.classify(self.chat.osprey, session, vocabulary, top_k=top_k)

    # -- describe over time ----------------------------------------------------------------------

    def describe_over_time(self, vs: VideoSession, every: int = 5) -> list[dict[str, Any]]:
        """Category and short caption of every track at its keyframes (:func:`keyframes`), all
        decoded together; consecutive keyframes with the same answer merge into one span. The
        answers are kept on the tracks (the export carries them)."""
        clip = self.video.clip(vs)
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ServiceError(f"every must be a whole number of frames from 1, got {every!r}")
        plan = {i: keyframes(t, every) for i, t in enumerate(vs.tracks)}
        if not any(plan.values()):
            raise ServiceError("No track is seen anywhere yet: click on an object and track it.")
        total = sum(map(len, plan.values()))
        if total > MAX_KEYFRAMES:
            raise ServiceError(f"That asks about {total} keyframes, above {MAX_KEYFRAMES}: choose "
                               f"a larger every (one keyframe per that many frames).")  # fmt: skip
        frames = sorted({f for fs in plan.values() for f in fs})
        asked = [(f, [i for i in plan if f in plan[i]]) for f in frames]
        items = [
            (clip.handle(f), RleMasks([vs.tracks[i].mask(f) for i in idx])) for f, idx in asked
        ]
        osprey = self.chat.osprey
        try:
            cats = osprey.describe_batch(items, "category", Generation(CATEGORY_TOKENS))
            caps = osprey.describe_batch(items, "short", Generation(CAPTION_TOKENS))
        except RegionError as exc:
            raise ServiceError(str(exc)) from exc
        found: dict[int, list[dict[str, Any]]] = {i: [] for i in plan}
        for (f, idx), cat_row, cap_row in zip(asked, cats, caps):
            for i, cat, cap in zip(idx, cat_row, cap_row):
                found[i].append({"frame": f, "time": clip.times[f], "category": cat.strip(),
                                 "caption": cap.strip()})  # fmt: skip
        out = []
        for i, track in enumerate(vs.tracks):
            track.captions = found[i]
            track.spans = spans(track, found[i])
            out.append({"track": i, "name": track.label, "captions": found[i],
                        "spans": [s.__dict__ for s in track.spans]})  # fmt: skip
        return out


def keyframes(track: Track, every: int) -> list[int]:
    """The frames a track is described at: every ``every``-th frame it is seen on (its first
    included), plus the frames where its mask changes most (overlap with the frame before
    below :data:`CHANGE_IOU`, the lowest first, as many as half the regular ones)."""
    seen = track.visible()
    regular = seen[::every]
    changes = []
    for before, after in pairwise(seen):
        iou = mask_utils.iou([_coco(track.mask(after))], [_coco(track.mask(before))], [0])[0][0]
        if iou < CHANGE_IOU:
            changes.append((iou, after))
    extra = [f for _, f in sorted(changes)[: math.ceil(len(regular) / 2)]]
    return sorted(set(regular) | set(extra))


def spans(track: Track, captions: list[dict[str, Any]]) -> list[Span]:
    """Consecutive keyframes with the same category and caption (case and spaces aside) as one
    span, from its first keyframe to the frame before the next span (its last seen frame for
    the last one)."""
    out: list[Span] = []
    for c in captions:
        key = (_norm(c["category"]), _norm(c["caption"]))
        if out and (_norm(out[-1].category), _norm(out[-1].caption)) == key:
            out[-1].keyframes.append(c["frame"])
        else:
            out.append(Span(c["frame"], c["frame"], c["category"], c["caption"], [c["frame"]]))
    seen = track.visible()
    for span, following in zip(out, [*out[1:], None]):
        span.end = following.start - 1 if following else (seen[-1] if seen else span.start)
    return out


def _norm(text: str) -> str:
    return " ".join(text.lower().split()).strip(" .")


def _coco(rle: dict[str, Any]) -> dict[str, Any]:
    return {"size": rle["size"], "counts": rle["counts"].encode()}
