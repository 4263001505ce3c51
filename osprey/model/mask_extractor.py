"""Mask-aware visual extractor: one mask token and one position token per region."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from osprey.model.config import ExtractorConfig

# Regions are pooled at most this many at a time, and at most this many bytes of
# full-resolution float masks at once (one mask at a time for the largest photos).
_CHUNK = 16
_CHUNK_BYTES = 256 * 2**20


def chunk_size(size: Sequence[int]) -> int:
    """Regions pooled together for masks of ``size`` (H, W): up to ``_CHUNK``, fewer when their
    float32 copies would pass ``_CHUNK_BYTES``."""
    pixels = int(size[0]) * int(size[1])
    return max(1, min(_CHUNK, _CHUNK_BYTES // max(1, 4 * pixels)))


def mask_pooling(feat: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Average ``feat`` over each region's cells.

    feat: (C, h, w); masks: (Q, H, W) float {0, 1} at any resolution. The masks are resized to
    (h, w) bilinearly (align_corners=False, no antialiasing) and binarised with ``> 0``, so any cell
    touched by a soft edge counts; a region that vanishes pools to zeros. Returns (Q, C).
    """
    if masks.shape[-2:] != feat.shape[-2:]:
        masks = F.interpolate(
            masks[None], size=feat.shape[-2:], mode="bilinear", align_corners=False
        )[0]
    binary = (masks > 0).to(masks.dtype)
    denom = binary.sum(dim=(-1, -2), keepdim=True) + 1e-8
    return torch.einsum("chw,qhw->qc", feat, binary / denom)


class PositionMLP(nn.Module):
    """Three Linear layers, ReLU after the first two (keys ``layers.{0,1,2}``)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.layers = nn.ModuleList(
            [nn.Linear(in_dim, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, out_dim)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)


class MaskExtractor(nn.Module):
    """``forward(levels, masks) -> (mask_tokens, pos_tokens)``.

    Per level L: mask pooling on the stage map, then Linear(C_L -> embed_dim); the four projections
    are summed and ``feat_linear`` (embed_dim -> out_dim) gives the mask token. The position token
    is the unbinarised mask resized to mask_shape x mask_shape, flattened, through a 3-layer ReLU
    MLP. The whole extractor runs in fp32, whatever the dtype of the stage maps (as the reference).

    Module names match the released weights: ``res2..res5``, ``feat_linear``,
    ``mask_linear.layers.{0,1,2}``.
    """

    def __init__(self, config: ExtractorConfig, in_channels: dict[str, int], out_dim: int):
        super().__init__()
        self.config = config
        self.levels = tuple(config.levels)
        for name in self.levels:
            self.add_module(name, nn.Linear(in_channels[name], config.embed_dim))
        self.feat_linear = nn.Linear(config.embed_dim, out_dim)
        side = config.mask_shape
        self.mask_linear = PositionMLP(side * side, config.embed_dim, out_dim)

    def _mask_tokens(self, levels: dict[str, torch.Tensor], masks: torch.Tensor) -> torch.Tensor:
        """levels: {name: (C, h, w)} for one image; masks: (Q, H, W) float32 -> (Q, out_dim)."""
        fused = None
        for name in self.levels:
            feat = levels[name]
            pooled = mask_pooling(feat.float(), masks)
            # The reference casts each level's projection back to the stage-map dtype before the
            # fp32 sum (a no-op for fp32 maps, a bf16 rounding on GPU); reproduce it.
            proj = getattr(self, name)(pooled).to(feat.dtype).float()
            fused = proj if fused is None else fused + proj
        return self.feat_linear(fused)

    def _pos_tokens(self, masks: torch.Tensor) -> torch.Tensor:
        side = self.config.mask_shape
        small = F.interpolate(masks[None], size=(side, side), mode="bilinear", align_corners=False)[
            0
        ]
        return self.mask_linear(small.reshape(masks.shape[0], side * side))

    def forward(
        self, levels: dict[str, torch.Tensor], masks: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """levels: {name: (B, C, h, w)}; masks: B tensors (Q_b, H_b, W_b), {0, 1} (bool, uint8 or
        float) at each image's original resolution. Returns (mask_tokens, pos_tokens), each
        (sum_b Q_b, out_dim) in fp32, images in order, regions in order within an image."""
        if len(masks) != next(iter(levels.values())).shape[0]:
            raise ValueError(
                f"{len(masks)} mask sets for {next(iter(levels.values())).shape[0]} images"
            )
        mask_out, pos_out = [], []
        for b, image_masks in enumerate(masks):
            per_image = {name: levels[name][b] for name in self.levels}
            step = chunk_size(image_masks.shape[-2:])
            for start in range(0, image_masks.shape[0], step):
                chunk = image_masks[start : start + step].float()
                mask_out.append(self._mask_tokens(per_image, chunk))
                pos_out.append(self._pos_tokens(chunk))
                del chunk  # before the next one is made: one full-size float chunk at a time
        if not mask_out:
            width = self.feat_linear.out_features
            device = self.feat_linear.weight.device
            empty = torch.zeros(0, width, device=device)
            return empty, empty.clone()
        return torch.cat(mask_out), torch.cat(pos_out)
