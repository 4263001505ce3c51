"""``main(argv)``: config -> initial model -> stage's trainable set -> data -> HF Trainer -> Osprey
checkpoint.

    python -m osprey.train --config stage1 --llm_path vicuna-7b-v1.5 --clip_path open_clip.bin
    torchrun --nproc_per_node 4 -m osprey.train --config stage3 --model_path runs/stage2
    accelerate launch -m osprey.train --config stage3 --fsdp "full_shard auto_wrap"

The output directory ends up holding the trained model in our format (``load_osprey`` /
``Osprey`` read it), ``train_config.json``, ``data_report.json`` (records per source, rejected
and truncated samples by reason), the TensorBoard logs under ``runs/``, and ``checkpoint-N``
folders (optimizer, scheduler, RNG and data position) that ``--resume_from_checkpoint`` takes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

from osprey.data.collate import Collator
from osprey.data.dataset import EncodeSettings, OspreyDataset, training_template
from osprey.data.registry import SpecError, build_sources
from osprey.model.checkpoint import CheckpointError
from osprey.model.llm import TokenizerError
from osprey.train.config import ConfigError, TrainConfig, describe_fields, parse_args
from osprey.train.engine import (
    EngineError,
    EpochToDataset,
    OspreyTrainer,
    compute_dtype,
    gather_events,
    latest_checkpoint,
    resolve_attention,
    training_arguments,
)
from osprey.train.lora import LoraSetupError, add_lora, check_quantization, merge_lora, quantize_llm
from osprey.train.model_init import InitError, initial_model, save_projector
from osprey.train.stages import StageError, apply_stage, trainable_parts

USAGE = """usage: python -m osprey.train --config CONFIG [--key=value ...]

CONFIG is a preset (stage1, stage2, stage3, stage3_chat, finetune_lora) or a JSON file.
Every TrainConfig field can be overridden (defaults shown; presets change many):
"""


# ---------------------------------------------------------------------------------------------
# setup


def check_config(cfg: TrainConfig) -> None:
    """Reject combinations that cannot work before anything heavy happens."""
    parts = trainable_parts(cfg.stage)
    if cfg.lora and "llm" not in parts:
        raise StageError(f"lora=True needs a stage that trains the LLM (3), not stage {cfg.stage}")
    if cfg.lora and (cfg.fsdp or (cfg.deepspeed or "").endswith("zero3")):
        raise EngineError("LoRA merges its adapters at the end: use one GPU, DDP or ZeRO-2")
    if cfg.bits != 16 and not cfg.lora:
        raise LoraSetupError("bits=4/8 quantises the frozen LLM for QLoRA: also set lora=true")
    check_quantization(cfg.bits)
    if not cfg.datasets:
        raise ConfigError("the config names no datasets")


def _cast_inputs_to_weights(module: nn.Module, args: tuple) -> tuple:
    weight = getattr(module, "weight", None)
    if weight is None or not args or not torch.is_floating_point(args[0]):
        return args
    return (args[0].to(weight.dtype), *args[1:])


def set_dtypes(model: nn.Module, dtype: torch.dtype) -> None:
    """Frozen weights in the compute dtype (the frozen 7B LLM of stages 1-2 costs 14 GB, not 28),
    trainable ones in fp32 (the optimizer's master copy; autocast computes in ``dtype``). The mask
    extractor computes in fp32 by design; its Linear layers get a pre-hook that casts inputs to
    their weights' dtype, so that engines which cast the whole module (DeepSpeed bf16) still run."""
    for param in model.parameters():
        if param.is_floating_point():
            param.data = param.data.to(torch.float32 if param.requires_grad else dtype)
    model.mask_extractor.float()
    for layer in model.mask_extractor.modules():
        if isinstance(layer, nn.Linear) and _cast_inputs_to_weights not in _pre_hooks(layer):
            layer.register_forward_pre_hook(_cast_inputs_to_weights)


def _pre_hooks(module: nn.Module) -> list:
    return list(module._forward_pre_hooks.values())


def enable_checkpointing(llm: nn.Module) -> None:
    kwargs = {"use_reentrant": False}
    if hasattr(llm, "activation_checkpointing_enable"):
        llm.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # transformers releases before the rename
        llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def prepare_model(model: nn.Module, cfg: TrainConfig) -> dict[str, tuple[int, int]]:
    """Quantise / add LoRA as asked, set the stage's trainable set, dtypes and checkpointing."""
    dtype = compute_dtype(cfg)
    model.llm.config.use_cache = False
    if cfg.gradient_checkpointing:
        enable_checkpointing(model.llm)
    if cfg.lora:
        if cfg.bits != 16:
            quantize_llm(model, cfg.bits, dtype)
        add_lora(model, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout)
    summary = apply_stage(model, cfg.stage, lora=cfg.lora)
    if cfg.bits == 16:
        set_dtypes(model, dtype)
    return summary


def build_dataset(cfg: TrainConfig, model, tokenizer, sources) -> OspreyDataset:
    settings = EncodeSettings(
        num_image_tokens=model.num_image_tokens,
        mask_token_id=model.config.mask_token_id,
        pos_token_id=model.config.pos_token_id,
        template=training_template(tokenizer, cfg.template),
        max_length=cfg.model_max_length,
        image_size=model.config.vision.image_size,
    )
    return OspreyDataset(sources, tokenizer, settings, seed=cfg.seed)


def resume_point(cfg: TrainConfig) -> str | None:
    if cfg.resume_from_checkpoint in (None, ""):
        return None
    if cfg.resume_from_checkpoint == "auto":
        return latest_checkpoint(cfg.output_dir)
    if not Path(cfg.resume_from_checkpoint).is_dir():
        raise ConfigError(f"resume_from_checkpoint {cfg.resume_from_checkpoint} is not a directory")
    return cfg.resume_from_checkpoint


# ---------------------------------------------------------------------------------------------
# reporting and the end of a run


def _print_setup(summary: dict, dataset: OspreyDataset, resume: str | None) -> None:
    for part, (trainable, total) in summary.items():
        print(f"[osprey.train] {part:15s} {trainable:>13,d} / {total:>13,d} parameters train")
    for rep in dataset.report():
        print(
            f"[osprey.train] data {rep['type']:26s} {rep['records']:>8,d} records; "
            f"rejected {rep['rejected'] or 0}; skipped {rep['skipped'] or 0}"
        )
    if resume:
        print(f"[osprey.train] resuming from {resume}")


def finish(trainer: OspreyTrainer, model, tokenizer, cfg: TrainConfig, dataset) -> Path:
    """Merge LoRA, save the model in our format (+ original format / projector when asked), the
    config and the data report."""
    out = Path(cfg.output_dir)
    model.llm.config.use_cache = True
    merge_lora(model)
    trainer.save_model(str(out))
    trainer.save_state()
    events = gather_events(trainer.data_events)
    if not trainer.is_world_process_zero():
        return out
    cfg.save(out / "train_config.json")
    report = {"sources": dataset.report(), "events": dict(sorted(events.items()))}
    (out / "data_report.json").write_text(json.dumps(report, indent=2) + "\n")
    if cfg.stage == 1:
        save_projector(model, out / "mm_projector.bin")
    if cfg.export_original:
        from osprey.model.checkpoint import export_original, load_osprey

        saved, tok = load_osprey(out)
        export_original(saved, tok, out / "original")
    print(f"[osprey.train] saved to {out}; data events: {json.dumps(report['events'])}")
    return out


def run(cfg: TrainConfig) -> Path:
    """Train as ``cfg`` says; returns the output directory."""
    from transformers import set_seed

    check_config(cfg)
    args = training_arguments(cfg)  # resolves DeepSpeed first: a missing install fails here
    set_seed(cfg.seed)
    sources = build_sources(
        cfg.datasets, cfg.data_root
    )  # missing data fails before the model loads
    model, tokenizer = initial_model(cfg, resolve_attention(cfg.attn_implementation))
    dataset = build_dataset(cfg, model, tokenizer, sources)
    summary = prepare_model(model, cfg)
    resume = resume_point(cfg)
    if args.process_index == 0:
        _print_setup(summary, dataset, resume)
    trainer = OspreyTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=Collator(pad_token_id=tokenizer.pad_token_id),
        callbacks=[EpochToDataset(dataset)],
        tokenizer=tokenizer,
    )
    trainer.train(resume_from_checkpoint=resume)
    return finish(trainer, model, tokenizer, cfg, dataset)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE + describe_fields())
        return 0
    try:
        cfg = parse_args(argv)
        run(cfg)
    except (
        ConfigError,
        EngineError,
        InitError,
        LoraSetupError,
        StageError,
        SpecError,
        CheckpointError,
        TokenizerError,
        FileNotFoundError,
    ) as exc:
        print(f"osprey.train: error: {exc}", file=sys.stderr)
        return 2
    return 0
