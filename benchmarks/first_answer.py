"""How long a visitor waits for the first answer where the app lands: the 7B architecture (random
weights: speed does not depend on their values) in the form the app picks for the machine, with
SAM beside it (ViT-B by default; ``--sam sam2.1-tiny``: what ``auto`` picks on a CPU), on the CPU.

    python benchmarks/first_answer.py                      # 8-bit, as on Spaces CPU basic (16 GB)
    python benchmarks/first_answer.py --quantize none      # bf16, as on a 24+ GB CPU machine
    python benchmarks/first_answer.py --tiny               # the tiny model: a quick dry run
    python benchmarks/first_answer.py --rows 8             # also: decoding 8 answers at once
    python benchmarks/first_answer.py --sam sam2.1-tiny    # the SAM the app picks on a CPU

Measured, one visitor on an idle app: the click (SAM embedding of a new photo, then one decode),
then the first question on the photo (image features + the whole prompt + the answer), then a
second question on the same photo (prefix reused). For each question: time to the first streamed
text and to the whole answer, tokens generated. Also the peak resident memory after the build.
With ``--rows N``: the batching engine decodes 1, then N answers on the same photo together,
and prints the aggregate decode rate of each (the prompt prefix is cached first; each run is
timed with 1 and with 1 + ``--decode-tokens`` new tokens, and the difference is the decode
time, so the prefill of each run cancels out). Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from run import build_osprey, load_voc, peak_gib, reset_peak  # noqa: E402

from osprey.inference.generator import Generation  # noqa: E402
from osprey.inference.prompt_format import task_message  # noqa: E402
from sam_bridge.names import SAM_NAMES  # noqa: E402


def timed_answer(osp, rgb, masks, message: str, max_new_tokens: int):
    """(seconds to the first streamed text, seconds to the whole answer, the answer, how many
    pieces were streamed). Random weights seldom produce spaces, and the streamer sends text at
    word boundaries: then the answer arrives as one piece, and the whole answer's time is the
    number that counts."""
    t0 = time.perf_counter()
    first, last, pieces = None, "", 0
    for text in osp.stream(osp.generate, rgb, masks, message, Generation(max_new_tokens)):
        if isinstance(text, str) and text and text != last:
            pieces += 1
            first = time.perf_counter() - t0 if first is None else first
            last = text
    return (first if first is not None else float("nan")), time.perf_counter() - t0, last, pieces


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quantize", choices=["8bit", "4bit", "none"], default="8bit")
    ap.add_argument("--tiny", action="store_true", help="the tiny model instead of the 7B")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--max-new-tokens", type=int, default=16, help="answer length cap")
    ap.add_argument("--rows", type=int, default=0, help="also decode this many answers at once")
    ap.add_argument("--decode-tokens", type=int, default=8, help="tokens timed per answer (--rows)")
    ap.add_argument("--kv-gib", type=float, default=0, help="the engine's KV cache (--rows)")
    ap.add_argument("--voc", type=Path, default=None, help="the VOC photo as an .npz (run.py)")
    ap.add_argument("--sam", default="vit_b", choices=SAM_NAMES, help="full size, random weights")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    quantize = None if args.quantize == "none" else args.quantize
    device = torch.device("cpu")
    voc = load_voc(args.voc)
    rgb, masks = voc["rgb"], voc["masks"]

    from sam_bridge.loading import random_model
    from sam_bridge.predictor import SamBridge

    t = time.perf_counter()
    osp = build_osprey(not args.tiny, device, torch.bfloat16, quantize)
    sam = SamBridge(random_model(args.sam), model_type=args.sam, device=device)
    gc.collect()
    print(f"models built in {time.perf_counter() - t:.0f} s "
          f"({'tiny' if args.tiny else '7B'}, {args.quantize}, SAM {args.sam}), "
          f"{torch.get_num_threads()} torch threads", flush=True)  # fmt: skip
    reset_peak(device)

    t = time.perf_counter()
    sam.predict(rgb, points=[(250, 200)])
    print(f"first click on a new photo (SAM embedding + decode): {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    sam.predict(rgb, points=[(260, 210)])
    print(f"next click: {1000 * (time.perf_counter() - t):.0f} ms", flush=True)

    n = args.max_new_tokens
    questions = [
        ("first question on the photo (category)", task_message("category"), masks[:1]),
        ("second question, same photo (short caption)", task_message("short"), masks[:1]),
    ]
    for what, message, m in questions:
        first, whole, answer, pieces = timed_answer(osp, rgb, m, message, n)
        print(f"{what}: whole answer {whole:.1f} s (cap {n} tokens; {len(answer)} characters), "
              f"first of {pieces} streamed pieces {first:.1f} s", flush=True)  # fmt: skip
    print(f"peak resident memory after the build: {peak_gib(device):.1f} GiB", flush=True)
    if args.rows > 1:
        del sam  # room for the engine's cache
        gc.collect()
        budget = int(args.kv_gib * 2**30) if args.kv_gib else None
        decode_rates(osp, rgb, masks[:1], args.rows, args.decode_tokens, budget)


def decode_rates(osp, rgb, mask, rows: int, k: int, kv_budget: int | None = None) -> None:
    """Aggregate decode tokens/s of 1 and of ``rows`` answers decoded together by the engine
    (its KV cache ``kv_budget`` bytes, default: the engine's own choice from the free memory)."""
    osp.generator.enable_batching(max_active=max(rows, 1), kv_budget=kv_budget)
    print(f"engine: {osp.generator.engine.num_blocks} KV blocks of 128 tokens", flush=True)

    def timed(n: int, tokens: int) -> float:
        t = time.perf_counter()
        answers = osp.describe(rgb, np.repeat(mask, n, axis=0), "short", Generation(tokens))
        assert len(answers) == n
        return time.perf_counter() - t

    timed(1, 1)  # the prompt's prefix into the engine's cache
    rates = {}
    for n in (1, rows):
        prefill = timed(n, 1)
        whole = timed(n, 1 + k)
        rates[n] = n * k / (whole - prefill)
        print(f"{n} answer(s) together: {rates[n]:.2f} tokens/s decoding "
              f"({whole:.1f} s for {1 + k} tokens each, {prefill:.1f} s for 1)", flush=True)  # fmt: skip
    print(f"decode tokens/s, {rows} together / 1 alone: x{rates[rows] / rates[1]:.1f}")
    osp.generator.disable_batching()


if __name__ == "__main__":
    main()
