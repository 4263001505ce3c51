"""SAM 2.1's video model (transformers' :class:`~transformers.Sam2VideoModel`) built beside an
image model: the image encoder, prompt encoder and mask decoder are the image model's own tensors
(shared, not copied: a tracker costs only the video parts, 8 M parameters at every size), and
the video parts (memory attention, memory encoder, object pointers) come from the same
checkpoint (Meta's releases on the Hub hold them: ``model_type`` ``sam2_video``) or, for the
tiny model, from a seeded random initialisation. Loading is strict: every video tensor by name
and shape, never a pickle.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Sam2Config, Sam2Model, Sam2VideoConfig, Sam2VideoModel

from sam_bridge.errors import CheckpointError

# The tiny tracker: the tiny SAM 2's Hiera, 128 channels wide everywhere else, one memory-attention
# layer instead of 4 over 3 memories instead of 7 (the attention over 64x64 memories is what a
# tracked frame costs on a CPU). The memories are 64 channels at every size (transformers fixes the memory
# attention's key width at 64), and an object pointer must be wider than a memory: it is split
# into memory-wide tokens (256 -> 4 tokens in the releases, 128 -> 2 here; transformers 5.24
# fails when the two widths are equal).
TINY_VIDEO_WIDTH = 128
TINY_VIDEO = {
    "memory_attention_hidden_size": TINY_VIDEO_WIDTH,
    "memory_attention_num_layers": 1,
    "num_maskmem": 3,
    "memory_attention_feed_forward_hidden_size": 2 * TINY_VIDEO_WIDTH,
    "memory_encoder_hidden_size": TINY_VIDEO_WIDTH,
    "mask_downsampler_embed_dim": TINY_VIDEO_WIDTH,
    "memory_fuser_embed_dim": TINY_VIDEO_WIDTH,
    "memory_fuser_intermediate_dim": 2 * TINY_VIDEO_WIDTH,
}
TINY_PRESENT = 4.0  # added to the tiny model's object-score logit
PARTS = ("vision_config", "prompt_encoder_config", "mask_decoder_config")


def video_config(image: Sam2Config) -> Sam2VideoConfig:
    """The video model around an image model's config (Meta's SAM 2.1 video settings: 7
    memories, 16 object pointers; transformers' defaults)."""
    return Sam2VideoConfig(**{p: getattr(image, p) for p in PARTS})


def tiny_video_config() -> Sam2VideoConfig:
    """The tiny tracker's architecture (see :data:`TINY_VIDEO`)."""
    from sam_bridge.sam2_build import TINY_HIERA, _config

    image = _config(TINY_HIERA, width=TINY_VIDEO_WIDTH, mlp_dim=2 * TINY_VIDEO_WIDTH, heads=2)
    return Sam2VideoConfig(**{p: getattr(image, p) for p in PARTS}, **TINY_VIDEO)


def build_tiny_video(seed: int = 0) -> Sam2VideoModel:
    """A tiny random-weight video model (untrained: its masks are meaningless) with the real
    geometry (1024-pixel input, 64x64 memories); deterministic for a ``seed``, without touching
    the global random state. It has image parts of its own (the tiny SAM 2 of the image app is
    32 channels wide, too narrow for the memories)."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = Sam2VideoModel(tiny_video_config()).eval()
    finally:
        torch.random.set_rng_state(state)
    with torch.no_grad():  # random object scores sit near 0: say "present", so masks show
        model.mask_decoder.pred_obj_score_head.proj_out.bias.add_(TINY_PRESENT)
    return model


def _video_only(video: Sam2VideoModel, image: Sam2Model) -> dict[str, torch.Size]:
    own = set(image.state_dict())
    return {k: v.shape for k, v in video.state_dict().items() if k not in own}


def build_video_model(
    image: Sam2Model, weights: str | Path | None = None, seed: int = 0
) -> Sam2VideoModel:
    """A video model whose image parts are ``image``'s tensors (shared). ``weights``: the
    checkpoint's ``model.safetensors`` holding the video parts (checked by name and shape);
    None: random video parts from ``seed`` (benchmarks with random full-size weights)."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        video = Sam2VideoModel(video_config(image.config))
    finally:
        torch.random.set_rng_state(state)
    parts = dict(image.state_dict(keep_vars=True))
    if weights is not None:
        parts.update(_read_video_parts(Path(weights), _video_only(video, image)))
    else:
        parts.update({k: v for k, v in video.state_dict(keep_vars=True).items() if k not in parts})
    video.load_state_dict(parts, strict=True, assign=True)
    return video.to(next(image.parameters()).device).eval()


def _read_video_parts(path: Path, wanted: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
            missing = sorted(set(wanted) - set(found))
            wrong = sorted(k for k in set(wanted) & set(found) if found[k] != tuple(wanted[k]))
            if missing or wrong:
                raise CheckpointError(
                    f"{path.name} does not hold SAM 2's video parts for this model: "
                    f"{len(missing)} missing {missing[:3]}, {len(wrong)} mis-shaped {wrong[:3]} "
                    "(video tracking needs a sam2_video checkpoint, as Meta's releases are)"
                )
            return {k: f.get_tensor(k).float() for k in wanted}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read {path.name} as safetensors: {exc}") from exc
