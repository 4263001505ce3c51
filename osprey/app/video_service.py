"""VideoChat: the app's video operations over shared models, on per-user
:class:`~osprey.app.video_session.VideoSession` data: open a clip, click (positive, negative,
box) on any frame for a track, track every object through the clip (a generator of progress,
stoppable), and close. Asking about a frame and "describe over time" are
:mod:`osprey.app.video_answers`; the exports :mod:`osprey.app.video_export`.

The tracker (SAM 2.1's video model, ``sam_bridge.tracker.VideoTracker``) is reached through the
:class:`Tracker` protocol; each operation raises :class:`ServiceError` with one line for the
user, and the server keeps serving.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol

import numpy as np

from osprey.app import drawing
from osprey.app.mask_prompts import CLICK_MODES, prompt_labels
from osprey.app.session import LabelError, check_label
from osprey.app.video_session import FramePrompt, Track, VideoSession
from osprey.core.constants import MAX_POINTS_PER_PROMPT
from osprey.core.errors import OspreyError, ServiceError
from osprey.core.masks import encode_rle
from osprey.core.memory import give_back_freed_memory
from osprey.core.video import VideoClip, VideoLimits, open_clip

MAX_TRACKS = 8  # objects tracked in one clip
CLOSE_WAIT_S = 60.0  # longest a close waits for a tracking run to reach its next frame
NO_TRACKER = (
    "Video tracking needs SAM 2.1: start the app with --sam sam2.1-tiny (or another SAM 2.1 "
    "size, or auto)."
)


class Tracker(Protocol):
    """What the app needs of a video tracker (``sam_bridge.tracker.VideoTracker``)."""

    untrained: bool

    def open(self, frames: VideoClip) -> Any: ...


@dataclass(frozen=True)
class Progress:
    """Where a tracking run is: ``done`` of ``total`` frames, the last one ``frame``; the last
    report of a run has ``finished`` True (``stopped`` when it ended early)."""

    done: int
    total: int
    frame: int
    finished: bool = False
    stopped: bool = False


class OpenVideos:
    """The videos open on the server (weakly held: a session dropped by Gradio goes) and the
    memory they may hold: ``budget`` bytes of frames (JPEG) and tracking state, or None."""

    def __init__(self, budget: int | None = None):
        self.budget = budget
        self._open: weakref.WeakSet[VideoSession] = weakref.WeakSet()

    def add(self, vs: VideoSession) -> None:
        self._open.add(vs)

    def discard(self, vs: VideoSession) -> None:
        self._open.discard(vs)

    def open(self) -> list[VideoSession]:
        return [vs for vs in list(self._open) if vs.clip is not None]

    def held_bytes(self, but: VideoSession | None = None) -> int:
        """Bytes the open videos (all but ``but``) hold."""
        return sum(_held(vs) for vs in self.open() if vs is not but)

    def check(self, vs: VideoSession | None = None) -> None:
        """Refuse a new clip (``vs`` None) or a tracking run of ``vs`` while the other open
        videos hold the budget (a clip's own growth is bounded by the clip limits)."""
        if self.budget is not None and self.held_bytes(but=vs) >= self.budget:
            raise ServiceError(
                f"The server's memory for videos ({self.budget / 2**20:.0f} MiB) is taken by "
                "other videos now; try again in a few minutes."
            )

    def stop_all(self) -> list[VideoSession]:
        """Every tracking run ends at its next frame; returns the open videos."""
        videos = self.open()
        for vs in videos:
            vs.stop.set()
        return videos


def _held(vs: VideoSession) -> int:
    state = getattr(vs.tracking, "state_bytes", None)
    return (vs.clip.nbytes if vs.clip is not None else 0) + (state() if callable(state) else 0)


class VideoChat:
    """Video over shared models: ``tracker`` follows objects, ``limits`` bound clips."""

    def __init__(
        self, tracker: Tracker | None, limits: VideoLimits | None = None,
        max_tracks: int = MAX_TRACKS, budget: int | None = None,
    ):  # fmt: skip
        self.tracker, self.limits, self.max_tracks = tracker, limits or VideoLimits(), max_tracks
        self.videos = OpenVideos(budget)

    @property
    def untrained(self) -> bool:
        return bool(getattr(self.tracker, "untrained", False))

    # -- the clip --------------------------------------------------------------------------------

    def open_video(self, vs: VideoSession, source: bytes | str | IO[bytes] | None) -> VideoClip:
        """Decode a clip within the limits and start over on it (tracks and answers go)."""
        if self.tracker is None:
            raise ServiceError(NO_TRACKER)
        if source is None:
            raise ServiceError("Upload a video first.")
        self.close(vs)  # this visitor's previous clip does not count against the budget
        self.videos.check()
        try:
            clip = open_clip(source, self.limits)
        except OspreyError as exc:
            raise ServiceError(f"This video cannot be used: {exc}") from exc
        return self.start(vs, clip)

    def start(self, vs: VideoSession, clip: VideoClip) -> VideoClip:
        """Start over on a decoded ``clip`` (tracks and answers go)."""
        if self.tracker is None:
            raise ServiceError(NO_TRACKER)
        self.close(vs)
        vs.reset(clip)
        vs.tracking = self.tracker.open(clip)
        self.videos.add(vs)
        return clip

    def close(self, vs: VideoSession) -> None:
        """Stop a tracking run, free the clip and its tracking state."""
        vs.stop.set()
        busy = vs.busy
        held = busy.acquire(timeout=CLOSE_WAIT_S)  # a run stops at its next frame
        try:
            if vs.tracking is not None:
                vs.tracking.close()
            vs.reset()
        finally:
            if held:
                busy.release()
        self.videos.discard(vs)
        give_back_freed_memory()

    def close_all(self) -> int:
        """Stop every tracking run and close every open video (the server is stopping);
        returns how many there were."""
        videos = self.videos.stop_all()
        for vs in videos:
            self.close(vs)
        return len(videos)

    def clip(self, vs: VideoSession) -> VideoClip:
        if vs.clip is None:
            raise ServiceError("Open a video first.")
        return vs.clip

    def frame(self, vs: VideoSession, frame: Any) -> int:
        """``frame`` checked against the open clip."""
        try:
            return self.clip(vs).check_index(frame)
        except OspreyError as exc:
            raise ServiceError(f"{str(exc)[0].upper()}{str(exc)[1:]}.") from exc

    # -- tracks ----------------------------------------------------------------------------------

    def new_track(self, vs: VideoSession, label: str = "") -> int:
        """A new, empty track (named ``trackN`` unless ``label``); returns its index."""
        self.clip(vs)
        if len(vs.tracks) >= self.max_tracks:
            raise ServiceError(f"At most {self.max_tracks} tracks per video.")
        tid = vs.next_id
        label = self._label(vs, label or f"track{tid}", None)
        vs.tracks.append(Track(tid, label, drawing.color(tid - 1)))
        vs.next_id += 1
        return len(vs.tracks) - 1

    def track_index(self, vs: VideoSession, index: Any) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, float)) or index != int(index):
            raise ServiceError(f"track must be a whole number, got {str(index)[:20]!r}")
        if not 0 <= int(index) < len(vs.tracks):
            have = f"0 to {len(vs.tracks) - 1}" if vs.tracks else "none yet"
            raise ServiceError(f"There is no track {int(index)} (tracks: {have}).")
        return int(index)

    def rename(self, vs: VideoSession, index: int, label: str) -> None:
        index = self.track_index(vs, index)
        vs.tracks[index].label = self._label(vs, label, index)

    def _label(self, vs: VideoSession, label: str, index: int | None) -> str:
        others = [t.label for i, t in enumerate(vs.tracks) if i != index]
        try:
            label = check_label(label, others)
        except LabelError as exc:
            raise ServiceError(str(exc)) from exc
        if not label:
            raise ServiceError("A track needs a name.")
        return label

    def delete_track(self, vs: VideoSession, index: int) -> None:
        index = self.track_index(vs, index)
        with _idle(vs):
            track = vs.tracks.pop(index)
            vs.tracking.remove(track.id)
            vs.revision += 1

    # -- prompts ---------------------------------------------------------------------------------

    def click(self, vs: VideoSession, frame: Any, x: float, y: float, mode: str = "positive",
              track: int | None = None) -> np.ndarray | None:  # fmt: skip
        """A click on ``frame`` for ``track`` (index; None: a new track): positive and negative
        clicks add up, two clicks in ``box`` mode make a box. The track's mask on that frame
        (bool (H, W)), or None while a box waits for its second corner."""
        frame = self.frame(vs, frame)
        if mode not in CLICK_MODES:
            raise ServiceError(f"Unknown click mode {str(mode)[:20]!r}: use one of {CLICK_MODES}.")
        clip = self.clip(vs)
        if not (0 <= x < clip.width and 0 <= y < clip.height):
            raise ServiceError(f"The click ({x:g}, {y:g}) is outside the {clip.width}x{clip.height} "
                               f"frame.")  # fmt: skip
        index = self.new_track(vs) if track is None else self.track_index(vs, track)
        old = vs.tracks[index].prompts.get(frame) or FramePrompt()
        new = FramePrompt(list(old.points), old.box)
        if len(new.points) >= MAX_POINTS_PER_PROMPT:
            raise ServiceError(f"At most {MAX_POINTS_PER_PROMPT} clicks on one frame of a track.")
        if mode == "box" and old.box_corner is None:
            old.box_corner = (x, y)
            vs.tracks[index].prompts[frame] = old
            return None
        if mode == "box":
            (x0, y0) = old.box_corner
            old.box_corner = None
            if abs(x - x0) < 2 or abs(y - y0) < 2:
                raise ServiceError("The box is too thin: click two opposite corners.")
            new.box = (min(x0, x), min(y0, y), max(x0, x), max(y0, y))
        else:
            new.points.append((float(x), float(y), 0 if mode == "negative" else 1))
        return self._apply(vs, index, frame, new)

    def prompt(self, vs: VideoSession, frame: Any, points: Sequence[Sequence[float]] = (),
               labels: Sequence[int] | None = None, box: Sequence[float] | None = None,
               track: int | None = None) -> tuple[int, np.ndarray]:  # fmt: skip
        """Set a track's whole prompt on ``frame`` at once (as the API does): (track index, its
        mask on that frame)."""
        frame = self.frame(vs, frame)
        labels = prompt_labels(points, labels, box)
        index = self.new_track(vs) if track is None else self.track_index(vs, track)
        pts = [(float(x), float(y), int(lab)) for (x, y), lab in zip(points, labels)]
        box = tuple(float(v) for v in box) if box is not None else None
        return index, self._apply(vs, index, frame, FramePrompt(pts, box))

    def _apply(self, vs: VideoSession, index: int, frame: int, prompt: FramePrompt) -> np.ndarray:
        """Run ``prompt`` for track ``index`` on ``frame``; kept only when the tracker takes it
        (a new track whose first prompt fails goes again)."""
        track = vs.tracks[index]
        points = [(x, y) for x, y, _ in prompt.points] or None
        labels = [lab for _, _, lab in prompt.points] or None
        try:
            with _idle(vs):
                mask = vs.tracking.prompt(track.id, frame, points, labels, prompt.box)
        except (ValueError, ServiceError) as exc:  # sam_bridge's checks of a prompt
            if not track.masks and not any(p.points or p.box for p in track.prompts.values()):
                vs.tracks.pop(index)  # a new track: gone, its id free again
                vs.tracking.remove(track.id)
                vs.next_id = track.id if track.id == vs.next_id - 1 else vs.next_id
            raise exc if isinstance(exc, ServiceError) else ServiceError(str(exc)) from exc
        track.prompts[frame] = prompt
        track.masks[frame] = encode_rle(mask) if mask.any() else None
        vs.revision += 1
        return mask

    def clear_prompt(self, vs: VideoSession, frame: Any, track: int) -> None:
        """Forget a track's clicks on ``frame`` not yet sent (a box's first corner)."""
        prompt = vs.tracks[self.track_index(vs, track)].prompts.get(self.frame(vs, frame))
        if prompt is not None:
            prompt.box_corner = None

    # -- tracking --------------------------------------------------------------------------------

    def track(
        self, vs: VideoSession, start: Any = None, direction: str = "both"
    ) -> Iterator[Progress]:
        """Track every object from ``start`` (default: the first frame with a prompt) forward
        and backward, reporting after each frame; :meth:`stop` (or the caller no longer
        reading) ends it at the next frame, keeping what was tracked."""
        self.clip(vs)
        if not any(t.prompts for t in vs.tracks):
            raise ServiceError("Click on an object first: tracking follows the clicked objects.")
        start = None if start is None else self.frame(vs, start)
        self.videos.check(vs)
        if not vs.busy.acquire(blocking=False):
            raise ServiceError("This video is being tracked already: wait, or stop it first.")
        try:
            vs.stop.clear()
            yield from self._run(vs, start, direction)
        finally:
            vs.busy.release()

    def _run(self, vs: VideoSession, start: int | None, direction: str) -> Iterator[Progress]:
        run = vs.tracking.propagate(start, direction, vs.stop)
        order = vs.tracking.order(start if start is not None else _first_prompt(vs), direction)
        by_id = {t.id: t for t in vs.tracks}
        done, last = 0, order[0][0]
        try:
            for frame_masks in run:
                for tid, mask in frame_masks.masks.items():
                    if tid in by_id:
                        by_id[tid].masks[frame_masks.frame] = (
                            encode_rle(mask) if mask.any() else None
                        )
                done, last = done + 1, frame_masks.frame
                vs.progress, vs.revision = (done, len(order)), vs.revision + 1
                yield Progress(done, len(order), last)
        except ValueError as exc:
            raise ServiceError(str(exc)) from exc
        finally:
            run.close()
        yield Progress(done, len(order), last, True, done < len(order))

    def stop(self, vs: VideoSession) -> None:
        """End a tracking run at its next frame (the Stop button, a client leaving)."""
        vs.stop.set()

    def timeline(self, vs: VideoSession) -> list[dict[str, Any]]:
        """Per track: its name, colour and where it is seen ((first, last) frame runs)."""
        self.clip(vs)
        return [{"track": i, "name": t.label, "color": list(t.color), "runs": t.runs(),
                 "prompted": sorted(t.prompts)} for i, t in enumerate(vs.tracks)]  # fmt: skip


def _idle(vs: VideoSession) -> _Held:
    """Hold the video while no tracking run goes (prompts change the tracker's state)."""
    if vs.tracking is None:
        raise ServiceError("Open a video first.")
    if not vs.busy.acquire(blocking=False):
        raise ServiceError("This video is being tracked: wait for it, or stop it first.")
    return _Held(vs.busy)


class _Held:
    def __init__(self, lock: Any):
        self.lock = lock

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        self.lock.release()


def _first_prompt(vs: VideoSession) -> int:
    return min(f for t in vs.tracks for f in t.prompts)
