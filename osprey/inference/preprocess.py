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

from osprey.core import constants as C
from osprey.core.errors import OspreyError
from osprey.core.images import ImageHandle, ImageLike, to_rgb
from osprey.core.masks import RleMasks, to_bool_mask


class RegionError(OspreyError, ValueError):
    """Region masks do not fit the image (wrong shape, empty, not 2-D)."""


def _shortest_edge_size(width: int, height: int, size: int) -> tuple[int, int]:
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def resize_shortest_edge(image: np.ndarray | Image.Image, size: int) -> np.ndarray:
    """(H, W, 3) uint8 (or a PIL RGB image) -> short side ``size``, long side
    ``int(size * long / short)``, PIL bicubic."""
    pil = image if isinstance(image, Image.Image) else None
    width, height = pil.size if pil is not None else (image.shape[1], image.shape[0])
    new_w, new_h = _shortest_edge_size(width, height, size)
    if (new_w, new_h) == (width, height):
        return np.asarray(pil) if pil is not None else image
    pil = pil if pil is not None else Image.fromarray(image)
    return np.asarray(pil.resize((new_w, new_h), resample=Image.BICUBIC))


def preprocess_image(image: ImageLike, size: int = C.IMAGE_SIZE) -> torch.Tensor:
    """Any image -> (3, size, size) float32, exactly as the released weights were trained. A
    handle is resized from its PIL image (no full-size array copy)."""
    source = image.pil if isinstance(image, ImageHandle) else to_rgb(image)
    rgb = resize_shortest_edge(source, size)
    scaled = (rgb.astype(np.float64) * (1.0 / 255.0)).astype(np.float32)
    mean = np.asarray(C.CLIP_MEAN, dtype=np.float32)
    std = np.asarray(C.CLIP_STD, dtype=np.float32)
    normed = (scaled - mean) / std
    tensor = torch.from_numpy(np.ascontiguousarray(normed.transpose(2, 0, 1)))[None]
    return F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)[0]


class MaskStack:
    """Region masks (Q, H, W) that are decoded a few at a time: what :func:`prepare_masks` returns
    for :class:`~osprey.core.masks.RleMasks`. It answers what the model asks of a bool mask tensor
    (``shape``, ``len``, iteration and indexing (one mask: a bool (H, W) tensor), slices,
    ``.to(device)``, ``.float()`` of a slice), so a question about 50 regions of a large photo
    holds the masks the extractor is pooling, not all of them."""

    def __init__(
        self, masks: RleMasks, height: int, width: int, device: torch.device | None = None
    ):
        self.masks, self.height, self.width, self.device = masks, height, width, device

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.masks), self.height, self.width))

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return MaskStack(self.masks[index], self.height, self.width, self.device)
        mask = torch.from_numpy(self.masks[index])
        return mask if self.device is None else mask.to(self.device)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def to(self, device: torch.device | str) -> MaskStack:
        return MaskStack(self.masks, self.height, self.width, torch.device(device))

    def float(self) -> torch.Tensor:
        """(Q, H, W) float32 {0, 1}, decoded now (take a slice first)."""
        out = torch.empty(self.shape, dtype=torch.float32, device=self.device)
        for i in range(len(self)):
            out[i] = self[i]
        return out


Masks = Sequence[np.ndarray] | np.ndarray | RleMasks | None


def prepare_masks(masks: Masks, height: int, width: int) -> torch.Tensor | MaskStack:
    """Region masks -> bool (Q, H, W) in the image's own coordinates: a tensor, or for
    :class:`~osprey.core.masks.RleMasks` a :class:`MaskStack` decoded as it is used (each mask's size
    and area read from its RLE).

    Accepts a sequence of 2-D arrays or a (Q, H, W) array; any nonzero pixel is inside (bool,
    {0, 1} and {0, 255} masks all work). Each mask must have the image's shape and at least one
    pixel: Osprey has no notion of an empty region, and a silent all-zero mask would pool to a
    meaningless token.
    """
    if isinstance(masks, RleMasks):
        for i in range(len(masks)):
            _check_region(i, masks.size(i), masks.area(i) > 0, height, width)
        return MaskStack(masks, height, width)
    if masks is None:
        return torch.zeros(0, height, width, dtype=torch.bool)
    if isinstance(masks, np.ndarray) and masks.ndim == 3:
        masks = list(masks)
    out = []
    for i, mask in enumerate(masks):
        m = to_bool_mask(np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask))
        _check_region(i, m.shape, bool(m.any()), height, width)
        out.append(torch.from_numpy(m))
    if not out:
        return torch.zeros(0, height, width, dtype=torch.bool)
    return torch.stack(out)


def _check_region(i: int, shape: tuple[int, int], any_pixel: bool, height: int, width: int) -> None:
    if tuple(shape) != (height, width):
        raise RegionError(
            f"region {i + 1}: mask is {shape[1]}x{shape[0]} but the image is {width}x{height}"
        )
    if not any_pixel:
        raise RegionError(f"region {i + 1}: the mask is empty")
