"""Image-token projector: vision features (res4) -> LLM embedding space."""

from __future__ import annotations

import re

from torch import nn


def build_projector(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """``linear`` or ``mlp{N}x_gelu`` (N Linear layers with GELU between; the release uses
    ``mlp2x_gelu``: Linear(768, 4096), GELU, Linear(4096, 4096), keys ``.0`` and ``.2``)."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    match = re.fullmatch(r"mlp(\d+)x_gelu", kind)
    if not match:
        raise ValueError(f"unknown projector type {kind!r}; use 'linear' or 'mlp2x_gelu'")
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
    for _ in range(int(match.group(1)) - 1):
        layers += [nn.GELU(), nn.Linear(out_dim, out_dim)]
    return nn.Sequential(*layers)
