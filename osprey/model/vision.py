"""Frozen CLIP ConvNeXt image tower with multi-level feature taps (res2..res5)."""

from __future__ import annotations

import torch
from torch import nn

from osprey.model.config import VisionConfig


def _build_timm_model(config: VisionConfig) -> nn.Module:
    """open_clip's TimmModel: ``trunk`` (timm ConvNeXt) + ``head`` (open_clip's MLP projection).

    The head is unused by Osprey but present in the released weights, so it is built to keep the
    key set exact.
    """
    from open_clip.timm_model import TimmModel  # deferred: heavy import

    return TimmModel(
        config.timm_model,
        embed_dim=config.embed_dim,
        image_size=config.image_size,
        pool="",
        proj=config.head_proj,
        proj_bias=False,
        drop=0.0,
        drop_path=None,  # inference-only tower: stochastic depth off
        pretrained=False,
    )


class ConvNextVisionTower(nn.Module):
    """``forward(pixels) -> {"res2": ..., "res5": ...}``.

    pixels: (B, 3, S, S) normalised images. Outputs are the four stage maps of the ConvNeXt trunk,
    strides 4/8/16/32: at S = 512 and ConvNeXt-L, res2 (B, 192, 128, 128), res3 (B, 384, 64, 64),
    res4 (B, 768, 32, 32), res5 (B, 1536, 16, 16). The tower is frozen and always in eval mode.
    """

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        self.visual = _build_timm_model(config)
        info = self.visual.trunk.feature_info
        self.level_names = tuple(f"res{i + 2}" for i in range(len(info)))
        self.channels = {name: int(f["num_chs"]) for name, f in zip(self.level_names, info)}
        self.strides = {name: int(f["reduction"]) for name, f in zip(self.level_names, info)}
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> ConvNextVisionTower:
        """The tower never trains (no dropout/drop-path), whatever the parent module does."""
        return super().train(False)

    def num_tokens(self, level: str) -> int:
        """Number of spatial positions of ``level`` at the configured image size."""
        side = self.config.image_size // self.strides[level]
        return side * side

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        trunk = self.visual.trunk
        x = trunk.stem(pixels)
        feats = {}
        for name, stage in zip(self.level_names, trunk.stages):
            x = stage(x)
            feats[name] = x
        return feats
