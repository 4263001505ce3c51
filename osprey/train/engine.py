"""The engine: Hugging Face Trainer over an OspreyModel, and the TrainingArguments of a config.

The Trainer brings the loop, mixed precision, gradient accumulation, DDP / FSDP / DeepSpeed
(through accelerate, under ``torchrun`` or ``accelerate launch``), checkpoints with optimizer,
scheduler, RNG and data position, TensorBoard logging and progress bars. OspreyTrainer adds only
what an nn.Module that is not a PreTrainedModel needs: saving in the Osprey format (loadable by
``load_osprey``), a strict resume of those weights, and the tally of data events (rejected and
truncated samples) that the collator hands over with every batch.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from osprey.core.errors import OspreyError
from osprey.model.checkpoint import read_tensors, save_osprey, weight_files
from osprey.train.config import PRESETS, TrainConfig


class EngineError(OspreyError, RuntimeError):
    """A scale-out or precision setting that cannot run here, with what to do about it."""


# ---------------------------------------------------------------------------------------------
# settings


def resolve_deepspeed(value: str | None) -> str | None:
    """``zero2`` / ``zero3`` (the shipped configs) or a JSON path -> the path, checked; a clear
    error when DeepSpeed itself is not installed."""
    if value is None:
        return None
    path = PRESETS / f"{value}.json" if value in ("zero2", "zero3") else Path(value)
    if not path.is_file():
        raise EngineError(f"deepspeed config {value!r} not found (use zero2, zero3 or a JSON path)")
    try:
        json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EngineError(f"{path} is not valid JSON: {exc}") from exc
    if importlib.util.find_spec("deepspeed") is None:
        raise EngineError(
            f"deepspeed={value} needs DeepSpeed, which is not installed: `pip install deepspeed` "
            "on a CUDA machine, or train without it (one GPU, DDP or FSDP via torchrun)"
        )
    return str(path)


def resolve_attention(value: str) -> str:
    """``auto``: FlashAttention-2 where it is installed and CUDA is present, else PyTorch SDPA."""
    has_flash = importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()
    if value == "auto":
        return "flash_attention_2" if has_flash else "sdpa"
    if value == "flash_attention_2" and not has_flash:
        raise EngineError("attn_implementation=flash_attention_2 needs flash-attn and CUDA")
    if value not in ("sdpa", "eager", "flash_attention_2"):
        raise EngineError(f"unknown attn_implementation {value!r}")
    return value


def runs_on_cpu(cfg: TrainConfig) -> bool:
    return cfg.use_cpu if cfg.use_cpu is not None else not torch.cuda.is_available()


def compute_dtype(cfg: TrainConfig) -> torch.dtype:
    """bf16 applies on CUDA; a CPU run computes in fp32."""
    return torch.bfloat16 if cfg.bf16 and not runs_on_cpu(cfg) else torch.float32


def _tf32(cfg: TrainConfig) -> bool | None:
    if not cfg.tf32 or runs_on_cpu(cfg) or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_capability()[0] >= 8 or None


def training_arguments(cfg: TrainConfig) -> TrainingArguments:
    """TrainingArguments for ``cfg``. Activation checkpointing is switched on by the caller on the
    LLM itself (the Trainer only knows how to do it for a PreTrainedModel)."""
    cpu = runs_on_cpu(cfg)
    return TrainingArguments(
        output_dir=cfg.output_dir,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        lr_scheduler_type=cfg.lr_scheduler_type,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        optim=cfg.optim,
        bf16=compute_dtype(cfg) == torch.bfloat16,
        tf32=_tf32(cfg),
        seed=cfg.seed,
        dataloader_num_workers=cfg.dataloader_num_workers,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        logging_steps=cfg.logging_steps,
        report_to=cfg.report_to,
        deepspeed=resolve_deepspeed(cfg.deepspeed),
        fsdp=cfg.fsdp,
        fsdp_config=cfg.fsdp_config,
        # Every trainable parameter gets a gradient in every step (idle parts are anchored, see
        # unused_part_anchor), so DDP need not search the graph for unused ones; searching would
        # mark the anchored ones ready twice.
        ddp_find_unused_parameters=False,
        use_cpu=cpu,
        remove_unused_columns=False,
        label_names=["labels"],
    )


def latest_checkpoint(output_dir: str | Path) -> str | None:
    """The highest ``checkpoint-N`` folder in ``output_dir`` (what ``resume=auto`` resumes)."""
    found = [p for p in Path(output_dir).glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return str(max(found, key=lambda p: int(p.name.split("-")[-1]))) if found else None


# ---------------------------------------------------------------------------------------------
# data events


def event_totals(events: Counter) -> dict[str, int]:
    """Totals over all sources, for the training log."""
    totals = {"data_samples": 0, "data_rejected": 0, "data_truncated_turns": 0}
    for key, n in events.items():
        if key.endswith("/samples"):
            totals["data_samples"] += n
        elif "/rejected/" in key:
            totals["data_rejected"] += n
        elif key.endswith("/truncated/turns"):
            totals["data_truncated_turns"] += n
    return totals


def gather_events(events: Counter) -> Counter:
    """Sum the per-process counts over all ranks (a no-op outside distributed runs)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return Counter(events)
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, dict(events))
    total: Counter = Counter()
    for part in parts:
        total.update(part)
    return total


class EpochToDataset(TrainerCallback):
    """Tell the dataset the epoch before each epoch's loader starts (accelerate forwards
    ``set_epoch`` to a distributed sampler instead of the dataset)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(math.floor(state.epoch + 1e-6) if state.epoch else 0)


# ---------------------------------------------------------------------------------------------
# parts a batch leaves unused


def unused_part_anchor(model, batch: dict[str, Any]) -> torch.Tensor | None:
    """A zero that depends on the trainable parts the batch does not use, or None.

    A text-only batch never reaches the projector, and a batch without regions never reaches the
    mask extractor. If such a part trains, the loss would not depend on it: a backward error when
    nothing else trains (stage 1 on a text-only sample) and unused parameters under DDP. Running
    each idle part once on a tiny dummy input and adding 0 x its output keeps the graph connected
    (LLaVA's trick; it works under ZeRO-3, whose hooks gather a module's weights when it runs)."""
    terms = []
    has_image = batch.get("pixel_values") is not None
    has_regions = has_image and sum(int(m.shape[0]) for m in batch.get("masks", [])) > 0
    projector, extractor = model.projector, model.mask_extractor
    if not has_image and any(p.requires_grad for p in projector.parameters()):
        first = next(projector.parameters())
        in_dim = next(m for m in projector.modules() if isinstance(m, torch.nn.Linear)).in_features
        terms.append(
            projector(torch.zeros(1, in_dim, device=first.device, dtype=first.dtype)).sum()
        )
    if not has_regions and any(p.requires_grad for p in extractor.parameters()):
        first = next(extractor.parameters())
        levels = {
            name: torch.zeros(1, getattr(extractor, name).in_features, 2, 2, device=first.device)
            for name in extractor.levels
        }
        mask_tok, pos_tok = extractor(levels, [torch.ones(1, 2, 2, device=first.device)])
        terms.append(mask_tok.sum() + pos_tok.sum())
    return 0.0 * sum(terms) if terms else None


# ---------------------------------------------------------------------------------------------
# the trainer


class OspreyTrainer(Trainer):
    """HF Trainer for an OspreyModel. The tokenizer is saved with every checkpoint; it is not
    handed to the base class as ``processing_class``, which would try to align the special tokens
    of a ``PreTrainedModel`` config that OspreyModel does not have."""

    def __init__(self, *args, tokenizer, **kwargs):
        super().__init__(*args, **kwargs)
        self.tokenizer_to_save = tokenizer
        self.data_events: Counter = Counter()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.data_events.update(inputs.pop("events", None) or {})
        loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        anchor = unused_part_anchor(self.accelerator.unwrap_model(model), inputs)
        if anchor is not None:
            loss = loss + anchor.to(loss.dtype)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        logs.update(event_totals(self.data_events))
        super().log(logs, *args, **kwargs)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Our format (osprey_config.json + safetensors + tokenizer), for checkpoints and the
        final model alike; ``state_dict`` is what DeepSpeed / FSDP gathered, when they did."""
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return
        model = self.accelerator.unwrap_model(self.model)
        save_osprey(model, self.tokenizer_to_save, output_dir, state_dict=state_dict)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """Strict load of our checkpoint format (the base class loads a bare nn.Module
        non-strictly). DeepSpeed and FSDP restore their own states."""
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        model = self.model if model is None else model
        state = dict(read_tensors(weight_files(Path(resume_from_checkpoint))))
        model.load_state_dict(state, strict=True)
        return None
