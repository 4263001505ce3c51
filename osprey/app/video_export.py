"""A video's tracks as files: YouTube-VIS-style JSON (one annotation per track, one COCO RLE or
null per frame, with its name, category and keyframe captions), a zip of per-frame PNG masks
(DAVIS's layout: one palette PNG per frame whose pixel values are track ids), and an MP4 of the
clip with the tracks drawn and labelled (H.264 through PyAV).

Coordinates and sizes are the clip's frames as opened (downscaled to the app's ``max_side``);
``videos[0]`` says both that size and the source's.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from osprey.app import drawing
from osprey.app.video_session import Track, VideoSession
from osprey.core.masks import decode_rle, rle_area


def to_json(vs: VideoSession, model: str, untrained: bool) -> dict[str, Any]:
    """YouTube-VIS-style JSON of the tracks (``videos``, ``categories``, ``annotations``)."""
    clip = vs.clip
    n = len(clip)
    names = sorted({_category(t) for t in vs.tracks if _category(t)})
    category_ids = {name: i + 1 for i, name in enumerate(names)}
    annotations = [_annotation(t, i, n, category_ids) for i, t in enumerate(vs.tracks)]
    info = clip.info
    video = {
        "id": 1, "width": clip.width, "height": clip.height, "length": n,
        "file_names": [f"{i:05d}.jpg" for i in range(n)], "times": clip.times,
        "fps": clip.fps, "source": {"format": info.format, "codec": info.codec,
                                    "width": info.width, "height": info.height,
                                    "duration": info.duration, "fps": info.fps},
    }  # fmt: skip
    return {
        "info": {"description": "osprey-open video tracks", "model": model,
                 "untrained": untrained, "note": clip.note},
        "videos": [video],
        "categories": [{"id": i, "name": name} for name, i in category_ids.items()],
        "annotations": annotations,
    }  # fmt: skip


def _category(track: Track) -> str:
    """A track's category: the answer most of its keyframes gave ("" before any)."""
    counts = Counter(c["category"] for c in track.captions if c["category"])
    return counts.most_common(1)[0][0] if counts else ""


def _annotation(track: Track, index: int, n: int, category_ids: dict[str, int]) -> dict[str, Any]:
    segmentations, areas, boxes = [], [], []
    for f in range(n):
        rle = track.mask(f)
        segmentations.append(rle)
        areas.append(rle_area(rle) if rle is not None else None)
        box = track.box(f)
        boxes.append([box[0], box[1], box[2] - box[0], box[3] - box[1]] if box else None)
    category = _category(track)
    return {
        "id": index + 1, "video_id": 1, "track_id": track.id, "name": track.label,
        "category_id": category_ids.get(category, 0), "category": category, "iscrowd": 0,
        "segmentations": segmentations, "areas": areas, "bboxes": boxes,
        "color": list(track.color), "prompted_frames": sorted(track.prompts),
        "captions": track.captions, "spans": [s.__dict__ for s in track.spans],
    }  # fmt: skip


def palette() -> list[int]:
    """The PNGs' palette: 0 black (background), track id k the app's colour of track k."""
    colours = [(0, 0, 0)] + [drawing.color(k - 1) for k in range(1, 256)]
    return [c for rgb in colours for c in rgb]


def frame_ids(vs: VideoSession, frame: int) -> np.ndarray:
    """uint8 (H, W): each pixel the id of the track seen there (0: none; later tracks on top)."""
    clip = vs.clip
    out = np.zeros((clip.height, clip.width), np.uint8)
    for track in vs.tracks:
        rle = track.mask(frame)
        if rle is not None:
            out[decode_rle(rle)] = min(track.id, 255)
    return out


def to_zip(vs: VideoSession, data: dict[str, Any]) -> bytes:
    """``masks/00000.png`` ... (palette PNGs of track ids, DAVIS's layout) and ``tracks.json``
    (``data``, the JSON export)."""
    buf = io.BytesIO()
    colours = palette()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in range(len(vs.clip)):
            img = Image.fromarray(frame_ids(vs, f), mode="P")
            img.putpalette(colours)
            png = io.BytesIO()
            img.save(png, format="PNG")
            zf.writestr(f"masks/{f:05d}.png", png.getvalue())
        zf.writestr("tracks.json", json.dumps(data))
    return buf.getvalue()


def draw_frame(vs: VideoSession, frame: int) -> np.ndarray:
    """(H, W, 3) uint8: the frame with the tracks seen on it filled, outlined and labelled."""
    rgb = vs.clip.rgb(frame)
    seen = [t for t in vs.tracks if t.mask(frame) is not None]
    if not seen:
        return rgb
    names = [_label(t, frame) for t in seen]
    masks = [decode_rle(t.mask(frame)) for t in seen]
    return drawing.draw_regions(rgb, masks, [t.color for t in seen], names)


def _label(track: Track, frame: int) -> str:
    """A track's name, and its category at ``frame`` when "describe over time" gave one."""
    said = [s for s in track.spans if s.start <= frame <= s.end]
    return f"{track.label}: {said[0].category}" if said and said[0].category else track.label


def to_mp4(vs: VideoSession, path: str | Path) -> Path:
    """The clip with its tracks drawn, as H.264 MP4 (each frame at its own time)."""
    import av

    path = Path(path)
    clip = vs.clip
    w, h = clip.width - clip.width % 2, clip.height - clip.height % 2  # 4:2:0 wants even sizes
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=max(1, round(clip.fps)))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        for f in range(len(clip)):
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(draw_frame(vs, f)[:h, :w]), format="rgb24"
            )
            frame.pts, frame.time_base = round(clip.times[f] * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
