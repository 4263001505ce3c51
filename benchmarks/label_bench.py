"""Benchmark ``python -m osprey.label``: images/s and regions/s in-process vs. on a local Ray
instance with N actors, on the same images and settings. Prints numbers; asserts nothing.

Tiny random models (SAM's thresholds at 0 so that the tiny SAM keeps masks; an answer ends where
the tiny model ends it, at most --max-new-tokens, identically in both runs). The images are the
repository's examples plus flipped copies (distinct pixels, so no cache hit between them). The
in-process runs use all cores' torch threads, then one; each Ray actor reserves one CPU. Images go
4 to a batch; the last in-process run turns the batching engine on (every region of a batch's
images decoded together), the others use the CPU default (off: each image's regions together over
their shared prompt prefix).

    python benchmarks/label_bench.py                       # 8 images, in-process vs. 2 actors
    python benchmarks/label_bench.py --copies 4 --actors 2 --regions 8

Rates are over the whole run, start-up included: "load" is loading the models in-process and
``ray.init`` with Ray (whose actors then start and load the models in their own processes); the
times at which results reached the driver are printed too (a batch's images arrive together).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from osprey.label.inputs import list_images  # noqa: E402
from osprey.label.job import Labeller, LabelSettings  # noqa: E402
from osprey.label.regions import EverythingOptions  # noqa: E402
from osprey.label.runner import LocalBackend, label_dataset  # noqa: E402


@dataclass
class Clock:
    """Wraps a backend and notes when each record reaches the driver."""

    backend: object
    start: float = field(default_factory=time.perf_counter)
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (seconds, regions)

    def __call__(self, items, emit):
        def timed(record):
            self.arrivals.append(
                (time.perf_counter() - self.start, len(record.get("annotations", ())))
            )
            emit(record)

        self.backend(items, timed)

    def show(self, name: str) -> None:
        print(f"# {name}: results at " + ", ".join(f"{t:.1f}" for t, _ in self.arrivals) + " s")

    def row(self, name: str, wall: float, load: float) -> dict:
        images = len(self.arrivals)
        regions = sum(n for _, n in self.arrivals)
        return {
            "run": name, "images": images, "regions": regions, "wall_s": wall, "load_s": load,
            "first_result_s": self.arrivals[0][0], "images_per_s": images / wall,
            "regions_per_s": regions / wall,
        }  # fmt: skip


def make_images(folder: Path, copies: int) -> Path:
    """The examples and ``copies - 1`` flipped / rolled variants of each (distinct pixels)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted((REPO / "examples").glob("*.jpg")):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        variants = [rgb, rgb[:, ::-1], rgb[::-1], rgb[::-1, ::-1]]
        variants += [np.roll(rgb, 17 * k, axis=1) for k in range(1, copies)]
        for k, v in enumerate(variants[:copies]):
            Image.fromarray(np.ascontiguousarray(v)).save(folder / f"{path.stem}_{k}.png")
    return folder


def run_local(settings: LabelSettings, items, out: Path, threads: int) -> dict:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    clock = Clock(None)
    labeller = Labeller.load(settings)
    load = time.perf_counter() - clock.start
    try:
        clock.backend = LocalBackend(settings, labeller)
        label_dataset(items, settings, out, clock, progress=False)
    finally:
        labeller.close()
        torch.set_num_threads(before)
    name = f"in-process, {threads} thread(s), batching {settings.batching}"
    clock.show(name)
    return clock.row(name, time.perf_counter() - clock.start, load)


def run_ray(settings: LabelSettings, items, out: Path, actors: int) -> dict:
    import ray

    from osprey.label.ray_backend import RayBackend

    clock = Clock(None)
    ray.init(num_cpus=os.cpu_count(), object_store_memory=200 * 2**20, include_dashboard=False,
             logging_level="WARNING")  # fmt: skip
    load = time.perf_counter() - clock.start
    try:
        clock.backend = RayBackend(settings, actors=actors)
        label_dataset(items, settings, out, clock, progress=False)
    finally:
        ray.shutdown()
    clock.show(f"Ray, {actors} actors")
    return clock.row(f"Ray, {actors} actors", time.perf_counter() - clock.start, load)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copies", type=int, default=2, help="variants of each example image")
    ap.add_argument("--regions", type=int, default=8, help="SAM regions per image (largest)")
    ap.add_argument("--points-per-side", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--threads", type=int, nargs="+", default=[os.cpu_count(), 1],
                    help="torch threads of the in-process runs (one run each)")  # fmt: skip
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    everything = EverythingOptions(args.points_per_side, 0.0, 0.0, box_nms_thresh=1.0)
    settings = LabelSettings(model="tiny-random", everything=everything, max_regions=args.regions,
                             max_new_tokens=args.max_new_tokens)  # fmt: skip
    print(f"# {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        items = list_images(make_images(tmp / "images", args.copies))
        rows = [run_local(settings, items, tmp / f"local{n}.json", n) for n in args.threads]
        engine = replace(settings, batching="on")
        rows.append(run_local(engine, items, tmp / "engine.json", 1))
        if not args.no_ray:
            rows.append(run_ray(settings, items, tmp / "ray.json", args.actors))
        outputs = [json.loads(p.read_text()) for p in sorted(tmp.glob("*.json"))]
        print(f"# outputs identical: {all(o == outputs[0] for o in outputs)}")
    keys = list(rows[0])
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values()))


if __name__ == "__main__":
    main()
