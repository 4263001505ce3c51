"""One segmenter interface, two families: what :class:`~sam_bridge.predictor.SamBridge` needs
from a SAM model, and SAM 1's implementation of it (segment-anything).

A family owns its model's geometry (how an image becomes the encoder's input, how a click maps
into the 1024-pixel frame, how low-resolution logits become full-size masks), its image encoder
(``encode``: one image -> an :class:`~sam_bridge.cache.Embedding`) and its prompt decoder
(``decode``: an embedding + a checked prompt -> masks, scores, logits). The bridge around it
owns everything else, identical for both families: the embedding cache, the locks, prompt
checking, candidates, refinement, precision. SAM 2.1's family is
:class:`sam_bridge.sam2_family.Sam2Family`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from segment_anything import SamPredictor
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide
from torch import nn

from osprey.core.images import ImageHandle
from sam_bridge.cache import Embedding
from sam_bridge.decoder import PromptDecoder
from sam_bridge.errors import SamBridgeError
from sam_bridge.onnx_export import PageEmbedding, cached_decoder
from sam_bridge.prompts import Prompt

Decoded = tuple[
    np.ndarray, np.ndarray, np.ndarray
]  # masks (C, H, W), scores (C,), logits (C, 256, 256)


class Family(Protocol):
    """What the bridge needs of a SAM model (see the module docstring)."""

    name: str  # "sam1" / "sam2"
    model: nn.Module
    encoder: nn.Module  # the image encoder (its matmul weights may be stored in bf16)
    logits_size: tuple[int, int]  # (h, w) of the low-resolution logits: (256, 256)
    points_per_batch: int  # grid points decoded together by "segment everything"

    def check_size(self, height: int, width: int) -> None:
        """SamBridgeError for an image size the family cannot take."""

    def encode(self, rgb: np.ndarray | ImageHandle) -> Embedding:
        """One image encoder run on (H, W, 3) uint8 RGB, or a handle's image (read without a
        needless full-size copy), the caller holding the encode lock."""

    def decode(
        self, emb: Embedding, prompt: Prompt, mask_input: np.ndarray | None, multimask: bool,
        mask_size: tuple[int, int] | None = None,
    ) -> Decoded:  # fmt: skip
        """masks bool (C, H, W) (or ``mask_size``), scores float32 (C,), logits float32 (C, h, w)."""

    def page_embedding(self, emb: Embedding) -> PageEmbedding:
        """What the page's decoder needs of an image: its maps in float16 and its geometry."""

    def page_decoder(self, model_type: str, directory: Path | None, quantize: bool | None) -> Path:
        """The prompt encoder + mask decoder as an ONNX file for the page, cached in ``directory``
        (SamBridgeError, or any exporter error, where it cannot be built)."""


# ---------------------------------------------------------------------------------------------
# SAM 1


class Sam1Family:
    """segment-anything's SAM (ViT-B/L/H, or the tiny one): ResizeLongestSide geometry, the image
    encoder through ``SamPredictor`` and the prompt decoder of :mod:`sam_bridge.decoder`."""

    name = "sam1"
    points_per_batch = 64

    def __init__(self, model: Sam, device: torch.device):
        self.model = model
        self.encoder = model.image_encoder
        self.device = device
        self.predictor = SamPredictor(model)
        self.transform: ResizeLongestSide = self.predictor.transform
        self.decoder = PromptDecoder(model, self.transform, device)
        self.logits_size = tuple(model.prompt_encoder.mask_input_size)

    def check_size(self, height: int, width: int) -> None:
        size = self.encoder.img_size
        if min(ResizeLongestSide.get_preprocess_shape(height, width, size)) < 1:
            raise SamBridgeError(
                f"image is {width}x{height}: scaled to {size} pixels on the long side its short "
                f"side would vanish; pad or crop it to a less extreme aspect ratio"
            )

    def encode(self, rgb: np.ndarray | ImageHandle) -> Embedding:
        p = self.predictor
        if isinstance(rgb, ImageHandle):
            # SAM's ResizeLongestSide on the handle's PIL image itself (PIL bilinear to the long
            # side, as segment-anything resizes an array), then SamPredictor.set_image's steps:
            # the same pixels, without a full-size array copy (tested)
            h, w = self.transform.get_preprocess_shape(
                rgb.height, rgb.width, self.transform.target_length
            )
            small = np.array(rgb.pil.resize((w, h), Image.BILINEAR))  # writable, as torch wants
            pixels = torch.as_tensor(small, device=p.device).permute(2, 0, 1).contiguous()[None]
            p.set_torch_image(pixels, (rgb.height, rgb.width))
        else:
            p.set_image(rgb)
        emb = Embedding(p.features.float(), tuple(p.original_size), tuple(p.input_size))
        p.reset_image()
        return emb

    def decode(self, emb: Embedding, prompt: Prompt, mask_input: np.ndarray | None,
               multimask: bool, mask_size: tuple[int, int] | None = None) -> Decoded:  # fmt: skip
        return self.decoder(emb, prompt, mask_input, multimask, mask_size)

    def page_embedding(self, emb: Embedding) -> PageEmbedding:
        features = emb.features.to(torch.float16).cpu().numpy()
        return PageEmbedding(features, emb.original_size, emb.input_size)

    def page_decoder(self, model_type: str, directory: Path | None, quantize: bool | None) -> Path:
        return cached_decoder(self.model, model_type, directory, quantize=quantize)
