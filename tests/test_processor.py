"""Image preprocessing numbers and mask geometry."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from osprey.core import constants as C
from osprey.inference.preprocess import (
    RegionError,
    prepare_masks,
    preprocess_image,
    resize_shortest_edge,
)


def _reference_pixels(rgb: np.ndarray) -> torch.Tensor:
    """What the original ran: the PIL-based CLIPImageProcessor of transformers 4.x (transformers 5
    calls it CLIPImageProcessorPil; its default CLIPImageProcessor resizes with torch instead) with
    (shortest_edge 512, bicubic, OpenAI-CLIP mean/std,
    no centre crop), then a bilinear squash of the normalised tensor to 512 x 512."""
    from transformers.models.clip.image_processing_pil_clip import (
        CLIPImageProcessorPil as CLIPImageProcessor,
    )

    proc = CLIPImageProcessor(
        do_resize=True,
        size={"shortest_edge": 512},
        resample=3,
        do_center_crop=True,
        crop_size={"height": 512, "width": 512},
        do_rescale=True,
        rescale_factor=0.00392156862745098,
        do_normalize=True,
        image_mean=list(C.CLIP_MEAN),
        image_std=list(C.CLIP_STD),
        do_convert_rgb=True,
    )
    px = proc.preprocess(Image.fromarray(rgb), do_center_crop=False, return_tensors="pt")[
        "pixel_values"
    ][0]
    return F.interpolate(px[None], size=(512, 512), mode="bilinear", align_corners=False)[0]


@pytest.mark.parametrize("shape", [(375, 500), (500, 375), (300, 451), (1024, 700), (512, 512)])
def test_preprocessing_matches_clip_image_processor(voc, shape):
    rgb = np.asarray(Image.fromarray(voc["rgb"]).resize(shape[::-1], Image.BILINEAR))
    ours = preprocess_image(rgb)
    ref = _reference_pixels(rgb)
    assert ours.shape == ref.shape == (3, 512, 512) and ours.dtype == torch.float32
    assert torch.allclose(ours, ref, atol=1e-6, rtol=0), float((ours - ref).abs().max())


def test_short_side_rounding_and_bicubic_antialias(voc):
    rgb = voc["rgb"]  # 375 x 500 (H x W)
    out = resize_shortest_edge(rgb, 512)
    assert out.shape == (512, int(512 * 500 / 375), 3) == (512, 682, 3)
    # PIL's bicubic on uint8, not a tensor resize: compare with PIL directly.
    assert np.array_equal(out, np.asarray(Image.fromarray(rgb).resize((682, 512), Image.BICUBIC)))
    tall = resize_shortest_edge(np.zeros((1000, 300, 3), np.uint8), 512)
    assert tall.shape[:2] == (int(512 * 1000 / 300), 512)


def test_normalisation_constants():
    white = np.full((8, 8, 3), 255, np.uint8)
    px = preprocess_image(white, size=8)
    expected = (1.0 - np.asarray(C.CLIP_MEAN)) / np.asarray(C.CLIP_STD)
    assert np.allclose(px[:, 0, 0].numpy(), expected, atol=1e-6)


def test_prepare_masks_accepts_common_encodings_and_rejects_bad_ones(voc):
    h, w = voc["rgb"].shape[:2]
    m = voc["masks"][0]
    for variant in (m, m.astype(np.uint8), m.astype(np.uint8) * 255, m.astype(np.float32)):
        out = prepare_masks([variant], h, w)
        assert out.dtype == torch.bool and torch.equal(out[0], torch.from_numpy(m))
    assert prepare_masks(voc["masks"][:3], h, w).shape == (3, h, w)
    assert prepare_masks(None, h, w).shape == (0, h, w)
    with pytest.raises(RegionError, match="region 1: mask is 500x374 but the image is 500x375"):
        prepare_masks([m[:-1]], h, w)
    with pytest.raises(RegionError, match="region 2: the mask is empty"):
        prepare_masks([m, np.zeros_like(m)], h, w)
