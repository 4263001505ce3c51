"""SAM's prompt encoder, mask decoder and mask upscaling on a cached image embedding: what every
click costs once the image is encoded (tens of ms on a CPU, a few on a GPU).

The same computation as ``SamPredictor.predict_torch``, but with the embedding and its geometry
passed in (so entries of the embedding cache can be used in any order) and the positional
encoding of the embedding grid computed once instead of on every click.
"""

from __future__ import annotations

import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from sam_bridge.cache import Embedding
from sam_bridge.prompts import Prompt


class PromptDecoder:
    """Prompt (points, box, previous logits) + embedding -> masks, scores, low-res logits.
    Not locked by itself: the bridge holds its lock around every call."""

    def __init__(self, model: Sam, transform: ResizeLongestSide, device: torch.device):
        self.model = model
        self.transform = transform
        self.device = device
        self._image_pe: torch.Tensor | None = None

    def dense_pe(self) -> torch.Tensor:
        """The prompt encoder's positional encoding of the 64x64 embedding grid, (1, C, 64, 64).
        It depends on the model only; ``SamPredictor.predict_torch`` recomputes it on every call
        (tens of ms on a 2-core CPU)."""
        if self._image_pe is None:
            self._image_pe = self.model.prompt_encoder.get_dense_pe()
        return self._image_pe

    def prompt_tensors(
        self, emb: Embedding, prompt: Prompt, mask_input: np.ndarray | None
    ) -> dict[str, torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None]:
        """The prompt in SAM's 1024 frame (ResizeLongestSide), as the prompt encoder's inputs."""
        points = boxes = masks = None
        if prompt.points is not None:
            xy = self.transform.apply_coords(prompt.points, emb.original_size)
            coords = torch.as_tensor(xy, dtype=torch.float, device=self.device)[None]  # (1, N, 2)
            labels = torch.as_tensor(prompt.labels, dtype=torch.int, device=self.device)[None]
            points = (coords, labels)  # labels (1, N)
        if prompt.box is not None:
            xyxy = self.transform.apply_boxes(prompt.box[None], emb.original_size)
            boxes = torch.as_tensor(xyxy, dtype=torch.float, device=self.device)  # (1, 4)
        if mask_input is not None:
            masks = torch.as_tensor(mask_input, device=self.device)[None, None]  # (1, 1, 256, 256)
        return {"points": points, "boxes": boxes, "masks": masks}

    def __call__(
        self,
        emb: Embedding,
        prompt: Prompt,
        mask_input: np.ndarray | None,
        multimask: bool,
        mask_size: tuple[int, int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> masks bool (C, H, W), scores float32 (C,), low-res logits float32 (C, 256, 256).
        ``mask_size`` (h, w): upscale the masks to that size instead of the image's (H, W)."""  # fmt: skip
        sam = self.model
        sparse, dense = sam.prompt_encoder(**self.prompt_tensors(emb, prompt, mask_input))
        logits, scores = sam.mask_decoder(
            image_embeddings=emb.features,
            image_pe=self.dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )  # (1, C, 256, 256), (1, C)
        size = mask_size or emb.original_size
        masks = sam.postprocess_masks(logits, emb.input_size, size)  # (1, C, H, W)
        masks = masks > sam.mask_threshold
        return (
            masks[0].cpu().numpy(),
            scores[0].float().cpu().numpy(),
            logits[0].float().cpu().numpy(),
        )
