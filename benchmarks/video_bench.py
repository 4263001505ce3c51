"""Video on this machine: frames tracked per second (SAM 2.1's video model, 1 and 3 objects),
"describe over time" seconds per keyframe (Osprey), and the app's memory before and after a
60-second 1080p clip is opened, tracked with 3 objects and closed. Prints numbers; asserts
nothing.

Weights are random (timings do not depend on their values): the SAM 2.1 sizes at full size
(``--sam sam2.1-tiny`` ...), the tiny tracker with ``--sam tiny``; Osprey is the tiny model
unless ``--osprey`` names another. The clips are made of real pictures: a camera panning over
examples/coffee.jpg, upscaled to 1920x1080 for the memory run (H.264, 30 frames a second).

    python benchmarks/video_bench.py                         # all three parts, CPU
    python benchmarks/video_bench.py --parts track --sam sam2.1-tiny tiny --frames 6
    python benchmarks/video_bench.py --parts memory --seconds 60 --fps 2
    python benchmarks/video_bench.py --device cuda --sam sam2.1-large --parts track
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from osprey.core.memory import give_back_freed_memory, limit_malloc_arenas  # noqa: E402
from osprey.core.video import VideoLimits, clip_from_images  # noqa: E402
from tests.support.clips import pan, photo  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tracker(name: str, device: str):
    from sam_bridge.tracker import VideoTracker

    if name == "tiny":
        return VideoTracker.tiny(device=device)
    from sam_bridge.loading import random_model
    from sam_bridge.sam2_video import build_video_model

    return VideoTracker(build_video_model(random_model(name).to(device)))


def bench_track(names: list[str], frames: int, device: str) -> None:
    """Frames a second while propagating (after the prompt frame), 1 and 3 objects."""
    clip = clip_from_images(pan(photo("coffee.jpg"), frames, (576, 384), step=2), fps=5)
    for name in names:
        t = tracker(name, device)
        for objects in (1, 3):
            tracking = t.open(clip)
            for k in range(objects):
                tracking.prompt(k + 1, 0, points=[(150 + 120 * k, 190)])
            start = time.perf_counter()
            done = sum(1 for _ in tracking.propagate(0, "forward"))
            seconds = time.perf_counter() - start
            print(f"track  {name:14s} {objects} object(s): {done} frames in {seconds:6.1f} s = "
                  f"{done / seconds:5.2f} frames/s ({seconds / done / objects:5.2f} s per frame "
                  f"and object), state {tracking.state_bytes() / 2**20:.1f} MiB", flush=True)  # fmt: skip
            tracking.close()
        del t
        gc.collect()


def bench_describe(osprey_name: str, every: int, device: str) -> None:
    """Seconds per keyframe of describe over time (category + short caption, decoded together)."""
    from osprey.app.service import RegionChat
    from osprey.app.video_answers import VideoAnswers
    from osprey.app.video_service import VideoChat
    from osprey.app.video_session import VideoSession
    from osprey.inference.facade import Osprey

    osp = (
        Osprey.tiny()
        if osprey_name == "tiny"
        else Osprey.from_pretrained(osprey_name, device=device)
    )
    osp.generator.enable_batching(max_active=32, max_waiting=64)  # as the app runs it
    video = VideoChat(tracker("tiny", "cpu"), VideoLimits(fps=5))
    vs = VideoSession()
    video.start(vs, clip_from_images(pan(photo("coffee.jpg"), 12, (480, 320), step=6), fps=5))
    for x in (120, 300):
        video.prompt(vs, 0, [(x, 160)])
    for _ in video.track(vs, 0, "forward"):
        pass
    answers = VideoAnswers(RegionChat(osp, None), video)
    start = time.perf_counter()
    out = answers.describe_over_time(vs, every)
    seconds = time.perf_counter() - start
    keyframes = sum(len(o["captions"]) for o in out)
    print(f"describe over time ({osp.name}, every {every}): {keyframes} keyframes in "
          f"{seconds:.1f} s = {seconds / keyframes:.2f} s per keyframe", flush=True)  # fmt: skip


def _drifting_1080p(seconds: int, rate: int = 30) -> bytes:
    """A camera drifting across the coffee photo (upscaled to 1920x1080), H.264, made frame by
    frame (never all frames at once)."""
    import io

    import av

    base = np.asarray(Image.fromarray(photo("coffee.jpg")).resize((2400, 1350)))
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate, options={"preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        for i in range(seconds * rate):
            x, y = i * 480 // (seconds * rate), i * 270 // (seconds * rate)
            rgb = np.ascontiguousarray(base[y : y + 1080, x : x + 1920])
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def bench_memory(seconds: int, fps: float, sam: str, device: str, cycles: int = 2) -> None:
    """RSS before opening, after tracking 3 objects, and after closing a 1080p clip, after a
    warm-up on a short clip, ``cycles`` times (what a clip leaves behind shows from the second)."""
    from osprey.app.video_service import VideoChat
    from osprey.app.video_session import VideoSession

    made = time.perf_counter()
    data = _drifting_1080p(seconds)
    path = Path(tempfile.mkdtemp()) / "clip.mp4"
    path.write_bytes(data)
    print(f"memory: a {seconds} s 1920x1080 H.264 clip, {len(data) / 2**20:.1f} MiB (made in "
          f"{time.perf_counter() - made:.0f} s)", flush=True)  # fmt: skip
    del data
    video = VideoChat(tracker(sam, device), VideoLimits(fps=fps, max_seconds=seconds + 1,
                                                        max_frames=int(seconds * fps) + 2))  # fmt: skip
    # warm up: the first tracked frame allocates what a process keeps for good (the model's
    # lazily built tables, oneDNN's kernels, thread pools), whatever the clip
    warm = VideoSession()
    video.start(warm, clip_from_images(pan(photo("coffee.jpg"), 3, (320, 240)), fps=2))
    for k in range(3):
        video.prompt(warm, 0, [(60 + 100 * k, 120)])
    for _ in video.track(warm):
        pass
    video.close(warm)
    for cycle in range(cycles):
        _cycle(video, path, cycle + 1)


def _cycle(video, path: Path, cycle: int) -> None:
    from osprey.app.video_session import VideoSession

    vs = VideoSession()
    gc.collect()
    give_back_freed_memory()
    before = rss_mb()
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        clip = video.open_video(vs, f)
    opened = rss_mb()
    print(f"  cycle {cycle}: opened {len(clip)} frames of {clip.width}x{clip.height} "
          f"({clip.nbytes / 2**20:.1f} MiB of JPEG) in {time.perf_counter() - t0:.1f} s", flush=True)  # fmt: skip
    for x in (250, 500, 750):
        video.prompt(vs, 0, [(x, 288)])
    t0 = time.perf_counter()
    for _ in video.track(vs):
        pass
    state = vs.tracking.state_bytes() / 2**20
    tracked = rss_mb()
    print(f"  tracked 3 objects in {time.perf_counter() - t0:.0f} s; tracking state "
          f"{state:.0f} MiB", flush=True)  # fmt: skip
    video.close(vs)
    del clip
    gc.collect()
    give_back_freed_memory()
    after = rss_mb()
    print(f"  RSS: before {before:.0f} MiB, opened {opened:.0f}, tracked {tracked:.0f}, closed "
          f"{after:.0f}: {after - before:+.0f} MiB kept", flush=True)  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", default=["track", "describe", "memory"])
    p.add_argument("--sam", nargs="+", default=["sam2.1-tiny", "tiny"])
    p.add_argument("--frames", type=int, default=6, help="frames tracked per run")
    p.add_argument("--osprey", default="tiny")
    p.add_argument("--every", type=int, default=3)
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--fps", type=float, default=2.0)
    p.add_argument("--memory-sam", default="tiny", help="the tracker of the memory run")
    p.add_argument("--cycles", type=int, default=2, help="clips opened, tracked, closed in turn")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    limit_malloc_arenas()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"device {args.device}", flush=True)  # fmt: skip
    if "track" in args.parts:
        bench_track(args.sam, args.frames, args.device)
    if "describe" in args.parts:
        bench_describe(args.osprey, args.every, args.device)
    if "memory" in args.parts:
        bench_memory(args.seconds, args.fps, args.memory_sam, args.device, args.cycles)


if __name__ == "__main__":
    main()
