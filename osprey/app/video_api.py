"""The video part of the HTTP API: typed endpoint functions over
:class:`~osprey.app.video_service.VideoChat` and :class:`~osprey.app.video_answers.VideoAnswers`,
registered with ``gr.api`` by ``osprey/app/demo.py``. Each client (a ``gradio_client.Client``,
a browser tab) has its own video: open a clip, click or prompt on a frame (a new track or an
existing one), track (progress streamed, stoppable; a client that goes away stops it), ask about
a frame, describe over time, export, close. Every argument is checked with a message naming it;
README "HTTP API" lists the endpoints with a runnable example.
"""

# No ``from __future__ import annotations``: gr.api reads the annotations as real types.
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import gradio as gr
from gradio import FileData

from osprey.app import video_export
from osprey.app.fair_share import whole_clip
from osprey.app.http_api import _texts, number, parse_prompt, text, whole
from osprey.app.service import ServiceError
from osprey.app.uploads import open_upload
from osprey.app.video_answers import VideoAnswers
from osprey.app.video_service import VideoChat
from osprey.app.video_session import VideoSession
from osprey.core.masks import encode_rle
from osprey.inference.vocabularies import MAX_TOP_K

VIDEO_SESSION_TTL = 900.0  # seconds an idle client's video is kept
MAX_VIDEO_SESSIONS = 16  # videos kept at once (each holds its frames and tracking state)
MAX_VIDEO_BYTES = 512 * 2**20  # a clip file (read from disk as it decodes, never whole)
MAX_FRAME = 10**6
DIRECTIONS = ("both", "forward", "backward")
FILE_FORMATS = ("zip", "mp4")
# Gradio lanes (osprey/app/handlers.py's, and "track": tracking runs, two at a time, which the
# tracker interleaves frame by frame, apart from new images and clicks)
VIDEO_LANES = {"video_open": "encode", "video_click": "encode", "video_prompt": "encode",
               "video_track": "track", "video_ask": "answer", "video_describe": "answer",
               "video_classify": "answer", "video_describe_over_time": "answer",
               "video_export_file": "encode"}  # fmt: skip
TRACK_LANE = {"concurrency_id": "track", "concurrency_limit": 2}


class VideoSessions:
    """Videos by client id, least recently used first; idle ones (``ttl`` seconds) and the
    oldest beyond ``capacity`` are closed (their frames and tracking state freed)."""

    def __init__(self, close: Callable[[VideoSession], None], ttl: float = VIDEO_SESSION_TTL,
                 capacity: int = MAX_VIDEO_SESSIONS):  # fmt: skip
        self.close, self.ttl, self.capacity = close, ttl, capacity
        self._items: OrderedDict[str, tuple[float, VideoSession]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, client: str) -> VideoSession:
        now, gone = time.monotonic(), []
        with self._lock:
            for key in [k for k, (t, _) in self._items.items() if now - t > self.ttl]:
                gone.append(self._items.pop(key)[1])
            _, vs = self._items.pop(client, (now, None))
            vs = vs or VideoSession()
            self._items[client] = (now, vs)
            while len(self._items) > self.capacity:
                gone.append(self._items.popitem(last=False)[1][1])
        for old in gone:
            self.close(old)
        return vs

    def pop(self, client: str) -> VideoSession | None:
        with self._lock:
            entry = self._items.pop(client, None)
        return entry[1] if entry else None

    def __len__(self) -> int:
        return len(self._items)


def _track(value, vs: VideoSession):
    """A track index, or None for a new track (a negative number)."""
    n = whole(value, "track", -1, max(len(vs.tracks) - 1, 0))
    return None if n < 0 else n


class VideoEndpoints:
    """The typed video endpoint functions (methods: ``gr.api`` reads their signatures)."""

    NAMES = (
        "video_open", "video_click", "video_prompt", "video_track", "video_stop", "video_ask",
        "video_describe", "video_classify", "video_describe_over_time", "video_timeline",
        "video_export", "video_export_file", "video_close",
    )  # fmt: skip

    def __init__(self, video: VideoChat, answers: VideoAnswers, model: str = ""):
        self.video, self.answers, self.model = video, answers, model
        self.sessions = VideoSessions(video.close)
        self._out = Path(tempfile.mkdtemp(prefix="osprey-video-"))

    def _vs(self, request: gr.Request) -> VideoSession:
        return self.sessions.get(request.session_hash)

    def video_open(self, video: FileData, request: gr.Request) -> dict:
        """Open a clip (MP4, MOV, WebM, MKV, AVI, GIF) in this client's session: its frames as
        sampled (count, size, times) and what the file said. Tracks start over."""
        vs = self._vs(request)
        with open_upload(video, "video", MAX_VIDEO_BYTES) as source:
            clip = self.video.open_video(vs, source)
        info = clip.info
        return {"frames": len(clip), "width": clip.width, "height": clip.height,
                "fps": clip.fps, "times": clip.times, "note": clip.note,
                "source": {"format": info.format, "codec": info.codec, "width": info.width,
                           "height": info.height, "duration": info.duration}}  # fmt: skip

    def video_click(self, frame: float, x: float, y: float, mode: str = "positive",
                    track: float = -1, request: gr.Request = None) -> dict:  # fmt: skip
        """A click on ``frame`` (mode positive, negative or box; two box clicks make a box) for
        ``track`` (its index; -1: a new track): the track and its mask there as RLE (None
        while a box waits for its second corner)."""
        vs = self._vs(request)
        frame = whole(frame, "frame", -MAX_FRAME, MAX_FRAME)
        x, y, mode = number(x, "x"), number(y, "y"), text(mode, "mode", 20) or "positive"
        index = _track(track, vs)
        mask = self.video.click(vs, frame, x, y, mode, index)
        index = len(vs.tracks) - 1 if index is None else index
        return {"track": index, "name": vs.tracks[index].label,
                "rle": None if mask is None else encode_rle(mask)}  # fmt: skip

    def video_prompt(self, frame: float, points: str = "[]", labels: str = "[]", box: str = "",
                     track: float = -1, request: gr.Request = None) -> dict:  # fmt: skip
        """A whole prompt on ``frame`` (``points`` JSON [[x, y], ...], ``labels`` [1, 0, ...],
        ``box`` [x0, y0, x1, y1]) for ``track`` (-1: a new one): the track and its mask."""
        vs = self._vs(request)
        frame = whole(frame, "frame", -MAX_FRAME, MAX_FRAME)
        pts, labs, bx = parse_prompt(points, labels, box)
        index, mask = self.video.prompt(vs, frame, pts, labs, bx, _track(track, vs))
        return {"track": index, "name": vs.tracks[index].label, "rle": encode_rle(mask)}

    @whole_clip  # one run per visitor (osprey/app/fair_share.py)
    def video_track(self, start: float = -1, direction: str = "both",
                    request: gr.Request = None) -> dict:  # fmt: skip
        """Track every object from ``start`` (-1: the first frame with a prompt) ``both`` ways,
        ``forward`` or ``backward``: progress after each frame ({done, total, frame,
        finished, stopped}), streamed; stopped by /video_stop or when the client goes away."""
        vs = self._vs(request)
        begin = whole(start, "start", -1, MAX_FRAME)
        direction = text(direction, "direction", 20) or "both"
        if direction not in DIRECTIONS:
            raise ServiceError(f"direction must be one of {DIRECTIONS}, got {direction[:20]!r}")
        for p in self.video.track(vs, None if begin < 0 else begin, direction):
            yield {"done": p.done, "total": p.total, "frame": p.frame,
                   "finished": p.finished, "stopped": p.stopped}  # fmt: skip

    def video_stop(self, request: gr.Request) -> bool:
        """Stop this client's tracking run at its next frame (what was tracked stays)."""
        self.video.stop(self._vs(request))
        return True

    def video_ask(self, frame: float, question: str, request: gr.Request) -> str:
        """A question about the tracks seen on ``frame`` (by name: track1, or the names given)
        or the whole frame; streamed."""
        vs = self._vs(request)
        frame = whole(frame, "frame", -MAX_FRAME, MAX_FRAME)
        question = text(question, "question", 10**5)
        yield from _texts(self.answers.ask(vs, frame, question))

    def video_describe(self, frame: float, task: str = "short",
                       request: gr.Request = None) -> list[dict]:  # fmt: skip
        """``category``, ``short`` or ``detailed`` for each track seen on ``frame``."""
        vs = self._vs(request)
        frame = whole(frame, "frame", -MAX_FRAME, MAX_FRAME)
        got = self.answers.describe(vs, frame, text(task, "task", 20) or "short")
        return [{"track": name, "answer": answer} for name, answer in got]

    def video_classify(self, frame: float, vocabulary: str = "coco", top_k: float = 5,
                       request: gr.Request = None) -> list[dict]:  # fmt: skip
        """Top-k classes of ``vocabulary`` (a built-in name or comma-separated names) with
        probabilities for each track seen on ``frame``."""
        vs = self._vs(request)
        frame = whole(frame, "frame", -MAX_FRAME, MAX_FRAME)
        k = whole(top_k, "top_k", 1, MAX_TOP_K)
        got = self.answers.classify(vs, frame, text(vocabulary, "vocabulary", 10**5) or "coco", k)
        return [{"track": n.split(" (", 1)[-1].rstrip(")"),
                 "top": [{"name": c, "prob": p} for c, p in top]} for n, top in got]  # fmt: skip

    @whole_clip
    def video_describe_over_time(self, every: float = 5, request: gr.Request = None) -> list[dict]:
        """Category and short caption of each track every ``every`` frames it is seen (and
        where its mask changes most), merged into spans."""
        vs = self._vs(request)
        return self.answers.describe_over_time(vs, whole(every, "every", 1, MAX_FRAME))

    def video_timeline(self, request: gr.Request) -> list[dict]:
        """Per track: name, colour, the frame runs where it is seen, its prompted frames."""
        return self.video.timeline(self._vs(request))

    def video_export(self, request: gr.Request) -> dict:
        """The tracks as YouTube-VIS-style JSON (COCO RLE or null per frame, with captions)."""
        vs = self._vs(request)
        self.video.clip(vs)
        return video_export.to_json(vs, self.model, self.video.untrained)

    def video_export_file(self, format: str = "zip", request: gr.Request = None) -> FileData:
        """``zip``: per-frame PNG masks (track ids) and tracks.json; ``mp4``: the clip with the
        tracks drawn and labelled."""
        vs = self._vs(request)
        self.video.clip(vs)
        kind = text(format, "format", 10) or "zip"
        if kind not in FILE_FORMATS:
            raise ServiceError(f"format must be one of {FILE_FORMATS}, got {kind!r}")
        path = Path(tempfile.mkstemp(suffix=f".{kind}", dir=self._out)[1])
        if kind == "mp4":
            video_export.to_mp4(vs, path)
        else:
            data = video_export.to_json(vs, self.model, self.video.untrained)
            path.write_bytes(video_export.to_zip(vs, data))
        return FileData(path=str(path))

    def video_close(self, request: gr.Request) -> bool:
        """Forget this client's video now (otherwise it goes after 15 idle minutes)."""
        vs = self.sessions.pop(request.session_hash)
        if vs is not None:
            self.video.close(vs)
        return vs is not None
