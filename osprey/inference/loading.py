"""Loading: a registry name or a checkpoint folder in, a model ready to answer out.

Resolve the name (registry or folder), download what is missing (Hugging Face Hub, with progress
bars; offline: one message naming every missing file and the command that fetches them), read the
weights strictly (``osprey/model/checkpoint.py``), place them on the device in the chosen dtype, and
quantise the LLM on request. ``tiny-random`` builds the tiny model in-process. The random
full-size builder the benchmarks use lives here too (speed does not depend on weight values).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from osprey.core.devices import default_dtype, parse_dtype, resolve_device
from osprey.core.errors import UsageError
from osprey.model.config import OspreyConfig
from osprey.model.osprey import OspreyModel

QUANTIZE_CHOICES = ("8bit", "4bit")
QUANTIZE_WORDS = (None, "none", "auto", *QUANTIZE_CHOICES)
TINY = "tiny-random"


def model_dtype(
    device: torch.device, dtype: str | torch.dtype | None, *, large: bool
) -> torch.dtype:
    """The dtype to load in. ``auto`` on the CPU: bf16 for the 7B models (fp32 would need 28 GB),
    fp32 for the tiny one; elsewhere :func:`osprey.core.devices.default_dtype`."""
    chosen = parse_dtype(dtype)
    if chosen is not None:
        return chosen
    if device.type == "cpu" and large:
        return torch.bfloat16
    return default_dtype(device)


def check_quantize(quantize: str | None, compile: bool = False) -> None:
    if quantize not in QUANTIZE_WORDS:
        raise UsageError(f"unknown quantization {quantize!r}; use auto, none or {QUANTIZE_CHOICES}")
    if compile and quantize in QUANTIZE_CHOICES:
        raise UsageError("compile (static decoding) does not combine with quantize")


def resolve_quantize(quantize: str | None, device: torch.device) -> str | None:
    """``none``/None -> None; ``auto`` -> the form that fits the free memory (osprey.inference.hardware_fit)."""
    if quantize in (None, "none"):
        return None
    if quantize == "auto":
        from osprey.inference.hardware_fit import plan

        return plan(device.type, "auto", "vit_b").quantize
    return quantize


def load_pretrained(
    name_or_path: str | Path = "osprey-7b",
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    checkpoints_dir: str | Path | None = None,
    clip_path: str | Path | None = None,
    download: bool = True,
    attn_implementation: str = "sdpa",
    quantize: str | None = None,
) -> tuple[OspreyModel, object]:
    """(model, tokenizer), placed on ``device`` and ready for inference (eval mode).

    ``name_or_path``: a registry name (downloaded into ``checkpoints_dir`` on first use unless
    ``download=False``), ``tiny-random``, or a checkpoint folder in either format.
    ``quantize``: ``"8bit"`` / ``"4bit"`` LLM weights (bitsandbytes).
    """
    from osprey.inference import hub
    from osprey.model.checkpoint import checkpoint_kind, load_osprey

    check_quantize(quantize)
    dev = resolve_device(device)
    if str(name_or_path) == TINY:
        return load_tiny(device=dev, dtype=dtype, quantize=None if quantize == "auto" else quantize)
    quantize = resolve_quantize(quantize, dev)
    dt = model_dtype(dev, dtype, large=True)
    ckpt_dir = Path(checkpoints_dir) if checkpoints_dir else hub.DEFAULT_CHECKPOINTS
    path = hub.resolve_model_dir(name_or_path, ckpt_dir, download=download)
    if clip_path is None and checkpoint_kind(path) == "original" and not embeds_tower(path):
        clip_path = hub.find_clip(ckpt_dir, download=download)
    load_device = "cpu" if quantize else dev  # quantized layers move to the device one by one
    model, tokenizer = load_osprey(
        path, device=load_device, dtype=dt, clip_path=clip_path,
        attn_implementation=attn_implementation,
    )  # fmt: skip
    place_model(model, dev, dt, quantize)
    return model.eval(), tokenizer


def load_tiny(
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    quantize: str | None = None,
) -> tuple[OspreyModel, object]:
    """The tiny random-weight model (answers are meaningless): CPU and fp32 unless told
    otherwise (also on a GPU: it is small, and fp32 keeps its answers comparable)."""
    from osprey.model.tiny import build_tiny

    check_quantize(quantize)
    quantize = None if quantize in ("none", "auto") else quantize
    model, tokenizer = build_tiny(seed)
    dev = torch.device("cpu") if device in (None, "auto") else resolve_device(device)
    place_model(model, dev, parse_dtype(dtype) or torch.float32, quantize)
    return model.eval(), tokenizer


def place_model(
    model: OspreyModel, device: torch.device, dtype: torch.dtype, quantize: str | None = None
) -> OspreyModel:
    """Move to ``device`` in ``dtype`` (mask extractor and rotary frequencies stay fp32), with the
    LLM's decoder layers quantised by bitsandbytes when ``quantize`` is given."""
    from osprey.model.checkpoint import place
    from osprey.model.llm import reset_rotary

    if not quantize:
        return place(model, device, dtype)
    from osprey.inference.quantize import quantize_llm

    model.to(dtype=dtype)
    quantize_llm(model.llm, quantize, device, compute_dtype=dtype)
    model.to(device)  # the rest; quantized weights are already there
    model.mask_extractor.float()
    reset_rotary(model.llm, device)
    return model


def build_random(
    config: OspreyConfig,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.bfloat16,
    *,
    quantize: str | None = None,
    std: float = 0.02,
) -> OspreyModel:
    """A model of ``config``'s architecture with random N(0, ``std``) weights, allocated once
    directly in ``dtype`` (no fp32 copy of a 7B model): for benchmarks, where speed and memory do
    not depend on the weight values."""
    from osprey.model.checkpoint import build_model

    dev = resolve_device(device)
    model = build_model(config, meta=True).to(dtype=dtype)
    model.to_empty(device="cpu" if quantize else dev)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    return place_model(model, dev, dtype, quantize).eval()


def embeds_tower(path: Path) -> bool:
    """Whether a released checkpoint folder carries the CLIP tower (read from its index)."""
    for index in ("pytorch_model.bin.index.json", "model.safetensors.index.json"):
        if (path / index).is_file():
            keys = json.loads((path / index).read_text())["weight_map"]
            return any(k.startswith("model.vision_tower.vision_tower.visual.trunk.") for k in keys)
    return True  # single-file checkpoints: the loader says so clearly if the tower is missing
