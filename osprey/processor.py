"""Image and mask preprocessing: the one owner of Osprey's input geometry.

Images: resize the short side to 512 with PIL's bicubic filter on uint8 (antialiased when
shrinking, as ``CLIPImageProcessor``), rescale by 1/255 in float64, normalise with the OpenAI-CLIP
mean/std in float32, then squash to 512 x 512 with a bilinear resize of the normalised tensor
(no padding, no crop). Masks stay at the image's original resolution as {0, 1}: the extractor
resizes them to each feature level and to the position grid itself, so the stretch keeps them
aligned.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from osprey import constants as C
from osprey.errors import OspreyError
from osprey.images import ImageLike, to_rgb
from osprey.masks import to_bool_mask


class RegionError(OspreyError, ValueError):
    """Region masks do not fit the image (wrong shape, empty, not 2-D)."""


def resize_shortest_edge(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> short side ``size``, long side ``int(size * long / short)``, PIL bicubic."""
    h, w = image.shape[:2]
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) == (w, h):
        return image
    return np.asarray(Image.fromarray(image).resize((new_w, new_h), resample=Image.BICUBIC))


def preprocess_image(image: ImageLike, size: int = C.IMAGE_SIZE) -> torch.Tensor:
    """Any image -> (3, size, size) float32, exactly as the released weights were trained."""
    rgb = resize_shortest_edge(to_rgb(image), size)
    scaled = (rgb.astype(np.float64) * (1.0 / 255.0)).astype(np.float32)
    mean = np.asarray(C.CLIP_MEAN, dtype=np.float32)
    std = np.asarray(C.CLIP_STD, dtype=np.float32)
    normed = (scaled - mean) / std
    tensor = torch.from_numpy(np.ascontiguousarray(normed.transpose(2, 0, 1)))[None]
    return F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)[0]


def prepare_masks(
    masks: Sequence[np.ndarray] | np.ndarray | None, height: int, width: int
) -> torch.Tensor:
    """Region masks -> bool (Q, H, W) tensor in the image's own coordinates.

    Accepts a sequence of 2-D arrays or a (Q, H, W) array; any nonzero pixel is inside (bool,
    {0, 1} and {0, 255} masks all work). Each mask must have the image's shape and at least one
    pixel: Osprey has no notion of an empty region, and a silent all-zero mask would pool to a
    meaningless token.
    """
    if masks is None:
        return torch.zeros(0, height, width, dtype=torch.bool)
    if isinstance(masks, np.ndarray) and masks.ndim == 3:
        masks = list(masks)
    out = []
    for i, mask in enumerate(masks):
        m = to_bool_mask(np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask))
        if m.shape != (height, width):
            raise RegionError(
                f"region {i + 1}: mask is {m.shape[1]}x{m.shape[0]} but the image is {width}x{height}"
            )
        if not m.any():
            raise RegionError(f"region {i + 1}: the mask is empty")
        out.append(torch.from_numpy(m))
    if not out:
        return torch.zeros(0, height, width, dtype=torch.bool)
    return torch.stack(out)
