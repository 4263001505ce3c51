"""Short clips made of real pictures, for the video tests: a camera panning across a real photo
(``examples/``), and the five consecutive frames of a real street video that labelme's source
package ships (``examples/video_annotation/data_annotated/0000010{0..4}.jpg``, 1000x563: a
truck drives past; GPL-3.0 like the rest of labelme, so they are not committed here: ``.ci/run``
fetches them from PyPI with ``python -m tests.support.clips fetch``, and the tests fetch them
on first use; tests that need them skip and say so when they cannot be fetched).

Clips are written with PyAV (MP4/H.264, WebM/VP9, AVI/MPEG-4, MOV, GIF), optionally with a
rotation in the container (a phone's portrait video) or with uneven time stamps (variable frame
rate).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
LABELME = "labelme==6.3.1"
LABELME_DIR = Path(os.environ.get("OSPREY_TEST_FRAMES", REPO / ".cache" / "labelme-frames"))
FRAME_NAMES = [f"0000010{i}.jpg" for i in range(5)]


def photo(name: str = "coffee.jpg") -> np.ndarray:
    """(H, W, 3) uint8 of an example photo."""
    return np.asarray(Image.open(EXAMPLES / name).convert("RGB"))


def pan(rgb: np.ndarray, count: int, size: tuple[int, int], step: int = 6) -> list[np.ndarray]:
    """``count`` crops of ``size`` (w, h) sliding right and down across ``rgb`` by ``step``
    pixels a frame: a camera panning over a real scene."""
    w, h = size
    out = []
    for i in range(count):
        x = min(i * step, rgb.shape[1] - w)
        y = min(i * step // 2, rgb.shape[0] - h)
        out.append(np.ascontiguousarray(rgb[y : y + h, x : x + w]))
    return out


_FETCH_FAILED: list[str] = []


def labelme_frames() -> list[np.ndarray] | None:
    """The five real street-video frames (1000x563), fetched from PyPI on first use when absent
    (so the README's test command needs no extra step); None when they cannot be fetched."""
    paths = [LABELME_DIR / n for n in FRAME_NAMES]
    if not all(p.is_file() for p in paths) and not _FETCH_FAILED:
        try:
            fetch()
        except (subprocess.CalledProcessError, SystemExit, OSError, ValueError) as exc:
            _FETCH_FAILED.append(str(exc))
    if not all(p.is_file() for p in paths):
        return None
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def encode(
    frames: Sequence[np.ndarray], fmt: str = "mp4", codec: str = "libx264", fps: int = 10,
    rotation: int = 0, times: Sequence[float] | None = None,
) -> bytes:  # fmt: skip
    """``frames`` ((H, W, 3) uint8, even sizes for yuv420p) as a clip file's bytes. ``rotation``:
    degrees counter-clockwise written in the container's display matrix; ``times``: each
    frame's time stamp in seconds (a variable frame rate), default i / fps."""
    import av

    buf = io.BytesIO()
    h, w = frames[0].shape[:2]
    with av.open(buf, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = "rgb8" if codec == "gif" else "yuv420p"
        if times is not None:
            stream.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(times[i] * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def fetch(target: Path = LABELME_DIR) -> Path:
    """Download labelme's source package from PyPI (pip) and keep its five video frames."""
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
             LABELME, "-d", tmp], check=True,
        )  # fmt: skip
        (archive,) = Path(tmp).glob("labelme-*.tar.gz")
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = Path(member.name)
                if name.parent.name == "data_annotated" and name.name in FRAME_NAMES:
                    with tar.extractfile(member) as src, open(target / name.name, "wb") as dst:
                        shutil.copyfileobj(src, dst)
    missing = [n for n in FRAME_NAMES if not (target / n).is_file()]
    if missing:
        raise SystemExit(f"labelme's package no longer holds {missing}")
    return target


if __name__ == "__main__":
    if sys.argv[1:2] != ["fetch"]:
        raise SystemExit("usage: python -m tests.support.clips fetch [DIR]")
    print(fetch(Path(sys.argv[2]) if len(sys.argv) > 2 else LABELME_DIR))
