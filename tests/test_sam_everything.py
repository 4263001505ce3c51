"""Segment everything (SAM's automatic generator through the bridge) and the mask-under-a-click helper."""

from __future__ import annotations

import numpy as np
import pytest

from osprey.core.masks import decode_rle, encode_rle, mask_box, rle_area, rle_box
from sam_bridge import AutoMask, SamBridge, SamBridgeError, mask_at, segment_everything
from tests.support.sam import count_encoder, fake_decoder

LOOSE = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


def auto_mask(mask: np.ndarray) -> AutoMask:
    rle = encode_rle(mask)
    return AutoMask(rle, rle_area(rle), rle_box(rle), 0.9, 0.95, (0.0, 0.0))


def test_everything_returns_valid_masks_sorted_by_area(monkeypatch, voc):
    bridge = SamBridge.tiny()
    fake_decoder(monkeypatch, bridge, radii=(30.0, 60.0, 120.0))
    found = bridge.everything(voc["rgb"], points_per_side=4, **LOOSE)
    assert len(found) >= 4
    areas = [m.area for m in found]
    assert areas == sorted(areas, reverse=True) and areas[-1] > 0
    for m in found:
        mask = decode_rle(m.rle)
        assert mask.shape == (375, 500) and m.rle["size"] == [375, 500]
        assert isinstance(m.rle["counts"], str)  # JSON-ready
        assert int(mask.sum()) == m.area and mask_box(mask) == m.box
        assert np.array_equal(m.mask, mask)
        x, y = m.point
        assert 0 <= x < 500 and 0 <= y < 375
        assert mask[int(y), int(x)]  # the fake draws a disk around the grid point
        assert 0.0 <= m.stability <= 1.0 and round(m.score, 3) in (0.6, 0.9, 0.75)


def test_everything_thresholds_and_min_area_filter(monkeypatch, voc):
    bridge = SamBridge.tiny()
    fake_decoder(monkeypatch, bridge, radii=(30.0, 60.0, 120.0), scores=(0.6, 0.9, 0.75))
    everything = bridge.everything(voc["rgb"], points_per_side=3, **LOOSE)
    confident = bridge.everything(
        voc["rgb"], points_per_side=3, pred_iou_thresh=0.8, stability_score_thresh=0.0
    )
    assert {round(m.score, 3) for m in confident} == {0.9} and len(confident) < len(everything)
    smallest = min(m.area for m in everything)
    large = bridge.everything(voc["rgb"], points_per_side=3, min_area=smallest + 1, **LOOSE)
    assert large and all(m.area > smallest for m in large)


def test_everything_reuses_the_cached_embedding(monkeypatch, voc):
    bridge = SamBridge.tiny()
    encoder = count_encoder(monkeypatch, bridge)
    bridge.predict(voc["rgb"], points=[(10, 10)])
    segment_everything(bridge, voc["rgb"], points_per_side=2, **LOOSE)
    bridge.predict(voc["rgb"], points=[(20, 30)])
    assert encoder.calls == 1


def test_crops_are_encoded_but_not_cached(monkeypatch, voc):
    bridge = SamBridge.tiny()
    encoder = count_encoder(monkeypatch, bridge)
    found = bridge.everything(voc["rgb"], points_per_side=2, crop_n_layers=1, **LOOSE)
    assert encoder.calls == 5  # the full image and its 4 crops of layer 1
    assert bridge.stats.size == 1  # only the full image is kept
    assert all(m.rle["size"] == [375, 500] for m in found)  # crops come back in image coordinates


@pytest.mark.parametrize(
    "options",
    [
        {"points_per_side": 0},
        {"pred_iou_thresh": 1.5},
        {"stability_score_thresh": -0.1},
        {"min_area": -1},
    ],
)
def test_bad_options_are_refused(options, voc):
    with pytest.raises(SamBridgeError):
        SamBridge.tiny().everything(voc["rgb"], **options)


# ---------------------------------------------------------------------------------------------
# mask_at


def test_mask_at_picks_the_smallest_mask_under_the_point():
    h, w = 60, 80
    yy, xx = np.mgrid[:h, :w]
    big = (xx >= 5) & (xx < 75) & (yy >= 5) & (yy < 55)
    mid = (xx >= 20) & (xx < 60) & (yy >= 10) & (yy < 50)
    ring = mid & ~((xx >= 30) & (xx < 50) & (yy >= 20) & (yy < 40))  # a hole in the middle
    small = (xx >= 40) & (xx < 45) & (yy >= 12) & (yy < 18)
    masks = sorted((auto_mask(m) for m in (big, ring, small)), key=lambda m: m.area, reverse=True)
    assert mask_at(masks, 42, 15).area == small.sum()
    assert mask_at(masks, 25, 45).area == ring.sum()
    assert mask_at(masks, 40, 30).area == big.sum()  # in the ring's hole and box, not in the ring
    assert mask_at(masks, 1, 1) is None
    assert mask_at([], 1, 1) is None
    with pytest.raises(SamBridgeError, match="outside"):
        mask_at(masks, 80, 10)


def test_mask_at_on_everything_output(monkeypatch, voc):
    bridge = SamBridge.tiny()
    fake_decoder(monkeypatch, bridge, radii=(30.0, 60.0, 120.0))
    found = bridge.everything(voc["rgb"], points_per_side=4, **LOOSE)
    x, y = found[-1].point
    hit = mask_at(found, x, y)
    containing = [m for m in found if m.mask[int(y), int(x)]]
    assert hit is not None and hit.area == min(m.area for m in containing)


def test_a_large_photo_is_segmented_a_few_grid_points_at_a_time():
    """The generator upsamples three float masks per grid point to the photo's size: 64 points
    of a 12 MP photo would be 9 GB at once; they go a point at a time there."""
    from sam_bridge.everything import BATCH_BYTES, _batch

    assert _batch(64, (375, 500, 3)) == 64
    assert _batch(64, (3024, 4032, 3)) == 1
    assert _batch(16, (1080, 1920, 3)) * 3 * 4 * 1080 * 1920 <= BATCH_BYTES
