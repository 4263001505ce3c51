"""One user's video, as plain data: the clip (frames kept as JPEG bytes), the tracks (a named,
coloured object each, with its prompts per frame and its mask per frame as COCO RLE, ``None``
where it is not seen), the answers "describe over time" gave, and the tracker's state for the
clip. No models and no drawing here; :mod:`osprey.app.video_service` changes it.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from osprey.core.masks import rle_area, rle_box
from osprey.core.video import VideoClip


@dataclass
class FramePrompt:
    """The clicks and box one track has on one frame (the frame's pixels)."""

    points: list[tuple[float, float, int]] = field(default_factory=list)  # (x, y, 1 | 0)
    box: tuple[float, float, float, float] | None = None
    box_corner: tuple[float, float] | None = None  # the first click of a box


@dataclass
class Span:
    """Consecutive keyframes of a track with the same answer: frames ``start`` to ``end``."""

    start: int
    end: int
    category: str
    caption: str
    keyframes: list[int]


@dataclass(eq=False)
class Track:
    """An object followed through the clip: ``id`` is the tracker's id for it (never reused in a
    clip), ``label`` its name in questions (``track1`` until renamed)."""

    id: int
    label: str
    color: tuple[int, int, int]
    prompts: dict[int, FramePrompt] = field(default_factory=dict)
    masks: dict[int, dict[str, Any] | None] = field(default_factory=dict)  # frame -> RLE
    captions: list[dict[str, Any]] = field(default_factory=list)  # keyframe answers
    spans: list[Span] = field(default_factory=list)

    def mask(self, frame: int) -> dict[str, Any] | None:
        """The RLE of the track on ``frame``; None where it is not seen (or not tracked yet)."""
        rle = self.masks.get(frame)
        return rle if rle is not None and rle_area(rle) > 0 else None

    def visible(self) -> list[int]:
        """The frames where the track is seen, in order."""
        return sorted(f for f in self.masks if self.mask(f) is not None)

    def runs(self) -> list[tuple[int, int]]:
        """Where the track is seen, as (first, last) frame runs: its timeline."""
        out: list[tuple[int, int]] = []
        for f in self.visible():
            if out and out[-1][1] == f - 1:
                out[-1] = (out[-1][0], f)
            else:
                out.append((f, f))
        return out

    def box(self, frame: int) -> tuple[int, int, int, int] | None:
        rle = self.mask(frame)
        return rle_box(rle) if rle is not None else None


class StopFlag(threading.Event):
    """A tracking run's stop flag (a copy is a new, unset flag: Gradio copies a page's state)."""

    def __deepcopy__(self, memo: dict) -> StopFlag:
        return StopFlag()


class Busy:
    """A non-reentrant lock held while a tracking run goes (a copy is a new, free lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> Busy:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._lock.release()

    def __deepcopy__(self, memo: dict) -> Busy:
        return Busy()


@dataclass(eq=False)
class VideoSession:
    """One browser tab's (or API client's) video. Compared by identity."""

    clip: VideoClip | None = None
    tracking: Any = None  # the tracker's state for this clip (sam_bridge.tracker.Tracking)
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 1
    id: str = ""
    revision: int = 0  # counts changes of the tracks' masks (answers about a frame go stale)
    progress: tuple[int, int] = (0, 0)  # frames tracked / to track, of the running (or last) run
    stop: StopFlag = field(default_factory=StopFlag)
    busy: Busy = field(default_factory=Busy)  # one tracking run at a time
    frame_chat: Any = None  # the image Session asked about the current frame
    chat_key: tuple[int, int] | None = None  # (frame, revision) that frame_chat shows

    def names(self) -> list[str]:
        return [t.label for t in self.tracks]

    def find(self, index: int) -> Track:
        return self.tracks[index]

    def reset(self, clip: VideoClip | None = None) -> None:
        """Start over (a new clip, or nothing): every field back to its default, a new id."""
        self.__init__(clip=clip, id=uuid.uuid4().hex if clip is not None else "")  # type: ignore[misc]

    def __deepcopy__(self, memo: dict) -> VideoSession:
        return VideoSession()  # Gradio copies the initial state for each visitor: a fresh one
