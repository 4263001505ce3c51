"""Which parameters train in each stage: the only place that decides it.

=====  ==========================================  ==========================================
stage  trains                                      frozen
=====  ==========================================  ==========================================
1      projector (image-text alignment)            vision tower, mask extractor, LLM
2      mask extractor (mask-text alignment)        vision tower, projector, LLM
3      LLM + projector + mask extractor            vision tower
=====  ==========================================  ==========================================

The vision tower never trains (it is also always in eval mode). With LoRA (stage 3 only) the LLM's
own weights stay frozen and only its adapters train, next to the projector and the extractor.
"""

from __future__ import annotations

from torch import nn

from osprey.core.errors import OspreyError

PARTS = ("vision", "projector", "mask_extractor", "llm")
TRAINABLE: dict[int, tuple[str, ...]] = {
    1: ("projector",),
    2: ("mask_extractor",),
    3: ("projector", "mask_extractor", "llm"),
}


class StageError(OspreyError, ValueError):
    """An unknown stage, or an option the stage cannot have."""


def trainable_parts(stage: int) -> tuple[str, ...]:
    if stage not in TRAINABLE:
        raise StageError(f"unknown stage {stage}; stages are {sorted(TRAINABLE)}")
    return TRAINABLE[stage]


def is_lora_parameter(name: str) -> bool:
    return "lora_" in name


def apply_stage(model: nn.Module, stage: int, *, lora: bool = False) -> dict[str, tuple[int, int]]:
    """Set ``requires_grad`` on every parameter of ``model`` (an OspreyModel) for ``stage``.
    Returns :func:`summary`. ``lora=True`` expects adapters already injected into ``model.llm``."""
    parts = trainable_parts(stage)
    if lora and "llm" not in parts:
        raise StageError(f"LoRA adapts the LLM, which stage {stage} keeps frozen")
    model.requires_grad_(False)
    for part in parts:
        module = getattr(model, part)
        if part == "llm" and lora:
            names = [n for n, p in module.named_parameters() if is_lora_parameter(n)]
            if not names:
                raise StageError("lora=True but the LLM holds no LoRA parameters")
            for name, param in module.named_parameters():
                param.requires_grad_(is_lora_parameter(name))
        else:
            module.requires_grad_(True)
    return summary(model)


def summary(model: nn.Module) -> dict[str, tuple[int, int]]:
    """{part: (trainable parameters, all parameters)} for the four parts of an OspreyModel."""
    out = {}
    for part in PARTS:
        params = list(getattr(model, part).parameters())
        out[part] = (
            sum(p.numel() for p in params if p.requires_grad),
            sum(p.numel() for p in params),
        )
    return out
