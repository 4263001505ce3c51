"""SAM 2.1's family (transformers' :class:`~transformers.Sam2Model`): its geometry, image encoder
and prompt decoder, computing what Meta's ``SAM2ImagePredictor`` computes.

Geometry (Meta's ``SAM2Transforms``, the one owner here): the image, as float in [0, 1], is
resized to 1024x1024 whatever its aspect ratio (bilinear, antialiased), then normalised with
ImageNet's mean and std; a point (x, y) of a W x H image goes to (x * 1024 / W, y * 1024 / H);
low-resolution logits (256x256) are resized straight to the wanted size (bilinear) and thresholded
at 0. The encoder's output is three maps: the 64x64 image embedding (the no-memory embedding
added, as for a single image) and two high-resolution maps, already projected for the decoder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from transformers import Sam2Model

from osprey.core.images import ImageHandle
from sam_bridge.cache import Embedding
from sam_bridge.family import Decoded
from sam_bridge.onnx_export import PageEmbedding
from sam_bridge.prompts import Prompt
from sam_bridge.sam2_onnx import LOGIT_CLAMP, cached_decoder

IMAGE_SIZE = 1024
PIXEL_MEAN = (0.485, 0.456, 0.406)  # ImageNet's, on [0, 1] pixels
PIXEL_STD = (0.229, 0.224, 0.225)
MASK_THRESHOLD = 0.0


# ---------------------------------------------------------------------------------------------
# geometry


class Sam2Frame:
    """Image pixels <-> SAM 2's 1024x1024 frame (every image is stretched to fill it)."""

    def __init__(self, size: int = IMAGE_SIZE):
        self.size = size

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        """(..., 2) (x, y) image pixels of an (H, W) image -> the 1024 frame."""
        h, w = original_size
        return np.asarray(coords, dtype=np.float64) * np.array([self.size / w, self.size / h])

    def apply_boxes(self, boxes: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        """(B, 4) (x0, y0, x1, y1) -> the 1024 frame."""
        return self.apply_coords(np.asarray(boxes).reshape(-1, 2, 2), original_size).reshape(-1, 4)

    def pixels(self, rgb: np.ndarray, device: torch.device) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 3, 1024, 1024) float32 normalised pixels on ``device``. One
        channel at a time (each is resized on its own either way): a 64 MP photo needs one
        channel's floats (256 MB), not three."""
        channels = []
        for c in range(3):
            x = (
                torch.tensor(rgb[..., c], device=device).float() / 255
            )  # a copy: rgb may be read-only
            channels.append(
                F.interpolate(x[None, None], (self.size, self.size), mode="bilinear",
                              align_corners=False, antialias=True)[0, 0]
            )  # fmt: skip
            del x
        x = torch.stack(channels)
        mean = torch.tensor(PIXEL_MEAN, device=device)[:, None, None]
        std = torch.tensor(PIXEL_STD, device=device)[:, None, None]
        return ((x - mean) / std)[None]


# ---------------------------------------------------------------------------------------------
# the family


class Sam2Family:
    """SAM 2.1 through transformers: ``encode`` runs the Hiera encoder + FPN neck once per image,
    ``decode`` the prompt encoder and mask decoder on the cached maps (tens of ms on a CPU)."""

    name = "sam2"
    # The decoder repeats the image's maps for every grid point of a batch (the 256x256 map: 8
    # MiB per point at full size), so "segment everything" decodes fewer points at a time.
    points_per_batch = 16
    mask_threshold = MASK_THRESHOLD

    def __init__(self, model: Sam2Model, device: torch.device):
        self.model = model
        self.encoder = model.vision_encoder
        self.device = device
        self.transform = Sam2Frame(model.config.prompt_encoder_config.image_size)
        self.logits_size = tuple(model.prompt_encoder.mask_input_size)
        self._image_pe: torch.Tensor | None = None

    def check_size(self, height: int, width: int) -> None:
        """Any size: SAM 2 stretches every image to its square frame."""

    def dense_pe(self) -> torch.Tensor:
        """The positional encoding of the 64x64 embedding grid, (1, C, 64, 64): it depends on
        the weights only, so it is computed once."""
        if self._image_pe is None:
            self._image_pe = self.model.get_image_wide_positional_embeddings()
        return self._image_pe

    def encode(self, rgb: np.ndarray | ImageHandle) -> Embedding:
        if isinstance(rgb, ImageHandle):
            rgb = rgb.rgb  # SAM 2 resizes float pixels (antialiased): from the array
        pixels = self.transform.pixels(rgb, self.device)
        s0, s1, embedding = self.model.get_image_embeddings(pixels)
        # (1, C/8, 256, 256), (1, C/4, 128, 128), (1, C, 64, 64)
        size = self.transform.size
        return Embedding(
            embedding.float(), tuple(rgb.shape[:2]), (size, size), (s0.float(), s1.float())
        )

    def prompt_tensors(
        self, emb: Embedding, prompt: Prompt, mask_input: np.ndarray | None
    ) -> dict[str, torch.Tensor | None]:
        """The prompt in the 1024 frame as the prompt encoder's inputs (one image, one prompt)."""
        points = labels = boxes = masks = None
        if prompt.points is not None:
            xy = self.transform.apply_coords(prompt.points, emb.original_size)
            points = torch.as_tensor(xy, dtype=torch.float, device=self.device)[None, None]
            labels = torch.as_tensor(prompt.labels, dtype=torch.int, device=self.device)[None, None]
        if prompt.box is not None:  # (1, 1, 4)
            xyxy = self.transform.apply_boxes(prompt.box[None], emb.original_size)
            boxes = torch.as_tensor(xyxy, dtype=torch.float, device=self.device)[None]
        if mask_input is not None:  # (1, 1, 256, 256)
            masks = torch.as_tensor(mask_input, dtype=torch.float, device=self.device)[None, None]
        return {"input_points": points, "input_labels": labels, "input_boxes": boxes,
                "input_masks": masks}  # fmt: skip

    def decode_logits(
        self, emb: Embedding, prompts: dict[str, torch.Tensor | None], multimask: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder -> low-resolution logits (P, C, 256, 256) and predicted
        IoUs (P, C), for P prompts of one image (the point batch)."""
        sparse, dense = self.model.prompt_encoder(**prompts)
        low, scores, _, _ = self.model.mask_decoder(
            image_embeddings=emb.features,
            image_positional_embeddings=self.dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            high_resolution_features=list(emb.high_res),
        )  # (1, P, C, 256, 256), (1, P, C)
        return low[0], scores[0]

    def upscale(self, low: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(P, C, 256, 256) logits -> (P, C, h, w) logits at ``size``."""
        return F.interpolate(low, size, mode="bilinear", align_corners=False)

    def page_embedding(self, emb: Embedding) -> PageEmbedding:
        """The embedding and the two high-resolution maps in float16 (8 MiB at full size)."""
        maps = [t.to(torch.float16).cpu().numpy() for t in (emb.features, *emb.high_res)]
        return PageEmbedding(maps[0], emb.original_size, emb.input_size, tuple(maps[1:]))

    def page_decoder(self, model_type: str, directory: Path | None, quantize: bool | None) -> Path:
        """:func:`sam_bridge.sam2_onnx.cached_decoder` (exported on the first call)."""
        return cached_decoder(self.model, model_type, directory, quantize=quantize)

    def decode(self, emb: Embedding, prompt: Prompt, mask_input: np.ndarray | None,
               multimask: bool, mask_size: tuple[int, int] | None = None) -> Decoded:  # fmt: skip
        low, scores = self.decode_logits(
            emb, self.prompt_tensors(emb, prompt, mask_input), multimask
        )
        masks = self.upscale(low, mask_size or emb.original_size)[0] > MASK_THRESHOLD
        logits = low[0].clamp(-LOGIT_CLAMP, LOGIT_CLAMP)
        return masks.cpu().numpy(), scores[0].float().cpu().numpy(), logits.float().cpu().numpy()
