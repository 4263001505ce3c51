"""Mask extractor numerics, the splice, and the vision tower, on the tiny model and real data."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from osprey.inference.preprocess import prepare_masks, preprocess_image
from osprey.model.config import ExtractorConfig
from osprey.model.mask_extractor import MaskExtractor, mask_pooling
from osprey.model.osprey import SpliceError, scatter_tokens


def _reference_region_tokens(ext: MaskExtractor, levels: dict, mask: np.ndarray):
    """A straightforward float64 computation of one region's two tokens, written independently of
    the module: explicit loops over levels, boolean indexing for the masked mean."""
    m = torch.from_numpy(mask.astype(np.float64))[None, None]
    fused = torch.zeros(ext.config.embed_dim, dtype=torch.float64)
    for name in ext.levels:
        feat = levels[name][0].double()  # (C, h, w)
        small = F.interpolate(m, size=feat.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        cells = small > 0
        pooled = (
            feat[:, cells].mean(dim=1)
            if cells.any()
            else torch.zeros(feat.shape[0], dtype=torch.float64)
        )
        lin = getattr(ext, name)
        fused += lin.weight.double() @ pooled + lin.bias.double()
    mask_tok = ext.feat_linear.weight.double() @ fused + ext.feat_linear.bias.double()
    side = ext.config.mask_shape
    x = F.interpolate(m, size=(side, side), mode="bilinear", align_corners=False).reshape(-1)
    for i, layer in enumerate(ext.mask_linear.layers):
        x = layer.weight.double() @ x + layer.bias.double()
        if i < 2:
            x = x.clamp_min(0)
    return mask_tok, x


def test_extractor_matches_reference_on_real_photo(tiny_parts, voc):
    model, _ = tiny_parts
    feats = model.encode_images(preprocess_image(voc["rgb"])[None])[0]
    masks = prepare_masks(voc["masks"], *voc["rgb"].shape[:2])  # 19 real instance masks
    with torch.no_grad():
        mask_tok, pos_tok = model.mask_extractor(feats.levels, [masks])
    assert mask_tok.shape == pos_tok.shape == (19, model.config.llm.hidden_size)
    assert mask_tok.dtype == torch.float32
    for q in range(19):
        ref_mask, ref_pos = _reference_region_tokens(
            model.mask_extractor, feats.levels, voc["masks"][q]
        )
        assert torch.allclose(mask_tok[q].double(), ref_mask, atol=1e-4, rtol=1e-4)
        assert torch.allclose(pos_tok[q].double(), ref_pos, atol=1e-4, rtol=1e-4)


def test_small_masks_vanish_at_coarse_levels(voc):
    """Bilinear downsampling without antialiasing + '> 0': a tiny region pools to zeros at res5."""
    feat = torch.randn(8, 16, 16)
    mask = torch.zeros(1, 375, 500)
    mask[0, 100:104, 201:205] = 1  # 16 pixels, between res5 sample points
    assert torch.count_nonzero(mask_pooling(feat, mask)) == 0
    big = torch.zeros(1, 375, 500)
    big[0, 100:200, 200:300] = 1
    pooled = mask_pooling(feat, big)
    cells = F.interpolate(big[None], size=(16, 16), mode="bilinear", align_corners=False)[0, 0] > 0
    assert torch.allclose(pooled[0], feat[:, cells].mean(1), atol=1e-6)


def test_extractor_batches_several_images_in_order(tiny_parts, voc):
    model, _ = tiny_parts
    f = model.encode_images(preprocess_image(voc["rgb"])[None])[0]
    levels = {k: torch.cat([v, v.flip(-1)]) for k, v in f.levels.items()}  # two different images
    masks = prepare_masks(voc["masks"][:3], *voc["rgb"].shape[:2])
    with torch.no_grad():
        both, _ = model.mask_extractor(levels, [masks[:2], masks[2:]])
        first, _ = model.mask_extractor({k: v[:1] for k, v in levels.items()}, [masks[:2]])
        second, _ = model.mask_extractor({k: v[1:] for k, v in levels.items()}, [masks[2:]])
    assert torch.allclose(both, torch.cat([first, second]), atol=1e-6)
    with pytest.raises(ValueError, match="2 mask sets for 1 images"):
        model.mask_extractor({k: v[:1] for k, v in levels.items()}, [masks, masks])


def test_extractor_parameter_names_and_shapes_follow_the_release():
    ext = MaskExtractor(
        ExtractorConfig(), {"res2": 192, "res3": 384, "res4": 768, "res5": 1536}, 4096
    )
    shapes = {k: tuple(v.shape) for k, v in ext.state_dict().items()}
    assert shapes["res2.weight"] == (1024, 192) and shapes["res5.weight"] == (1024, 1536)
    assert shapes["feat_linear.weight"] == (4096, 1024)
    assert shapes["mask_linear.layers.0.weight"] == (1024, 12544)
    assert shapes["mask_linear.layers.2.weight"] == (4096, 1024)
    assert len(shapes) == 16
    assert abs(sum(v.numel() for v in ext.state_dict().values()) / 1e6 - 25.2) < 0.1


def test_vision_levels_and_frozen_tower(tiny_parts, voc):
    model, _ = tiny_parts
    feats = model.encode_images(preprocess_image(voc["rgb"])[None])[0]
    assert [tuple(v.shape[-2:]) for v in feats.levels.values()] == [
        (128, 128),
        (64, 64),
        (32, 32),
        (16, 16),
    ]
    assert [v.shape[1] for v in feats.levels.values()] == [
        model.vision.channels[k] for k in feats.levels
    ]
    assert feats.tokens.shape == (1024, model.config.llm.hidden_size)
    assert not any(p.requires_grad for p in model.vision.parameters())
    model.train()
    assert not model.vision.training
    model.eval()


def test_scatter_tokens_counts_and_order():
    embeds = torch.zeros(2, 4, 3)
    slots = torch.tensor([[False, True, False, True], [True, False, False, False]])
    values = torch.arange(9.0).reshape(3, 3)
    out = scatter_tokens(embeds, slots, values, "image-token")
    assert (
        torch.equal(out[0, 1], values[0])
        and torch.equal(out[0, 3], values[1])
        and torch.equal(out[1, 0], values[2])
    )
    with pytest.raises(SpliceError, match="3 image-token positions but 2 image-token embeddings"):
        scatter_tokens(embeds, slots, values[:2], "image-token")
    with pytest.raises(SpliceError, match="3 <mask> positions but 0"):
        scatter_tokens(embeds, slots, None, "<mask>")


def test_embed_never_looks_up_placeholder_ids(tiny_parts):
    model, _ = tiny_parts
    d = model.config.llm.hidden_size
    ids = torch.tensor([[1, -200, -200, 5, 32000, 32001, 7]])
    img, msk, pos = torch.randn(2, d), torch.randn(1, d), torch.randn(1, d)
    out = model.embed(ids, img, msk, pos)
    table = model.llm.get_input_embeddings().weight
    assert (
        torch.equal(out[0, 1:3], img)
        and torch.equal(out[0, 4], msk[0])
        and torch.equal(out[0, 5], pos[0])
    )
    assert torch.equal(out[0, 3], table[5]) and torch.equal(out[0, 6], table[7])
    with pytest.raises(SpliceError, match="followed by <pos>"):
        model.embed(torch.tensor([[1, 32000, 5, 32001]]), None, msk, pos)
