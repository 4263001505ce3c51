"""Benchmark sam_bridge: encoder time per image, per-click latency with the cached embedding, and the
original demo's way (re-encode on every click) as a baseline. Prints numbers; asserts nothing.

Weights are random (the real-size architecture from segment_anything's registry with
checkpoint=None): timings do not depend on weight values.

    python benchmarks/sam_bench.py                                   # CPU, vit_b, fp32 + bf16
    python benchmarks/sam_bench.py --device cuda --models vit_b vit_h
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from segment_anything import SamPredictor

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from osprey.core.images import load_image  # noqa: E402
from sam_bridge.build import build_sam, resolve_device  # noqa: E402
from sam_bridge.predictor import SamBridge  # noqa: E402

# ---------------------------------------------------------------------------------------------
# helpers


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds for one call, synchronising the GPU so the time is the real one."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def variants(image: np.ndarray, n: int) -> list[np.ndarray]:
    """``n`` distinct images of the same size (so each one is a cache miss)."""
    out = [image, image[:, ::-1], image[::-1], image[::-1, ::-1]]
    out += [np.roll(image, 7 * k, axis=1) for k in range(1, n)]
    return [np.ascontiguousarray(v) for v in out[:n]]


def clicks(image: np.ndarray, n: int, seed: int = 0) -> list[tuple[int, int]]:
    h, w = image.shape[:2]
    rng = np.random.default_rng(seed)
    return [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(n)]


# ---------------------------------------------------------------------------------------------
# measurements


def bench_bridge(
    sam, model_type: str, dtype: str, image: np.ndarray, args: argparse.Namespace
) -> dict:
    device = resolve_device(args.device)
    bridge = SamBridge(sam, model_type=model_type, device=device, dtype=dtype)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    encodes = [
        timed(lambda im=im: bridge.set_image(im), device) for im in variants(image, args.encodes)
    ]
    key = bridge.set_image(image)
    points = clicks(image, args.clicks)
    bridge.predict(key, points=[points[0]])  # warm-up of the decoder path
    lone = [timed(lambda p=p: bridge.predict(key, points=[p]), device) for p in points]
    previous = bridge.predict(key, points=[points[0]])
    refine = [
        timed(
            lambda p=p: bridge.predict(
                key, points=[points[0], p], labels=[1, 0], previous=previous
            ),
            device,
        )
        for p in points[1:]
    ]
    row = {
        "model": model_type,
        "dtype": dtype,
        "encode_first_s": encodes[0],
        "encode_s": statistics.median(encodes[1:]) if len(encodes) > 1 else encodes[0],
        "click_p50_ms": 1000 * percentile(lone, 50),
        "click_p95_ms": 1000 * percentile(lone, 95),
        "refine_p50_ms": 1000 * percentile(refine, 50),
        "refine_p95_ms": 1000 * percentile(refine, 95),
        "stats": bridge.stats.__dict__,
    }
    if device.type == "cuda":
        row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return row


def bench_original_demo(sam, model_type: str, image: np.ndarray, args: argparse.Namespace) -> dict:
    """The original Osprey demo's loop: set_image on every click, then predict (fp32)."""
    device = resolve_device(args.device)
    predictor = SamPredictor(sam.to(device))
    times = []
    for x, y in clicks(image, args.baseline_clicks, seed=1):

        def click(x=x, y=y):
            with torch.inference_mode():
                predictor.set_image(image)
                predictor.predict(np.array([[x, y]]), np.array([1]), multimask_output=True)

        times.append(timed(click, device))
    return {"model": model_type, "per_click_s": statistics.mean(times), "clicks": len(times)}


# ---------------------------------------------------------------------------------------------
# report


def report(
    rows: list[dict], baselines: list[dict], image: np.ndarray, device: torch.device
) -> None:
    h, w = image.shape[:2]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"\ndevice {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"image {w}x{h}; encoder: first call, then median; clicks: cached embedding\n")
    head = f"{'model':6} {'dtype':9} {'encode 1st':>10} {'encode':>8} {'click p50':>10} {'p95':>7}"
    head += f" {'refine p50':>11} {'p95':>7}"
    has_peak = any("peak_gib" in r for r in rows)
    print(head + ("  peak GiB" if has_peak else ""))
    for r in rows:
        line = f"{r['model']:6} {r['dtype']:9} {r['encode_first_s']:9.2f}s {r['encode_s']:7.2f}s"
        line += f" {r['click_p50_ms']:8.1f}ms {r['click_p95_ms']:5.0f}ms"
        line += f" {r['refine_p50_ms']:9.1f}ms {r['refine_p95_ms']:5.0f}ms"
        print(line + (f"  {r['peak_gib']:8.2f}" if has_peak else ""))
    for b in baselines:
        print(
            f"original demo ({b['model']}, fp32, re-encode per click): "
            f"{b['per_click_s']:.2f} s per click (mean of {b['clicks']})"
        )
    print("\nclick = one positive point, 3 candidates; refine = 2 points + previous logits, 1 mask")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    parser.add_argument(
        "--models", nargs="+", default=["vit_b"], choices=["vit_b", "vit_l", "vit_h"]
    )
    parser.add_argument("--dtypes", nargs="+", default=None, help="default: float32 bfloat16")
    parser.add_argument("--image", type=Path, default=REPO / "examples" / "astronaut.jpg")
    parser.add_argument(
        "--long-side", type=int, help="resize the image to this long side first (e.g. 4032: 12 MP)"
    )
    parser.add_argument("--encodes", type=int, default=3, help="distinct images encoded per row")
    parser.add_argument("--clicks", type=int, default=50)
    parser.add_argument("--baseline-clicks", type=int, default=3, help="0 skips the baseline")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    image = load_image(args.image)
    if args.long_side:
        h, w = image.shape[:2]
        size = (round(w * args.long_side / max(h, w)), round(h * args.long_side / max(h, w)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))
    rows, baselines = [], []
    for model_type in args.models:
        sam = build_sam(model_type)  # random weights, built once per model
        for dtype in args.dtypes or ["float32", "bfloat16"]:
            print(f"{model_type} {dtype} ...", flush=True)
            # a copy: under bf16 the bridge stores the encoder's weights in bf16 (in place)
            rows.append(bench_bridge(copy.deepcopy(sam), model_type, dtype, image, args))
        if args.baseline_clicks > 0:
            print(f"{model_type} original demo ...", flush=True)
            baselines.append(bench_original_demo(sam, model_type, image, args))
        del sam
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report(rows, baselines, image, device)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "baselines": baselines}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
