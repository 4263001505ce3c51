"""Training throughput per stage: samples/s, tokens/s, peak memory, and what the paper's data
would cost at that speed.

    python benchmarks/train_bench.py                           # tiny model, CPU
    python benchmarks/train_bench.py --full --device cuda      # 7B-shaped, random weights, bf16

Runs the real engine (OspreyTrainer: HF Trainer, autocast, activation checkpointing, AdamW, the
stage's trainable set from stages.py) on synthetic batches shaped like each stage's data: 1024
image tokens (at 512 px) plus the text and regions of a typical sample. Random weights: speed does
not depend on weight values. Prints a table; not a test.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.trainer_utils import SaveStrategy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from osprey.core import constants as C
from osprey.train.config import TrainConfig
from osprey.train.engine import OspreyTrainer, training_arguments
from osprey.train.train import prepare_model


@dataclass(frozen=True)
class Profile:
    """A stage's typical sample and batch, and the paper's data size (reference §5.1-5.2)."""

    stage: int
    text_tokens: int  # system prompt + questions + answers
    regions: int
    batch_full: int  # per-device batch of the original scripts (global 128 / 4 / 4 on 4 GPUs)
    samples: int  # samples per epoch in the paper's mixture (approximate)
    epochs: int
    paper_hours: float  # wall time reported on 4x A100-80GB
    data: str


PROFILES = {
    1: Profile(1, 60, 0, 32, 558_000, 1, 7, "LCS-558K captions"),
    2: Profile(
        2, 150, 10, 1, 380_000, 2, 15, "COCO 117K + RefCOCO 121K + RefCOCO+ 120K + parts ~22K"
    ),
    3: Profile(3, 300, 4, 1, 1_045_000, 2, 48, "Osprey-724K + VG 108K + VCR 213K"),
}


class SyntheticStage(torch.utils.data.Dataset):
    """Items shaped like OspreyDataset's for one stage (random ids, masks and pixels)."""

    def __init__(self, profile: Profile, num_image_tokens: int, image_size: int, n: int = 64):
        self.p, self.n_img, self.size, self.n = profile, num_image_tokens, image_size, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        text = torch.randint(3, 30000, (self.p.text_tokens,), generator=g)
        region = torch.tensor([C.MASK_TOKEN_ID, C.POS_TOKEN_ID])
        pieces = [text[:40], torch.full((self.n_img,), C.IMAGE_TOKEN_INDEX), text[40:60]]
        per = max((self.p.text_tokens - 60) // max(self.p.regions, 1), 1)
        for r in range(self.p.regions):
            pieces += [region, text[60 + r * per : 60 + (r + 1) * per]]
        if not self.p.regions:
            pieces.append(text[60:])
        ids = torch.cat(pieces)
        labels = torch.full_like(ids, C.IGNORE_INDEX)
        answer = slice(len(ids) - max(self.p.text_tokens // 4, 8), len(ids))
        labels[answer] = ids[answer]
        labels[(ids == C.MASK_TOKEN_ID) | (ids == C.POS_TOKEN_ID)] = C.IGNORE_INDEX
        masks = torch.zeros(self.p.regions, 480, 640, dtype=torch.bool)
        for r in range(self.p.regions):
            y, x = 40 * r % 400, 50 * r % 560
            masks[r, y : y + 80, x : x + 80] = True
        pixels = torch.randn(3, self.size, self.size, generator=g)
        return {"input_ids": ids, "labels": labels, "pixel_values": pixels, "masks": masks}


class StepClock(TrainerCallback):
    """Times the steps after ``warmup`` (device-synchronised)."""

    def __init__(self, warmup: int, device: torch.device):
        self.warmup, self.device, self.times = warmup, device, []

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def on_step_end(self, args, state, control, **kwargs):
        self._sync()
        self.times.append(time.perf_counter())

    def seconds_per_step(self) -> float:
        t = self.times[self.warmup :]
        return (t[-1] - t[0]) / (len(t) - 1)


# ---------------------------------------------------------------------------------------------
# models


def full_model(device: torch.device):
    """The released 7B architecture with random weights in fp32 (training keeps fp32 master
    weights), built straight on the device."""
    from osprey.inference.loading import build_random
    from osprey.model.config import osprey_7b_config

    return build_random(osprey_7b_config(), device, torch.float32).train()


def collate(pad: int):
    from osprey.data.collate import Collator

    return Collator(pad_token_id=pad)


def peak_memory_gib(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB GPU"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB RSS"


def bench_config(profile: Profile, args, device: torch.device) -> TrainConfig:
    """The stage's training settings with timing-only logging and no checkpoints."""
    return TrainConfig(
        stage=profile.stage,
        output_dir=str(Path(args.output_dir) / f"stage{profile.stage}"),
        learning_rate=1e-5,
        max_steps=args.warmup + args.steps,
        per_device_train_batch_size=profile.batch_full if args.full else args.batch,
        bf16=device.type == "cuda",
        gradient_checkpointing=True,
        dataloader_num_workers=args.workers,
        save_steps=10**9,
        logging_steps=10**9,
        report_to="none",
        use_cpu=device.type == "cpu",
        lora=args.lora and profile.stage == 3,
    )


def run_stage(model, profile: Profile, args, device: torch.device, pure_bf16: bool) -> dict:
    cfg = bench_config(profile, args, device)
    batch = cfg.per_device_train_batch_size
    prepare_model(model, cfg)
    if pure_bf16:  # one-GPU approximation of ZeRO-2: trainable weights and Adam state in bf16
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.to(torch.bfloat16)
        model.mask_extractor.float()
    data = SyntheticStage(profile, model.num_image_tokens, model.config.vision.image_size)
    clock = StepClock(args.warmup, device)
    targs = training_arguments(cfg)
    targs.disable_tqdm = True
    targs.save_strategy = SaveStrategy.NO  # timing only: no checkpoints
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer = OspreyTrainer(
        model=model,
        args=targs,
        train_dataset=data,
        data_collator=collate(0),
        callbacks=[clock],
        tokenizer=None,
    )
    trainer.train()
    sps = batch / clock.seconds_per_step()
    seq = sum(len(data[i]["input_ids"]) for i in range(4)) / 4
    result = {
        "stage": profile.stage,
        "batch": batch,
        "seq": seq,
        "samples_s": sps,
        "tokens_s": sps * seq,
        "memory": peak_memory_gib(device),
        "gpu_hours": profile.samples * profile.epochs / sps / 3600,
        "profile": profile,
        "pure_bf16": pure_bf16,
        "lora": cfg.lora,
    }
    del trainer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def print_table(results: list[dict], args, device: torch.device) -> None:
    name = "Osprey-7B shape (random)" if args.full else "tiny-random"
    print(f"\nmodel: {name}; device: {device}; steps timed: {args.steps} after {args.warmup}\n")
    print(
        "| stage | batch | tokens/sample | samples/s | tokens/s | peak memory | "
        "paper data (samples x epochs) | est. device-hours | paper: 4xA100 hours |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        p = r["profile"]
        note = " (bf16 master)" if r["pure_bf16"] else ""
        note += " (LoRA r=64)" if r["lora"] else ""
        print(
            f"| {r['stage']}{note} | {r['batch']} | {r['seq']:.0f} | {r['samples_s']:.2f} | "
            f"{r['tokens_s']:.0f} | {r['memory']} | {p.samples:,} x {p.epochs} ({p.data}) | "
            f"{r['gpu_hours']:.1f} | {p.paper_hours} (= {4 * p.paper_hours} A100-hours) |"
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="7B architecture, random weights")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--stages", default="1,2,3")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per stage")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1, help="per-device batch (tiny model)")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--output-dir", default="/tmp/osprey-train-bench")
    ap.add_argument("--lora", action="store_true", help="stage 3 with LoRA (r=64) on the LLM")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if args.full:
        model = full_model(device)
    else:
        from osprey.model.tiny import build_tiny

        model = build_tiny(seed=0)[0].to(device)
    big_enough = (
        device.type != "cuda" or torch.cuda.get_device_properties(device).total_memory > 120 * 2**30
    )
    results = []
    for stage in (int(s) for s in args.stages.split(",")):
        pure = args.full and stage == 3 and not big_enough and not args.lora
        results.append(run_stage(model, PROFILES[stage], args, device, pure))
        print(f"stage {stage}: {results[-1]['samples_s']:.2f} samples/s", flush=True)
    print_table(results, args, device)


if __name__ == "__main__":
    main()
