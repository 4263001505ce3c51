"""SAM 1 ViT-B against the SAM 2.1 sizes, side by side in one run: the image encoder's time on a
1024x1024 image (what a new photo's first click waits for), a click on the cached embedding (on
the server), parameters, and the bytes a page decoding clicks itself must fetch per new image
(float16, raw and gzip-compressed). Prints numbers; asserts nothing.

Weights are random at full size (timings do not depend on their values; the compressed sizes of
trained features will differ). Models are measured in interleaved rounds, so a busy machine
slows them alike: compare the ratios.

    python benchmarks/sam2_bench.py                          # CPU: vit_b + the four SAM 2.1 sizes
    python benchmarks/sam2_bench.py --models vit_b sam2.1-tiny --rounds 5
    python benchmarks/sam2_bench.py --device cuda --dtypes bfloat16
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from osprey.app.canvas_page import pack_maps  # noqa: E402
from osprey.core.images import load_image  # noqa: E402
from sam_bridge.build import resolve_device  # noqa: E402
from sam_bridge.loading import random_model  # noqa: E402
from sam_bridge.names import SAM_NAMES  # noqa: E402
from sam_bridge.predictor import SamBridge  # noqa: E402

DEFAULT_MODELS = ["vit_b", "sam2.1-tiny", "sam2.1-small", "sam2.1-base-plus", "sam2.1-large"]


def synced(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device) -> float:
    synced(device)
    start = time.perf_counter()
    fn()
    synced(device)
    return time.perf_counter() - start


def page_bytes(bridge: SamBridge, key) -> tuple[int, int]:
    """(float16, as shipped) bytes of the maps a page decoding clicks itself fetches per new
    image: SAM 1's 64x64 embedding as it is, SAM 2's three maps packed (osprey.app.canvas_page.pack_maps:
    bytes split, gzip level 1)."""
    maps = bridge.page_embedding(key).maps
    raw = sum(m.nbytes for m in maps)
    return raw, (len(pack_maps(maps)) if len(maps) > 1 else raw)


def variants(image: np.ndarray, n: int) -> list[np.ndarray]:
    """``n`` distinct images of the same size (each one a cache miss)."""
    return [np.ascontiguousarray(np.roll(image, 11 * k, axis=1)) for k in range(n)]


def measure(args: argparse.Namespace, image: np.ndarray, device: torch.device) -> list[dict]:
    bridges, rows = {}, {}
    for name in args.models:
        for dtype in args.dtypes:
            print(f"building {name} {dtype} ...", flush=True)
            bridge = SamBridge(random_model(name), model_type=name, device=device, dtype=dtype)
            params = sum(p.numel() for p in bridge.model.parameters())
            bridges[name, dtype] = bridge
            rows[name, dtype] = {"model": name, "dtype": dtype, "params_m": params / 1e6,
                                 "encode_s": [], "click_ms": []}  # fmt: skip
    images = variants(image, args.rounds + 1)
    for r, img in enumerate(images):  # round 0 warms every model up
        for (name, dtype), bridge in bridges.items():
            seconds = timed(lambda b=bridge, i=img: b.set_image(i), device)
            row = rows[name, dtype]
            if r == 0:
                row["encode_first_s"] = seconds
                continue
            row["encode_s"].append(seconds)
            key = bridge.set_image(img)
            for k in range(args.clicks):
                point = [(37 * k % image.shape[1], 53 * k % image.shape[0])]
                ms = 1000 * timed(lambda b=bridge, k=key, p=point: b.predict(k, points=p), device)
                row["click_ms"].append(ms)
            row["page_bytes"], row["page_bytes_gzip"] = page_bytes(bridge, key)  # f16, shipped
            print(f"  round {r} {name} {dtype}: encode {seconds:.2f} s", flush=True)
    return list(rows.values())


def report(rows: list[dict], device: torch.device, threads: int) -> None:
    print(f"\n{platform.processor() or platform.machine()}, {threads} torch threads, {device}, "
          f"torch {torch.__version__}; 1024x1024 image, random weights")  # fmt: skip
    base = {r["dtype"]: statistics.median(r["encode_s"]) for r in rows if r["model"] == "vit_b"}
    print(f"{'model':17} {'dtype':9} {'params':>7} {'encode median':>13} {'fastest':>8} "
          f"{'vs ViT-B':>8} {'click p50':>9} {'f16 MiB':>8} {'shipped MiB':>11}")  # fmt: skip
    for r in rows:
        enc = statistics.median(r["encode_s"])
        ratio = base.get(r["dtype"], float("nan")) / enc
        line = f"{r['model']:17} {r['dtype']:9} {r['params_m']:6.1f}M {enc:12.2f}s"
        line += (
            f" {min(r['encode_s']):7.2f}s {ratio:7.1f}x {statistics.median(r['click_ms']):7.1f}ms"
        )
        line += f" {r['page_bytes'] / 2**20:8.2f} {r['page_bytes_gzip'] / 2**20:11.2f}"
        print(line)
    print(
        "\nencode: set_image of a new 1024x1024 image, median and fastest of the rounds (the first,"
    )
    print("a warm-up, not counted); vs ViT-B: ViT-B's median / this one's; click: one point, three")
    print("candidates at the image's size, on the cached embedding; f16 / shipped: the maps a page")
    print(
        "decoding clicks itself fetches per new image, in float16 and as sent (SAM 2: bytes split"
    )
    print(
        "+ gzip, osprey.app.canvas_page.pack_maps; SAM 1 as is). Trained maps compress differently."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=SAM_NAMES)
    parser.add_argument("--dtypes", nargs="+", default=["float32"], help="float32 / bfloat16")
    parser.add_argument("--image", type=Path, default=REPO / "examples" / "astronaut.jpg")
    parser.add_argument("--size", type=int, default=1024, help="the image is resized to SIZE²")
    parser.add_argument("--rounds", type=int, default=3, help="measured encodes per model")
    parser.add_argument("--clicks", type=int, default=10, help="clicks per round")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    image = np.asarray(Image.fromarray(load_image(args.image)).resize((args.size, args.size)))
    rows = measure(args, image, device)
    report(rows, device, torch.get_num_threads())
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
