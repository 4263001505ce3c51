"""Build SAM 2.1 models (transformers' :class:`~transformers.Sam2Model`): the four released
sizes from one table, a tiny random-weight one for tests and ``--tiny``, configs read from a
checkpoint folder with a family check, and a strict weight load from safetensors.

The released checkpoints on the Hub (``facebook/sam2.1-hiera-*``) hold transformers'
``Sam2VideoModel`` (``model_type`` ``sam2_video``): the image model's tensors plus the video parts
(memory attention, memory encoder, object pointers). The image model takes its own tensors and
leaves exactly the video model's others; any other tensor, a missing one or a wrong shape is an
error that names them. Never a pickle, never remote code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import (
    Sam2Config,
    Sam2HieraDetConfig,
    Sam2MaskDecoderConfig,
    Sam2Model,
    Sam2PromptEncoderConfig,
    Sam2VideoConfig,
    Sam2VideoModel,
    Sam2VisionConfig,
)

from sam_bridge.errors import CheckpointError, SamBridgeError
from sam_bridge.names import SAM2_SIZES

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
SAM2_MODEL_TYPES = ("sam2", "sam2_video")  # config.json model_type of a SAM 2 checkpoint

# The Hiera image encoders of the released sizes (Meta's configs/sam2.1/*.yaml; the same numbers
# as transformers' conversion script). Every other setting is transformers' default, which is
# SAM 2.1's: FPN neck of 256 channels, prompt encoder and mask decoder of 256, 1024-pixel input.
HIERA: dict[str, dict[str, Any]] = {
    "sam2.1-tiny": {"blocks_per_stage": [1, 2, 7, 2], "global_attention_blocks": [5, 7, 9]},
    "sam2.1-small": {"blocks_per_stage": [1, 2, 11, 2], "global_attention_blocks": [7, 10, 13]},
    "sam2.1-base-plus": {
        "hidden_size": 112,
        "embed_dim_per_stage": [112, 224, 448, 896],
        "num_attention_heads_per_stage": [2, 4, 8, 16],
        "blocks_per_stage": [2, 3, 16, 3],
        "global_attention_blocks": [12, 16, 20],
        "window_positional_embedding_background_size": [14, 14],
    },
    "sam2.1-large": {
        "hidden_size": 144,
        "embed_dim_per_stage": [144, 288, 576, 1152],
        "num_attention_heads_per_stage": [2, 4, 8, 16],
        "blocks_per_stage": [2, 6, 36, 4],
        "global_attention_blocks": [23, 33, 43],
        "window_size_per_stage": [8, 4, 16, 8],
    },
}
# The tiny random model: Hiera with 5 blocks of 16..128 channels, heads of 32 channels; the real
# geometry (1024-pixel input, 64x64 embedding, 256x256 logits, two high-resolution maps).
TINY_WIDTH = 32
TINY_HIERA = {
    "hidden_size": 16,
    "embed_dim_per_stage": [16, 32, 64, 128],
    "num_attention_heads_per_stage": [1, 1, 2, 2],
    "blocks_per_stage": [1, 1, 2, 1],
    "global_attention_blocks": [3],  # never a stage's first block (its query pooling is windowed)
}


# ---------------------------------------------------------------------------------------------
# configs


def _config(
    hiera: dict[str, Any], width: int = 256, mlp_dim: int = 2048, heads: int = 8
) -> Sam2Config:
    backbone = Sam2HieraDetConfig(**hiera)
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=list(reversed(backbone.embed_dim_per_stage)),
        fpn_hidden_size=width,
    )
    return Sam2Config(
        vision_config=vision,
        prompt_encoder_config=Sam2PromptEncoderConfig(hidden_size=width),
        mask_decoder_config=Sam2MaskDecoderConfig(
            hidden_size=width, mlp_dim=mlp_dim, num_attention_heads=heads, iou_head_hidden_dim=width
        ),
    )


def sam2_config(size: str) -> Sam2Config:
    """The architecture of a released SAM 2.1 size (``sam2.1-tiny`` ... ``sam2.1-large``)."""
    if size not in HIERA:
        raise SamBridgeError(f"unknown SAM 2.1 size {size!r}; choose from {list(SAM2_SIZES)}")
    return _config(HIERA[size])


def tiny_sam2_config() -> Sam2Config:
    """The tiny SAM 2's architecture (see :data:`TINY_HIERA`)."""
    return _config(TINY_HIERA, width=TINY_WIDTH, mlp_dim=2 * TINY_WIDTH, heads=2)


def size_of(config: Sam2Config) -> str | None:
    """The released size whose image encoder ``config`` has, or None."""
    backbone = config.vision_config.backbone_config
    for size in HIERA:
        reference = sam2_config(size).vision_config.backbone_config
        fields = (
            "hidden_size",
            "embed_dim_per_stage",
            "blocks_per_stage",
            "global_attention_blocks",
        )
        if all(getattr(backbone, f) == getattr(reference, f) for f in fields):
            return size
    return None


def config_from_dict(data: dict[str, Any], source: str = "config") -> Sam2Config:
    """A SAM 2 image model's config from a ``config.json``'s content: a ``sam2`` config as is, a
    ``sam2_video`` one (the Hub's releases) through its vision / prompt / decoder parts. A config
    of another family is one clear error."""
    kind = data.get("model_type") if isinstance(data, dict) else None
    if kind not in SAM2_MODEL_TYPES:
        hint = (
            " (SAM 1 in transformers' format: use --sam vit_b/vit_l/vit_h with segment-anything's "
            "checkpoints)"
            if kind == "sam"
            else ""
        )
        raise CheckpointError(
            f"{source} is not a SAM 2 checkpoint: its model_type is {kind!r}, expected one of "
            f"{SAM2_MODEL_TYPES}{hint}"
        )
    parts = ("vision_config", "prompt_encoder_config", "mask_decoder_config")
    try:
        if kind == "sam2_video":
            video = Sam2VideoConfig(**{k: v for k, v in data.items() if k in parts})
            return Sam2Config(**{p: getattr(video, p) for p in parts})
        return Sam2Config(**{k: v for k, v in data.items() if k in parts})
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{source} is a broken SAM 2 config: {exc}") from exc


def read_config(path: str | Path) -> Sam2Config:
    """:func:`config_from_dict` of a ``config.json`` file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path} as a JSON config: {exc}") from exc
    return config_from_dict(data, str(path))


# ---------------------------------------------------------------------------------------------
# weights


def expected_tensors(config: Sam2Config) -> tuple[dict[str, torch.Size], set[str]]:
    """(the image model's tensor names -> shapes, the names only the video model has), from
    models built on the meta device (no memory, no time)."""
    with torch.device("meta"):
        image = Sam2Model(config)
        video = Sam2VideoModel(
            Sam2VideoConfig(
                vision_config=config.vision_config,
                prompt_encoder_config=config.prompt_encoder_config,
                mask_decoder_config=config.mask_decoder_config,
            )
        )
    own = {k: v.shape for k, v in image.state_dict().items()}
    return own, set(video.state_dict()) - set(own)


def check_tensors(
    found: dict[str, tuple[int, ...]], config: Sam2Config, source: str = "checkpoint"
) -> list[str]:
    """The names of ``found`` (name -> shape) the image model takes; CheckpointError naming the
    missing, unexpected and mis-shaped tensors when they do not fit ``config`` exactly."""
    own, video_only = expected_tensors(config)
    missing = sorted(set(own) - set(found))
    unexpected = sorted(set(found) - set(own) - video_only)
    wrong = sorted(k for k in set(own) & set(found) if tuple(own[k]) != tuple(found[k]))
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{source} does not fit its SAM 2 config: {len(missing)} missing tensors "
            f"{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}, {len(wrong)} "
            f"mis-shaped {wrong[:3]}. Is it the checkpoint of another model or size?"
        )
    return sorted(own)


def read_weights(path: str | Path, config: Sam2Config) -> dict[str, torch.Tensor]:
    """The image model's tensors from a safetensors file, checked against ``config`` by their
    names and shapes before any is read (:func:`check_tensors`)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
            keep = check_tensors(shapes, config, str(path))
            return {k: f.get_tensor(k) for k in keep}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read {path} as safetensors: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# builders


def build_sam2(config: Sam2Config | str, weights: str | Path | dict | None = None) -> Sam2Model:
    """A SAM 2 image model (a size name or a config), in eval mode on CPU, float32. ``weights``:
    a safetensors file or a state dict in transformers' names (checked strictly); None keeps
    the random initialisation (benchmarks, shape checks)."""
    config = sam2_config(config) if isinstance(config, str) else config
    if weights is None:
        return Sam2Model(config).eval()
    if isinstance(weights, dict):
        shapes = {k: tuple(v.shape) for k, v in weights.items()}
        keep = check_tensors(shapes, config, "the state dict")
        state = {k: weights[k] for k in keep}
    else:
        state = read_weights(weights, config)
    with torch.device("meta"):
        model = Sam2Model(config)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    return model.eval()


def build_tiny_sam2(seed: int = 0) -> Sam2Model:
    """A tiny random-weight SAM 2 (untrained: its masks are meaningless) with the real geometry;
    deterministic for a given ``seed``, without touching the global random state."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = Sam2Model(tiny_sam2_config())
    finally:
        torch.random.set_rng_state(state)
    return model.eval()
