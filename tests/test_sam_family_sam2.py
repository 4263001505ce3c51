"""SamBridge over SAM 2.1 (transformers' Sam2Model), on the tiny random SAM 2 and real photos:
every prompt kind, the cache, SAM 2's geometry (images stretched to a 1024 square), candidates,
refinement, "segment everything", precision, and the family switch itself.

SAM 1 is tested the same way in test_sam_bridge.py; both families share the bridge's prompt
checking, candidates and cache, so what is family-specific is tested here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import Sam2Model

from osprey.core.images import load_image
from osprey.core.masks import mask_box
from sam_bridge import SamBridge, SamBridgeError, mask_at
from sam_bridge.names import TINY_SAM2
from sam_bridge.predictor import make_family
from sam_bridge.sam2_build import build_tiny_sam2
from sam_bridge.sam2_family import Sam2Frame
from tests.support.sam import count_encoder, fake_decoder, photo, spy_prompts

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# (H, W): landscape, portrait, tiny and very elongated both ways (SAM 2 stretches them all)
SIZES = [(375, 500), (500, 375), (37, 200), (200, 37), (9, 13)]


@pytest.fixture(scope="module")
def shared() -> SamBridge:
    """One tiny SAM 2 for the tests that neither spy nor fake (its cache spares encoder runs)."""
    return SamBridge.tiny(family="sam2")


@pytest.fixture
def bridge() -> SamBridge:
    return SamBridge.tiny(family="sam2")


def to_image(coords: np.ndarray, height: int, width: int) -> np.ndarray:
    """SAM 2's 1024 frame -> image pixels (the inverse of its stretch)."""
    return coords * np.array([width / 1024, height / 1024])


# ---------------------------------------------------------------------------------------------
# the family


def test_the_tiny_sam2_has_the_real_geometry_and_is_deterministic(voc):
    bridge = SamBridge.tiny(family="sam2", seed=3)
    assert bridge.family.name == "sam2" and bridge.model_type == TINY_SAM2 and bridge.untrained
    assert isinstance(bridge.model, Sam2Model) and bridge.logits_size == (256, 256)
    key = bridge.set_image(voc["rgb"])
    emb = bridge._cached(key)
    assert tuple(emb.features.shape) == (1, 32, 64, 64)  # the tiny width; 256 for the real ones
    assert [tuple(t.shape) for t in emb.high_res] == [(1, 4, 256, 256), (1, 8, 128, 128)]
    assert emb.original_size == (375, 500) and emb.input_size == (1024, 1024)
    assert emb.nbytes == 4 * (32 * 64 * 64 + 4 * 256 * 256 + 8 * 128 * 128)
    again = SamBridge.tiny(family="sam2", seed=3).predict(voc["rgb"], points=[(250, 180)])
    first = bridge.predict(key, points=[(250, 180)])
    assert [c.score for c in first.candidates] == [c.score for c in again.candidates]
    other = SamBridge.tiny(family="sam2", seed=4).predict(voc["rgb"], points=[(250, 180)])
    assert first.best.score != other.best.score


def test_a_model_of_neither_family_is_refused():
    with pytest.raises(SamBridgeError, match="not a SAM"):
        make_family(torch.nn.Linear(2, 2), torch.device("cpu"))
    with pytest.raises(SamBridgeError, match="unknown SAM family"):
        SamBridge.tiny(family="sam3")


def test_pixels_follow_meta_sam2_transforms(voc):
    """Stretch to 1024x1024 (bilinear, antialiased) on [0, 1] floats, then ImageNet's mean/std."""
    from torchvision.transforms import v2

    rgb = voc["rgb"]
    x = Sam2Frame().pixels(rgb, torch.device("cpu"))
    reference = v2.Compose(
        [v2.Resize((1024, 1024), antialias=True),
         v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    )(torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255)  # fmt: skip
    assert tuple(x.shape) == (1, 3, 1024, 1024)
    torch.testing.assert_close(x[0], reference, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------
# the cache


def test_many_clicks_and_prompt_kinds_on_one_image_cost_one_encoder_run(bridge, voc, monkeypatch):
    encoder = count_encoder(monkeypatch, bridge)
    rgb = voc["rgb"]
    first = bridge.predict(rgb, points=[(250, 180)])
    bridge.predict(rgb.copy(), points=[(250, 180), (60, 300)], labels=[1, 0], previous=first)
    bridge.predict(rgb, box=(60, 40, 420, 330))
    bridge.predict(rgb, box=(60, 40, 420, 330), points=[(250, 180)])
    key = bridge.set_image(rgb)
    bridge.predict(key, points=[(10, 10)])
    assert encoder.calls == 1 and bridge.stats.encodes == 1
    bridge.predict(load_image(EXAMPLES / "chelsea.jpg"), points=[(50, 250)])
    assert encoder.calls == 2


def test_eviction_counts_the_high_resolution_maps(voc):
    entry = 4 * (32 * 64 * 64 + 4 * 256 * 256 + 8 * 128 * 128)
    bridge = SamBridge.tiny(family="sam2", max_cache_bytes=2 * entry)
    for image in (voc["rgb"], voc["rgb"][::-1].copy(), voc["rgb"][:, ::-1].copy()):
        bridge.set_image(image)
    assert (bridge.stats.size, bridge.stats.evictions) == (2, 1)
    assert SamBridge.tiny(family="sam2")._cache.max_bytes == 128 * 2**20  # 8 real entries


# ---------------------------------------------------------------------------------------------
# coordinates: SAM 2 stretches every image to its square frame


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_clicks_and_boxes_reach_the_prompt_encoder_in_the_stretched_frame(
    monkeypatch, voc, height, width
):
    bridge = SamBridge.tiny(family="sam2")
    spy = spy_prompts(monkeypatch, bridge)
    clicks = [(int(0.8 * width), int(0.3 * height)), (0, 0), (width - 1, height - 1)]
    box = (0.2 * width, 0.1 * height, 0.6 * width, 0.9 * height)
    bridge.predict(photo(voc["rgb"], height, width), points=clicks, labels=[1, 0, 1], box=box)
    sent = spy.last["coords"][0]  # (N, 2) of the one prompt in the 1024 frame
    np.testing.assert_allclose(to_image(sent, height, width), clicks, atol=1e-3)
    assert spy.last["labels"][0].tolist() == [1, 0, 1]
    np.testing.assert_allclose(
        to_image(spy.last["boxes"].reshape(2, 2), height, width).reshape(-1), box, atol=1e-3
    )


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_masks_come_back_at_the_clicked_pixel_in_image_coordinates(monkeypatch, voc, height, width):
    bridge = SamBridge.tiny(family="sam2")
    # SAM 2 shifts a point by half a pixel of its frame, so a click lands up to half an image
    # pixel (in the frame: 512 / W) from its pixel's centre: the disk covers that
    radius = max(48.0, 3 * 1024 / min(height, width))
    fake_decoder(monkeypatch, bridge, single=(radius, 0.8))
    image = photo(voc["rgb"], height, width)
    for x, y in [(int(0.8 * width), int(0.3 * height)), (0, 0), (width - 1, height - 1)]:
        mask = bridge.predict(image, points=[(x, y)], multimask=False).best.mask
        assert mask.shape == (height, width)
        assert mask[y, x], f"clicked pixel ({x}, {y}) not in the mask"
        # the disk is round in the frame, an ellipse in the image
        yy, xx = np.mgrid[:height, :width]
        frame = np.hypot((xx[mask] - x) * 1024 / width, (yy[mask] - y) * 1024 / height)
        assert frame.max() <= radius + 2 * 1024 / min(height, width)


def test_masks_at_a_display_size_follow_the_same_logits(shared, voc):
    full = shared.predict(voc["rgb"], points=[(250, 180)], multimask=True)
    small = shared.predict(voc["rgb"], points=[(250, 180)], multimask=True, mask_size=(150, 200))
    for a, b in zip(full.candidates, small.candidates):
        assert b.mask.shape == (150, 200) and np.array_equal(a.logits, b.logits)


# ---------------------------------------------------------------------------------------------
# candidates, negative points, refinement


def test_candidates_are_sorted_with_consistent_box_area_and_clamped_logits(shared, voc):
    pred = shared.predict(voc["rgb"], points=[(250, 180)])
    scores = [c.score for c in pred.candidates]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    for c in pred.candidates:
        assert c.mask.dtype == bool and c.mask.shape == (375, 500)
        assert c.area == int(c.mask.sum()) and c.box == (mask_box(c.mask) if c.area else None)
        assert c.logits.shape == (256, 256) and c.logits.dtype == np.float32
        assert np.abs(c.logits).max() <= 32.0


def test_sorting_and_areas_follow_the_decoder(monkeypatch, voc):
    bridge = SamBridge.tiny(family="sam2")
    fake_decoder(monkeypatch, bridge, radii=(24.0, 48.0, 96.0), scores=(0.6, 0.9, 0.75))
    pred = bridge.predict(voc["rgb"], points=[(250, 180)])
    assert [round(c.score, 2) for c in pred.candidates] == [0.9, 0.75, 0.6]
    areas = [c.area for c in pred.candidates]  # radius 48, 96, 24 in that order
    assert areas[1] > areas[0] > areas[2] > 0


def test_multimask_auto_gives_three_for_a_lone_click_and_one_otherwise(shared, voc):
    rgb = voc["rgb"]
    assert len(shared.predict(rgb, points=[(100, 100)]).candidates) == 3
    assert len(shared.predict(rgb, points=[(100, 100), (300, 200)]).candidates) == 1
    assert len(shared.predict(rgb, box=(10, 10, 200, 200)).candidates) == 1
    assert len(shared.predict(rgb, points=[(100, 100)], box=(10, 10, 200, 200)).candidates) == 1
    assert len(shared.predict(rgb, box=(10, 10, 200, 200), multimask=True).candidates) == 3


def test_negative_points_and_refinement_reach_the_prompt_encoder(monkeypatch, voc):
    bridge = SamBridge.tiny(family="sam2")
    spy = spy_prompts(monkeypatch, bridge)
    rgb = voc["rgb"]
    first = bridge.predict(rgb, points=[(200, 150)])
    assert spy.last["masks"] is None and spy.last["labels"].tolist() == [[1]]
    clicks, labels = [(200, 150), (330, 90)], [1, 0]
    refined = bridge.predict(rgb, points=clicks, labels=labels, previous=first)
    assert spy.last["labels"].tolist() == [[1, 0]]
    assert spy.last["masks"].shape == (1, 1, 256, 256)
    np.testing.assert_array_equal(spy.last["masks"][0, 0], first.best.logits)
    plain = bridge.predict(rgb, points=clicks, labels=labels)
    assert not np.array_equal(refined.best.logits, plain.best.logits)  # the mask input mattered
    positive = bridge.predict(rgb, points=clicks, labels=[1, 1])
    assert not np.array_equal(positive.best.logits, plain.best.logits)  # so did the label


def test_a_box_alone_and_a_box_with_points_are_different_prompts(shared, voc):
    box = shared.predict(voc["rgb"], box=(60, 40, 420, 330)).best
    both = shared.predict(voc["rgb"], box=(60, 40, 420, 330), points=[(250, 180)]).best
    assert not np.array_equal(box.logits, both.logits)


def test_clean_min_area_and_empty_results_work_as_for_sam1(monkeypatch, voc):
    bridge = SamBridge.tiny(family="sam2")
    fake_decoder(monkeypatch, bridge, single=(96.0, 0.8), edits=[(5, 5, 500.0)])
    raw = bridge.predict(voc["rgb"], points=[(250, 190)], multimask=False).best
    clean = bridge.predict(voc["rgb"], points=[(250, 190)], multimask=False, clean_min_area=50).best
    island = (int(5.5 * 4 * 375 / 1024), int(5.5 * 4 * 500 / 1024))  # low-res (5, 5) -> image
    assert raw.mask[island] and not clean.mask[island] and clean.mask[190, 250]
    empty = SamBridge.tiny(family="sam2")
    fake_decoder(monkeypatch, empty, empty=True)
    assert empty.predict(voc["rgb"], points=[(100, 100)]).is_empty


def test_bad_prompts_are_refused_before_any_encoding(monkeypatch, voc):
    bridge = SamBridge.tiny(family="sam2")
    encoder = count_encoder(monkeypatch, bridge)
    for kwargs, message in [
        ({}, "no prompt"),
        ({"points": [(500, 10)]}, "outside"),
        ({"points": [(5, 5)], "labels": [0]}, "only negative"),
        ({"box": (10, 10, 10, 50)}, "zero area"),
        ({"points": [(5, 5)], "previous": np.zeros((64, 64))}, "256, 256"),
    ]:
        with pytest.raises(SamBridgeError, match=message):
            bridge.predict(voc["rgb"], **kwargs)
    assert encoder.calls == 0


def test_extreme_aspect_ratios_are_fine_for_sam2(shared):
    """SAM 1 refuses a 4000x1 image (its short side would vanish); SAM 2 stretches it."""
    line = np.full((1, 4000, 3), 200, np.uint8)
    assert shared.predict(line, points=[(2000, 0)]).best.mask.shape == (1, 4000)
    with pytest.raises(SamBridgeError, match="vanish"):
        SamBridge.tiny().set_image(line)


# ---------------------------------------------------------------------------------------------
# segment everything, precision, threads


def test_everything_returns_valid_masks_from_one_encoding(monkeypatch, voc):
    bridge = SamBridge.tiny(family="sam2")
    encoder = count_encoder(monkeypatch, bridge)
    fake_decoder(monkeypatch, bridge, radii=(30.0, 60.0, 120.0))
    bridge.predict(voc["rgb"], points=[(250, 180)])
    found = bridge.everything(voc["rgb"], points_per_side=4, pred_iou_thresh=0.5,
                              stability_score_thresh=0.5)  # fmt: skip
    assert encoder.calls == 1 and found
    areas = [m.area for m in found]
    assert areas == sorted(areas, reverse=True)
    for m in found:
        assert m.mask.shape == (375, 500) and m.area == int(m.mask.sum()) > 0
        x, y = m.point
        assert m.mask[int(y), int(x)], "a grid point lies in its own mask"
    picked = mask_at(found, *found[-1].point)
    assert picked is not None and picked.area <= found[-1].area


def test_everything_crops_are_encoded_but_not_cached(monkeypatch, voc):
    bridge = SamBridge.tiny(family="sam2")
    encoder = count_encoder(monkeypatch, bridge)
    fake_decoder(monkeypatch, bridge, radii=(30.0, 60.0, 120.0))
    found = bridge.everything(voc["rgb"], points_per_side=2, crop_n_layers=1, pred_iou_thresh=0.0,
                              stability_score_thresh=0.0)  # fmt: skip
    assert encoder.calls == 5 and bridge.stats.size == 1  # the image and its 4 crops; 1 kept
    assert found and all(m.rle["size"] == [375, 500] for m in found)


def test_everything_thresholds_filter_the_untrained_model(shared, voc):
    kept = shared.everything(voc["rgb"], points_per_side=2, pred_iou_thresh=0.0,
                             stability_score_thresh=0.0)  # fmt: skip
    assert kept and all(0.0 <= m.score <= 1.0 for m in kept)
    assert shared.everything(voc["rgb"], points_per_side=2, pred_iou_thresh=1.0) == []


def test_bf16_stores_the_encoder_weights_and_keeps_the_decoder_fp32(voc):
    bridge = SamBridge.tiny(family="sam2", dtype="bfloat16")
    weights = dict(bridge.model.vision_encoder.named_parameters())
    assert weights["backbone.patch_embed.projection.weight"].dtype == torch.bfloat16
    assert weights["backbone.pos_embed"].dtype == torch.float32  # not a matmul weight
    assert bridge.model.mask_decoder.iou_token.weight.dtype == torch.float32
    fp32 = SamBridge.tiny(family="sam2").predict(voc["rgb"], points=[(250, 180)], multimask=True)
    bf16 = bridge.predict(voc["rgb"], points=[(250, 180)], multimask=True)
    emb = bridge._cached(bf16.image_key)
    assert emb.features.dtype == torch.float32 and all(
        t.dtype == torch.float32 for t in emb.high_res
    )
    for a, b in zip(fp32.candidates, bf16.candidates):
        assert abs(a.score - b.score) < 0.05


def test_two_families_in_one_process_keep_their_own_answers(voc):
    sam1, sam2 = SamBridge.tiny(), SamBridge.tiny(family="sam2")
    assert sam1.family.name == "sam1" and sam2.family.name == "sam2"
    a = sam1.predict(voc["rgb"], points=[(250, 180)])
    b = sam2.predict(voc["rgb"], points=[(250, 180)])
    assert a.image_key == b.image_key and a.best.score != b.best.score


def test_build_tiny_sam2_leaves_the_global_random_state_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    build_tiny_sam2(seed=1)
    assert torch.equal(torch.rand(3), expected)
