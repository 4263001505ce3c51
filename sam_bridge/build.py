"""Build SAM models: the released architectures with a safe, strict weight load, and a tiny
random-weight SAM for tests and offline development; plus the device / precision choice.

Models come from segment_anything's own registry and modeling classes. Its builders would call
``torch.load`` on the checkpoint themselves (full pickle); we build with ``checkpoint=None`` and
load the state dict here with ``weights_only=True`` and ``strict=True``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)
from torch import nn

from osprey.core.devices import parse_dtype, resolve_device
from osprey.core.errors import UsageError
from sam_bridge.checkpoints import MODEL_TYPES
from sam_bridge.errors import CheckpointError, SamBridgeError

__all__ = ["build_sam", "build_tiny_sam", "resolve_autocast_dtype", "resolve_device"]

# SAM's input geometry (fixed by the released weights; the tiny model keeps it so tests see the
# real 1024-pixel frame and the real 256x256 low-resolution logits).
IMAGE_SIZE = 1024
PATCH_SIZE = 16
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)

# ---------------------------------------------------------------------------------------------
# precision (devices are resolved by osprey.core.devices.resolve_device, re-exported here)


def resolve_autocast_dtype(
    dtype: str | torch.dtype | None, device: torch.device
) -> torch.dtype | None:
    """The autocast dtype to run SAM under, or None for plain float32 (weights stay float32).

    ``None`` / ``"auto"``: bfloat16 on a CUDA device that supports it, float32 elsewhere (CPU
    bfloat16 halves the encoder time but is opt-in). bfloat16 is allowed on CPU and CUDA, float16 on
    CUDA only; MPS runs float32. Either spelling of a dtype works (``bf16`` / ``bfloat16``, ...).
    """
    try:
        resolved = parse_dtype(dtype)
    except UsageError as exc:
        raise SamBridgeError(
            f"unsupported dtype {dtype!r}; use float32, bfloat16 or float16"
        ) from exc
    if resolved is None:
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else None
    if resolved not in (torch.float32, torch.bfloat16, torch.float16):
        raise SamBridgeError(f"unsupported dtype {dtype!r}; use float32, bfloat16 or float16")
    if resolved == torch.float32:
        return None
    allowed = ("cpu", "cuda") if resolved == torch.bfloat16 else ("cuda",)
    if device.type not in allowed:
        raise SamBridgeError(f"{resolved} autocast is not supported on {device.type}; use float32")
    return resolved


def store_matmul_weights(module: nn.Module, dtype: torch.dtype) -> int:
    """Store the weights and biases of every Linear and Conv2d of ``module`` in ``dtype``.

    Under ``torch.autocast(dtype=dtype)`` these layers compute in ``dtype`` anyway: autocast casts
    their float32 parameters on each call and keeps the copies for the whole autocast region. So
    the outputs stay bit-identical, while the parameters take half the memory and the cast copies
    disappear (ViT-H's encoder: 2.5 GB of float32 weights plus 1.3 GB of copies -> 1.3 GB).
    Norms, position embeddings and relative-position tables stay float32. The module then needs
    autocast to run. Returns the number of layers converted."""
    count = 0
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            layer.to(dtype)
            count += 1
    return count


# ---------------------------------------------------------------------------------------------
# builders


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refusals, truncated zip archives, ...
        raise CheckpointError(f"cannot read {path} as a SAM state dict: {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a plain state dict of tensors")
    return state


def load_weights(sam: Sam, path: str | Path, model_type: str = "?") -> Sam:
    """Load a state dict into ``sam`` strictly; explain missing, unexpected or mis-shaped keys."""
    state = _read_state_dict(Path(path))
    own = sam.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path} does not fit SAM {model_type}: {len(missing)} missing keys {missing[:3]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:3]}, {len(wrong)} shape mismatches "
            f"{wrong[:3]}. Is it the checkpoint of another model type?"
        )
    sam.load_state_dict(state, strict=True)
    return sam


def build_sam(model_type: str, checkpoint: str | Path | None = None) -> Sam:
    """The released SAM architecture ``model_type`` (vit_b / vit_l / vit_h), in eval mode on CPU.

    With ``checkpoint=None`` the weights are random (benchmarks, shape checks).
    """
    if model_type not in MODEL_TYPES:
        raise SamBridgeError(
            f"unknown SAM model type {model_type!r}; choose from {list(MODEL_TYPES)}"
        )
    sam = sam_model_registry[model_type](checkpoint=None)
    if checkpoint is not None:
        load_weights(sam, checkpoint, model_type)
    return sam.eval()


def build_tiny_sam(seed: int = 0, width: int = 32, depth: int = 2) -> Sam:
    """A tiny random-weight SAM (untrained: its masks are meaningless) with the real geometry.

    Same structure as segment_anything's builder, toy widths: a ``depth``-block ViT of ``width``
    channels on 16-pixel patches of the 1024-pixel input, prompt embeddings of ``width``, one
    two-way transformer layer. Output shapes match the released models: 64x64 embeddings and
    256x256 low-resolution logits. Deterministic for a given ``seed``.
    """
    grid = IMAGE_SIZE // PATCH_SIZE
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        sam = Sam(
            image_encoder=ImageEncoderViT(
                img_size=IMAGE_SIZE,
                patch_size=PATCH_SIZE,
                embed_dim=width,
                depth=depth,
                num_heads=2,
                mlp_ratio=2,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                qkv_bias=True,
                use_rel_pos=True,
                window_size=14,
                global_attn_indexes=(),
                out_chans=width,
            ),
            prompt_encoder=PromptEncoder(
                embed_dim=width,
                image_embedding_size=(grid, grid),
                input_image_size=(IMAGE_SIZE, IMAGE_SIZE),
                mask_in_chans=8,
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(
                    depth=1, embedding_dim=width, mlp_dim=2 * width, num_heads=2
                ),
                transformer_dim=width,
                iou_head_depth=2,
                iou_head_hidden_dim=width,
            ),
            pixel_mean=list(PIXEL_MEAN),
            pixel_std=list(PIXEL_STD),
        )
    finally:
        torch.random.set_rng_state(generator_state)
    return sam.eval()
