"""Video intake: a clip file -> a few frames a second, downscaled, each kept as JPEG bytes.

Every clip that enters the project goes through :func:`open_clip`. It reads the container's
header first (:func:`probe_video`) and refuses what the limits (:class:`VideoLimits`) do not
allow (too long, too large, too many frames, not a video) before a frame is decoded; then it
decodes the stream once, keeps at most ``fps`` frames a second (by each frame's own time stamp,
so variable frame rates sample evenly), applies the rotation a phone wrote into the container,
downscales each kept frame to at most ``max_side`` pixels on its long side (SAM 2 reads 1024,
Osprey 512) and keeps it as a JPEG (about 100-200 KB for a 1024x576 frame, against 1.7 MB raw).

Decoding is PyAV's (FFmpeg's libraries, bundled in its wheels for Linux, macOS and Windows):
one maintained library reads MP4, MOV, WebM, MKV, AVI and GIF from a file or bytes, gives each
frame's time stamp and the display matrix (rotation), and needs nothing installed on the
system. OpenCV (already pinned) cannot read from bytes, guesses times from a nominal frame
rate and applies rotation inconsistently across builds; torchcodec needs FFmpeg installed on
the machine and a torch of its own release line. PyAV is imported only when a clip is opened.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from osprey.core.constants import MIN_IMAGE_SIDE
from osprey.core.errors import OspreyError
from osprey.core.images import ImageHandle, ImageLike, to_rgb

# Container formats a clip may come in (FFmpeg's demuxer names -> what a person calls them).
# Anything else (an image read as a one-frame "video", a playlist, raw streams) is refused.
VIDEO_FORMATS = {
    "mov,mp4,m4a,3gp,3g2,mj2": "MP4/MOV",
    "matroska,webm": "WebM/MKV",
    "avi": "AVI",
    "gif": "GIF",
}
KINDS = "MP4, MOV, WebM, MKV, AVI or GIF"
JPEG_QUALITY = 90


class VideoError(OspreyError, ValueError):
    """A clip cannot be used: not a video, corrupt, no frames, or above a limit. The message is
    one line for the user and names no server path."""


@dataclass(frozen=True)
class VideoLimits:
    """What a clip may be. ``fps``: frames kept per second of video (sampling); ``max_side``:
    pixels on a kept frame's long side; ``max_pixels``: the source's resolution (width x
    height); ``max_frames``: frames kept after sampling."""

    max_seconds: float = 120.0
    max_frames: int = 300
    max_pixels: int = 4096 * 2304
    fps: float = 2.0
    max_side: int = 1024
    jpeg_quality: int = JPEG_QUALITY

    def __post_init__(self) -> None:
        for name in ("max_seconds", "fps"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise VideoError(f"{name} must be a positive number, got {value!r}")
        for name in ("max_frames", "max_pixels", "max_side"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise VideoError(f"{name} must be a positive whole number, got {value!r}")
        if self.max_side < MIN_IMAGE_SIDE:
            raise VideoError(f"max_side must be at least {MIN_IMAGE_SIDE} pixels")


@dataclass(frozen=True)
class VideoInfo:
    """What a container's header says about its first video stream (nothing decoded)."""

    format: str  # what a person calls it: MP4/MOV, WebM/MKV, AVI, GIF
    codec: str
    width: int
    height: int
    duration: float | None  # seconds; None when the header does not say
    fps: float | None  # the stream's average frame rate; None when unknown
    frames: int | None  # frames in the stream; None when the header does not say


@dataclass(eq=False)
class VideoClip:
    """A clip as the project keeps it: ``frames[i]`` JPEG bytes of the i-th kept frame (all of
    one size, ``height`` x ``width``, rotation applied), shown at ``times[i]`` seconds from the
    first frame. ``info``: the source's header; ``note``: what the user should know (a file that
    ends early, frames skipped), "" when nothing."""

    frames: list[bytes]
    times: list[float]
    width: int
    height: int
    info: VideoInfo
    fps: float  # the sampling rate asked for
    rotation: int = 0  # degrees counter-clockwise applied to the source's frames
    note: str = ""
    _handles: dict[int, ImageHandle] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def duration(self) -> float:
        """Seconds from the first kept frame to the last."""
        return self.times[-1] if self.times else 0.0

    @property
    def nbytes(self) -> int:
        """Bytes the clip holds (its compressed frames)."""
        return sum(len(f) for f in self.frames)

    def check_index(self, index: Any, what: str = "frame") -> int:
        """``index`` as a frame number of this clip, or :class:`VideoError` in the user's words."""
        if isinstance(index, bool) or not isinstance(index, (int, float)) or index != int(index):
            raise VideoError(f"{what} must be a whole number, got {str(index)[:20]!r}")
        if not 0 <= int(index) < len(self.frames):
            raise VideoError(
                f"{what} {int(index)} is outside the clip: it has {len(self.frames)} frames "
                f"(0 to {len(self.frames) - 1})"
            )
        return int(index)

    def handle(self, index: int) -> ImageHandle:
        """The frame as an :class:`ImageHandle` (its JPEG bytes held, pixels decoded when read);
        the same handle each time, so caches keyed by it hit."""
        index = self.check_index(index)
        if index not in self._handles:
            handle = ImageHandle.of(self.frames[index])
            handle.release()
            self._handles[index] = handle
        return self._handles[index]

    def pil(self, index: int) -> Image.Image:
        """The frame as a PIL ``RGB`` image (decoded now)."""
        with Image.open(io.BytesIO(self.frames[self.check_index(index)])) as img:
            return img.convert("RGB")

    def rgb(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8 of the frame (decoded now)."""
        return np.asarray(self.pil(index))

    def nearest(self, seconds: float) -> int:
        """The kept frame shown at ``seconds``."""
        return int(
            np.clip(np.searchsorted(self.times, seconds, side="right") - 1, 0, len(self) - 1)
        )


# ---------------------------------------------------------------------------------------------
# reading the header


def _open(source: str | Path | bytes | IO[bytes]):
    """PyAV's container for ``source``; failures become :class:`VideoError` in the user's words."""
    import av

    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        return av.open(stream if not isinstance(stream, Path) else str(stream), mode="r")
    except FileNotFoundError:
        raise VideoError("the video file does not exist") from None
    except (av.error.FFmpegError, OSError, ValueError, EOFError):
        raise VideoError(
            f"cannot read the file as a video: it is corrupt, truncated or not a video ({KINDS})"
        ) from None


def _info(container) -> VideoInfo:
    name = container.format.name
    if name.endswith("_pipe") or name in ("image2", "webp", "apng"):
        raise VideoError("this file is an image, not a video: open it as an image instead")
    if name not in VIDEO_FORMATS:
        raise VideoError(f"{name.split(',')[0]} files are not read here; send {KINDS}")
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        held = f" (it holds {', '.join(kinds)} only)" if kinds else ""
        raise VideoError(f"the file has no video stream{held}")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else None
    return VideoInfo(
        VIDEO_FORMATS[name], ctx.name, int(ctx.width), int(ctx.height), duration,
        fps if fps and math.isfinite(fps) else None, int(stream.frames) or None,
    )  # fmt: skip


def probe_video(source: str | Path | bytes | IO[bytes]) -> VideoInfo:
    """The header of a clip (a path, bytes or a binary file object): nothing is decoded.
    :class:`VideoError` when it is not a video this module reads."""
    with _open(source) as container:
        return _info(container)


def check_video(info: VideoInfo, limits: VideoLimits) -> None:
    """Refuse, from the header alone, a clip above ``limits``."""
    if info.width < MIN_IMAGE_SIDE or info.height < MIN_IMAGE_SIDE:
        raise VideoError(f"the video is {info.width}x{info.height}: too small")
    if info.width * info.height > limits.max_pixels:
        raise VideoError(
            f"the video is {info.width}x{info.height}, above the limit of "
            f"{limits.max_pixels / 1e6:.1f} MP a frame; downscale it first"
        )
    if info.duration is not None and info.duration > limits.max_seconds + 1e-6:
        raise VideoError(
            f"the video is {_seconds(info.duration)} long, above the limit of "
            f"{_seconds(limits.max_seconds)}; trim it first"
        )
    expected = _sampled(info.duration, limits.fps) if info.duration is not None else 0
    if expected > limits.max_frames:
        raise VideoError(_too_many(expected, limits))


def _sampled(duration: float, fps: float) -> int:
    """Frames kept from ``duration`` seconds at ``fps`` (the first at 0)."""
    return int(math.floor(duration * fps + 1e-6)) + 1


def _too_many(count: int, limits: VideoLimits) -> str:
    return (
        f"the video gives {count} frames at {limits.fps:g} a second, above the limit of "
        f"{limits.max_frames}; lower the frame rate or trim it"
    )


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


# ---------------------------------------------------------------------------------------------
# decoding


def _target(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(w, h) of a frame downscaled to ``max_side`` on its long side (never upscaled)."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _frames(container, stream, state: _Sampler) -> Iterator[Any]:
    """Decoded frames of ``stream``. A packet that does not decode is skipped; a file that
    breaks off ends the stream after the frames the decoder still holds (``state.broken``)."""
    import av

    errors = (av.error.FFmpegError, OSError, EOFError, ValueError)
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except errors:
            state.broken = True
            break
        try:
            yield from packet.decode()
        except errors:
            state.broken = True
    try:
        yield from stream.codec_context.decode(None)  # what the decoder still holds
    except errors:
        return


def _jpeg(frame, rotation: int, size: tuple[int, int], quality: int) -> bytes:
    """A decoded frame -> downscaled (swscale's area filter), rotated, JPEG bytes."""
    rgb = frame.reformat(width=size[0], height=size[1], format="rgb24", interpolation="AREA")
    arr = rgb.to_ndarray()
    if rotation:
        arr = np.ascontiguousarray(np.rot90(arr, k=rotation // 90))
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def open_clip(
    source: str | Path | bytes | IO[bytes], limits: VideoLimits | None = None
) -> VideoClip:
    """Read a clip (a path, bytes or a binary file object) as a :class:`VideoClip` within
    ``limits``: the header is checked first (:func:`check_video`), then the first video stream
    is decoded once, sampled at ``limits.fps`` by time stamp. A file that breaks off after some
    frames keeps those (said in the clip's ``note``); one with no decodable frame is refused."""
    limits = limits or VideoLimits()
    with _open(source) as container:
        info = _info(container)
        check_video(info, limits)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames, times, state = [], [], _Sampler(limits, info)
        for frame in _frames(container, stream, state):
            if state.keep(frame):
                frames.append(_jpeg(frame, state.rotation, state.size, limits.jpeg_quality))
                times.append(state.last)
    if not frames:
        raise VideoError("no frame of the video could be decoded: the file is corrupt or truncated")
    w, h = state.size if state.rotation % 180 == 0 else state.size[::-1]
    return VideoClip(frames, times, w, h, info, limits.fps, state.rotation % 360, state.note())


class _Sampler:
    """Which decoded frames to keep: the first one, then the first at or after each 1/fps step
    from it (by the frame's own time, so variable frame rates sample evenly); checks the limits
    the header could not (a duration it did not give, or gave wrong)."""

    def __init__(self, limits: VideoLimits, info: VideoInfo):
        self.limits, self.info = limits, info
        self.step = 1.0 / limits.fps
        self.start: float | None = None
        self.next = 0.0
        self.last = 0.0  # time of the last frame kept
        self.latest = 0.0  # time of the last frame decoded
        self.count = 0  # frames decoded
        self.kept = 0
        self.rotation = 0
        self.size = (0, 0)
        self.broken = False

    def keep(self, frame) -> bool:
        self.count += 1
        t = frame.time
        if t is None:  # no time stamp: count at the header's rate (or 25 a second)
            t = (self.count - 1) / (self.info.fps or 25.0)
        if self.start is None:
            self._first(frame, t)
        elif frame.width * frame.height > self.limits.max_pixels:
            raise VideoError(f"a frame of the video is {frame.width}x{frame.height}, too large")
        rel = t - self.start
        self.latest = max(self.latest, rel)
        if rel > self.limits.max_seconds + 1e-6:
            raise VideoError(
                f"the video runs past the limit of {_seconds(self.limits.max_seconds)}; trim it"
            )
        if rel + 1e-6 < self.next:
            return False
        while self.next <= rel + 1e-6:
            self.next += self.step
        self.last = round(max(rel, 0.0), 6)
        self.kept += 1
        if self.kept > self.limits.max_frames:
            raise VideoError(_too_many(self.kept, self.limits))
        return True

    def _first(self, frame, t: float) -> None:
        self.start = t
        self.rotation = int(round((getattr(frame, "rotation", 0) or 0) / 90.0)) * 90 % 360
        self.size = _target(frame.width, frame.height, self.limits.max_side)

    def note(self) -> str:
        said, rate = self.info.duration, self.info.fps or 25.0
        if said is not None and self.latest + 2 / rate + 0.5 < said:
            return (
                f"The file ends at {_seconds(self.latest)} though its header says "
                f"{_seconds(said)}: it is truncated; the frames before are kept."
            )
        if not self.broken:
            return ""
        return (
            f"Part of the file could not be decoded (truncated or corrupt) after "
            f"{_seconds(self.last)}; the frames that decoded are kept."
        )


# ---------------------------------------------------------------------------------------------
# clips from images (frame folders, tests)


def clip_from_images(
    images: Sequence[ImageLike], fps: float = 1.0, max_side: int = 1024,
    quality: int = JPEG_QUALITY,
) -> VideoClip:  # fmt: skip
    """A clip of ``images`` (photos or frames of one size, in order), one every 1/``fps``
    seconds, each downscaled to ``max_side`` and kept as JPEG bytes like a decoded clip's."""
    if not images:
        raise VideoError("a clip needs at least one frame")
    frames, size = [], None
    for i, image in enumerate(images):
        rgb = to_rgb(image)
        if size is None:
            size = _target(rgb.shape[1], rgb.shape[0], max_side)
            shape = rgb.shape
        elif rgb.shape != shape:
            raise VideoError(f"frame {i} is {rgb.shape[1]}x{rgb.shape[0]}, frame 0 is "
                             f"{shape[1]}x{shape[0]}: the frames of a clip share one size")  # fmt: skip
        pil = Image.fromarray(rgb)
        if pil.size != size:
            pil = pil.resize(size, Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=quality)
        frames.append(buf.getvalue())
    times = [round(i / fps, 6) for i in range(len(frames))]
    info = VideoInfo("frames", "jpeg", shape[1], shape[0], times[-1], float(fps), len(frames))
    return VideoClip(frames, times, size[0], size[1], info, float(fps))
