"""Osprey: a vision tower, an image projector, a mask-aware extractor and an LLM, composed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from osprey.core import constants as C
from osprey.core.errors import OspreyError
from osprey.model.config import OspreyConfig
from osprey.model.llm import build_llm
from osprey.model.mask_extractor import MaskExtractor
from osprey.model.projector import build_projector
from osprey.model.vision import ConvNextVisionTower


class SpliceError(OspreyError, ValueError):
    """The placeholders in input_ids do not match the features given for them."""


def scatter_tokens(
    embeds: torch.Tensor, slots: torch.Tensor, values: torch.Tensor | None, what: str
) -> torch.Tensor:
    """Write the rows of ``values`` (N, D) into ``embeds`` (B, T, D) where ``slots`` (B, T) is True,
    in row-major order (batch first, then position). The count is checked."""
    n_slots = int(slots.sum())
    n_values = 0 if values is None else values.shape[0]
    if n_slots != n_values:
        raise SpliceError(
            f"the prompt has {n_slots} {what} positions but {n_values} {what} embeddings were given"
        )
    if n_slots == 0:
        return embeds
    return embeds.masked_scatter(slots.unsqueeze(-1).expand_as(embeds), values.to(embeds.dtype))


@dataclass
class ImageFeatures:
    """What one image contributes, computed once and reused for every region and question.

    levels: {"res2": (1, C, h, w), ...} stage maps for the mask extractor;
    tokens: (N, D) projected image tokens (N = 1024 at 512 px).
    """

    levels: dict[str, torch.Tensor]
    tokens: torch.Tensor

    @staticmethod
    def stack(features: Sequence[ImageFeatures]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        levels = {k: torch.cat([f.levels[k] for f in features]) for k in features[0].levels}
        return levels, torch.cat([f.tokens for f in features])

    def nbytes(self) -> int:
        tensors = [*self.levels.values(), self.tokens]
        return sum(t.numel() * t.element_size() for t in tensors)


class OspreyModel(nn.Module):
    """The Osprey network. Parameter names (``vision.visual.*``, ``projector.*``,
    ``mask_extractor.*``, ``llm.*``) map onto the released checkpoint through
    ``osprey.model.checkpoint.ORIGINAL_PREFIXES``."""

    def __init__(self, config: OspreyConfig, attn_implementation: str = "sdpa"):
        super().__init__()
        self.config = config
        self.vision = ConvNextVisionTower(config.vision)
        level = config.vision.image_token_level
        hidden = config.llm.hidden_size
        self.projector = build_projector(config.projector_type, self.vision.channels[level], hidden)
        self.mask_extractor = MaskExtractor(config.extractor, self.vision.channels, hidden)
        self.llm = build_llm(config.llm, attn_implementation)

    # -- sizes -------------------------------------------------------------------------------

    @property
    def num_image_tokens(self) -> int:
        return self.vision.num_tokens(self.config.vision.image_token_level)

    @property
    def device(self) -> torch.device:
        return self.llm.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.llm.get_input_embeddings().weight.dtype

    # -- image side --------------------------------------------------------------------------

    def encode_images(self, pixels: torch.Tensor) -> list[ImageFeatures]:
        """pixels: (B, 3, S, S) from ``osprey.inference.preprocess.preprocess_image``. One entry per image.
        The tower runs without gradients; the projector keeps them (it trains in stages 1 and 3)."""
        vis_param = next(self.vision.parameters())
        levels = self.vision(pixels.to(device=vis_param.device, dtype=vis_param.dtype))
        grid = levels[self.config.vision.image_token_level]  # (B, C, h, w)
        flat = grid.flatten(2).transpose(1, 2)  # (B, h*w, C)
        proj_param = next(self.projector.parameters())
        tokens = self.projector(flat.to(proj_param.dtype))  # (B, N, D)
        return [
            ImageFeatures(levels={k: v[b : b + 1] for k, v in levels.items()}, tokens=tokens[b])
            for b in range(pixels.shape[0])
        ]

    def region_tokens(
        self, levels: dict[str, torch.Tensor], masks: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask and position tokens, (sum Q, D) each, fp32. ``masks[b]`` is (Q_b, H_b, W_b)."""
        device = self.mask_extractor.feat_linear.weight.device
        return self.mask_extractor(levels, [m.to(device) for m in masks])

    # -- splice ------------------------------------------------------------------------------

    def embed(
        self,
        input_ids: torch.Tensor,
        image_tokens: torch.Tensor | None = None,
        mask_tokens: torch.Tensor | None = None,
        pos_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """input_ids (B, T) with IMAGE_TOKEN_INDEX / <mask> / <pos> placeholders -> (B, T, D).

        Placeholder ids are never looked up in the embedding table (the released table has 32000
        rows and <mask>/<pos> are 32000/32001); their rows come from the features, in order.
        """
        cfg = self.config
        image_slots = input_ids == C.IMAGE_TOKEN_INDEX
        mask_slots = input_ids == cfg.mask_token_id
        pos_slots = input_ids == cfg.pos_token_id
        if not torch.equal(mask_slots[:, :-1], pos_slots[:, 1:]) or bool(pos_slots[:, 0].any()):
            raise SpliceError("every <mask> must be immediately followed by <pos>")
        safe = input_ids.masked_fill(image_slots | mask_slots | pos_slots, cfg.llm.pad_token_id)
        embeds = self.llm.get_input_embeddings()(safe)
        embeds = scatter_tokens(embeds, image_slots, image_tokens, "image-token")
        embeds = scatter_tokens(embeds, mask_slots, mask_tokens, "<mask>")
        return scatter_tokens(embeds, pos_slots, pos_tokens, "<pos>")

    def prepare_inputs(
        self,
        input_ids: torch.Tensor,
        features: Sequence[ImageFeatures],
        masks: Sequence[torch.Tensor],
    ) -> torch.Tensor:
        """Full splice for B sequences: ``features`` and ``masks`` hold one entry per sequence that
        has an image, in batch order (a text-only sequence has neither). Returns inputs_embeds."""
        if len(features) != len(masks):
            raise SpliceError(f"{len(features)} images but {len(masks)} mask sets")
        if not features:
            return self.embed(input_ids)
        levels, tokens = ImageFeatures.stack(features)
        mask_tok, pos_tok = self.region_tokens(levels, masks)
        return self.embed(input_ids, tokens, mask_tok, pos_tok)

    # -- language side -----------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        pixel_values: torch.Tensor | None = None,
        features: Sequence[ImageFeatures] | None = None,
        masks: Sequence[torch.Tensor] = (),
        labels: torch.Tensor | None = None,
        **llm_kwargs,
    ):
        """Teacher-forced pass. Give either ``pixel_values`` (B_img, 3, S, S) or precomputed
        ``features``. Returns transformers' CausalLMOutputWithPast (loss when labels are given)."""
        if features is None:
            features = self.encode_images(pixel_values) if pixel_values is not None else []
        embeds = self.prepare_inputs(input_ids, features, masks)
        return self.llm(
            inputs_embeds=embeds, attention_mask=attention_mask, labels=labels, **llm_kwargs
        )
