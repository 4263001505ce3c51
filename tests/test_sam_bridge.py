"""SamBridge on a tiny in-process SAM: embedding cache, coordinates, prompts, refinement, bad input."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from segment_anything import SamPredictor
from segment_anything.utils.transforms import ResizeLongestSide

from osprey.core.images import image_key, load_image
from osprey.core.masks import decode_rle, encode_rle, load_mask_png, mask_box, save_mask_png
from sam_bridge import (
    Candidate,
    EmptyMaskError,
    ImageError,
    ImageKey,
    Prediction,
    SamBridge,
    SamBridgeError,
)
from tests.support.sam import count_encoder, fake_decoder, photo, spy_prompts

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

# (H, W): landscape, portrait, square, tiny and very elongated both ways
SIZES = [(375, 500), (500, 375), (256, 256), (37, 200), (200, 37), (9, 13)]


@pytest.fixture
def bridge() -> SamBridge:
    return SamBridge.tiny(seed=0)


def clicks_for(height: int, width: int) -> list[tuple[int, int]]:
    """Off-diagonal clicks and both corners, so a swapped or mis-scaled axis shows."""
    return [
        (int(0.8 * width), int(0.3 * height)),
        (int(0.1 * width), int(0.7 * height)),
        (0, 0),
        (width - 1, height - 1),
    ]


def to_original(coords: np.ndarray, height: int, width: int) -> np.ndarray:
    """Map SAM-frame coordinates back to the image's pixels through SAM's own ResizeLongestSide."""
    new_h, new_w = ResizeLongestSide.get_preprocess_shape(height, width, 1024)
    return coords * np.array([width / new_w, height / new_h])


# ---------------------------------------------------------------------------------------------
# the embedding is computed once per image


@pytest.mark.parametrize("clicks", [2, 5, 10])
def test_many_clicks_on_one_image_cost_one_encoder_run(bridge, voc, monkeypatch, clicks):
    encoder = count_encoder(monkeypatch, bridge)
    rgb = voc["rgb"]
    rng = np.random.default_rng(clicks)
    for i in range(clicks):
        x, y = rng.integers(0, 500), rng.integers(0, 375)
        # alternate between passing the pixels and passing a fresh copy of them
        image = rgb if i % 2 else rgb.copy()
        pred = bridge.predict(image, points=[(x, y)])
        assert pred.best.mask.shape == (375, 500)
    assert encoder.calls == 1
    stats = bridge.stats
    assert (stats.encodes, stats.misses, stats.hits) == (1, 1, clicks - 1)


def test_two_images_alternate_without_reencoding(bridge, voc, monkeypatch):
    encoder = count_encoder(monkeypatch, bridge)
    a = voc["rgb"]
    b = load_image(EXAMPLES / "chelsea.jpg")
    for _ in range(4):
        assert bridge.predict(a, points=[(400, 100)]).image_size == (375, 500)
        assert bridge.predict(b, points=[(50, 250)]).image_size == (300, 451)
    assert encoder.calls == 2
    assert bridge.stats.hits == 6


def test_eviction_beyond_capacity_reencodes(voc, monkeypatch):
    bridge = SamBridge.tiny(cache_size=2)
    encoder = count_encoder(monkeypatch, bridge)
    a, b, c = voc["rgb"], voc["rgb"][:, ::-1].copy(), voc["rgb"][::-1].copy()
    for image in (a, b, c):  # c pushes a out
        bridge.set_image(image)
    assert encoder.calls == 3 and bridge.stats.evictions == 1
    bridge.set_image(c)  # still cached
    assert encoder.calls == 3
    bridge.set_image(a)  # evicted: encoded again, pushes b out
    assert encoder.calls == 4
    stats = bridge.stats
    assert (stats.evictions, stats.size, stats.capacity) == (2, 2, 2)


def test_same_pixels_from_any_source_share_one_entry(bridge, monkeypatch, tmp_path):
    encoder = count_encoder(monkeypatch, bridge)
    path = EXAMPLES / "coffee.jpg"
    rgb = load_image(path)
    keys = {
        bridge.set_image(path),
        bridge.set_image(str(path)),
        bridge.set_image(path.read_bytes()),
        bridge.set_image(Image.fromarray(rgb)),
        bridge.set_image(rgb),
    }
    assert keys == {image_key(rgb)} and encoder.calls == 1


def test_key_from_set_image_serves_predictions(bridge, voc, monkeypatch):
    encoder = count_encoder(monkeypatch, bridge)
    key = bridge.set_image(voc["rgb"])
    assert isinstance(key, ImageKey)
    pred = bridge.predict(key, points=[(250, 200)])
    assert pred.image_key == key and pred.image_size == (375, 500)
    assert encoder.calls == 1


def test_evicted_key_gives_a_clear_error(voc):
    bridge = SamBridge.tiny(cache_size=1)
    key = bridge.set_image(voc["rgb"])
    bridge.set_image(voc["rgb"][::-1].copy())
    with pytest.raises(SamBridgeError, match="not in the cache"):
        bridge.predict(key, points=[(10, 10)])


def test_cached_embedding_gives_the_same_masks_as_a_fresh_encoding(voc):
    """Restoring cached features (after another image was decoded) changes nothing."""
    bridge = SamBridge.tiny()
    first = bridge.predict(voc["rgb"], points=[(300, 120)], multimask=True)
    bridge.predict(load_image(EXAMPLES / "rocket.jpg"), points=[(5, 5)])
    again = bridge.predict(voc["rgb"], points=[(300, 120)], multimask=True)
    fresh = SamBridge.tiny().predict(voc["rgb"], points=[(300, 120)], multimask=True)
    for x, y, z in zip(first.candidates, again.candidates, fresh.candidates):
        assert np.array_equal(x.mask, y.mask) and np.array_equal(x.mask, z.mask)
        assert x.score == pytest.approx(z.score, abs=1e-5)


@pytest.mark.parametrize("height_width", [(375, 500), (200, 37)])
def test_same_answers_as_segment_anythings_own_predictor(voc, height_width):
    """Cached features + explicit geometry give exactly what SamPredictor.predict gives."""
    image = photo(voc["rgb"], *height_width)
    h, w = height_width
    points, labels = np.array([[w // 3, h // 2], [w - 3, 2]]), np.array([1, 0])
    box = np.array([1, 1, w - 2, h - 2])
    bridge = SamBridge.tiny()
    reference = SamPredictor(bridge.model)
    reference.set_image(image)
    bridge.predict(load_image(EXAMPLES / "rocket.jpg"), points=[(3, 3)])  # another image between
    first = bridge.predict(image, points=points, labels=labels, box=box, multimask=True)
    masks, scores, logits = reference.predict(points, labels, box, multimask_output=True)
    order = np.argsort(-scores, kind="stable")
    for c, i in zip(first.candidates, order):
        assert np.array_equal(c.mask, masks[i]) and c.score == pytest.approx(
            float(scores[i]), abs=1e-6
        )
        np.testing.assert_allclose(c.logits, logits[i], atol=1e-5)
    previous = first.candidates[0].logits
    refined = bridge.predict(
        image, points=points, labels=labels, previous=previous, multimask=False
    )
    masks, scores, _ = reference.predict(
        points, labels, mask_input=previous[None], multimask_output=False
    )
    assert np.array_equal(refined.candidates[0].mask, masks[0])


def test_threads_sharing_one_bridge_each_get_their_own_image(monkeypatch, voc):
    bridge = SamBridge.tiny()
    encoder = count_encoder(monkeypatch, bridge)
    fake_decoder(monkeypatch, bridge)
    images = [voc["rgb"], load_image(EXAMPLES / "chelsea.jpg")]
    errors: list[BaseException] = []

    def user(image: np.ndarray, seed: int) -> None:
        rng = np.random.default_rng(seed)
        h, w = image.shape[:2]
        try:
            for _ in range(6):
                x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
                mask = bridge.predict(image, points=[(x, y)], multimask=False).best.mask
                assert mask.shape == (h, w) and mask[y, x]
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=user, args=(images[i % 2], i)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert encoder.calls == 2


def test_a_click_never_waits_for_another_users_new_image(monkeypatch, voc):
    """While one user's new image is being encoded (held here until the click is done), a click
    on an image already encoded is decoded at once; a second user asking for the same new image
    waits for that one encoder run instead of starting another."""
    bridge = SamBridge.tiny()
    bridge.set_image(voc["rgb"])
    encoder = bridge.model.image_encoder
    original, started, release = encoder.forward, threading.Event(), threading.Event()

    def held_forward(x):
        started.set()
        assert release.wait(30), "the click never finished"
        return original(x)

    monkeypatch.setattr(encoder, "forward", held_forward)
    other = load_image(EXAMPLES / "chelsea.jpg")
    uploads = [threading.Thread(target=bridge.set_image, args=(other,)) for _ in range(2)]
    for t in uploads:
        t.start()
    try:
        assert started.wait(30)
        h, w = voc["rgb"].shape[:2]
        pred = bridge.predict(voc["rgb"], points=[(w // 2, h // 2)])  # the encoder is still held
        assert not release.is_set() and pred.best.mask.shape == (h, w)
    finally:
        release.set()
        for t in uploads:
            t.join()
    assert bridge.stats.encodes == 2  # the first image, and the new one once


# ---------------------------------------------------------------------------------------------
# coordinates


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_clicks_reach_the_decoder_at_the_clicked_pixels(monkeypatch, voc, height, width):
    bridge = SamBridge.tiny()
    spy = spy_prompts(monkeypatch, bridge)
    clicks = clicks_for(height, width)
    bridge.predict(photo(voc["rgb"], height, width), points=clicks, labels=[1, 0, 1, 0])
    sent = spy.last["coords"][0]  # (N, 2) in SAM's 1024 frame
    assert sent.max() <= 1024
    np.testing.assert_allclose(to_original(sent, height, width), clicks, atol=1e-3)
    assert spy.last["labels"][0].tolist() == [1, 0, 1, 0]


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_masks_come_back_at_the_clicked_pixel_in_image_coordinates(monkeypatch, voc, height, width):
    bridge = SamBridge.tiny()
    scale = 1024 / max(height, width)  # image pixels -> SAM frame
    # a disk of at least 3 image pixels: SAM puts an integer click at its pixel's top-left corner
    # (apply_coords scales x by new_w / W), up to half a pixel off the pixel's centre
    fake = fake_decoder(monkeypatch, bridge, single=(max(48.0, 3 * scale), 0.8))
    image = photo(voc["rgb"], height, width)
    radius = fake.single[0] / scale  # the fake disk's radius in image pixels
    yy, xx = np.mgrid[:height, :width]
    for x, y in clicks_for(height, width):
        mask = bridge.predict(image, points=[(x, y)], multimask=False).best.mask
        assert mask.shape == (height, width)
        assert mask[y, x], f"clicked pixel ({x}, {y}) not in the mask"
        dist = np.hypot(xx - x, yy - y)[mask]
        assert dist.max() <= radius + 2, "mask reaches beyond the disk around the click"
        if radius + 2 < min(x, y, width - 1 - x, height - 1 - y):  # disk fully inside
            centroid = np.array([xx[mask].mean(), yy[mask].mean()])
            np.testing.assert_allclose(centroid, (x, y), atol=1.0)


@pytest.mark.parametrize(("height", "width"), [(375, 500), (500, 375), (37, 200)])
def test_boxes_reach_the_decoder_in_image_coordinates(monkeypatch, voc, height, width):
    bridge = SamBridge.tiny()
    spy = fake_decoder(monkeypatch, bridge).spy
    box = (0.2 * width, 0.1 * height, 0.6 * width, 0.9 * height)
    pred = bridge.predict(
        photo(voc["rgb"], height, width), box=box, points=[(int(0.3 * width), int(0.5 * height))]
    )
    np.testing.assert_allclose(
        to_original(spy.last["boxes"].reshape(2, 2), height, width).reshape(-1), box, atol=1e-3
    )
    assert spy.last["coords"] is not None  # box and point together
    assert pred.best.mask.shape == (height, width)


def test_results_round_trip_through_png_and_rle(bridge, voc, tmp_path):
    pred = bridge.predict(voc["rgb"], points=[(120, 200), (400, 50)], labels=[1, 0], multimask=True)
    for i, c in enumerate(pred.candidates):
        assert np.array_equal(decode_rle(encode_rle(c.mask)), c.mask)
        path = save_mask_png(c.mask, tmp_path / f"{i}.png")
        assert np.array_equal(load_mask_png(path), c.mask)


# ---------------------------------------------------------------------------------------------
# candidates, negative points, refinement, clean-up


def test_candidates_are_sorted_by_score_with_consistent_box_and_area(bridge, voc):
    rng = np.random.default_rng(0)
    for _ in range(5):
        x, y = rng.integers(0, 500), rng.integers(0, 375)
        pred = bridge.predict(voc["rgb"], points=[(x, y)])
        scores = [c.score for c in pred.candidates]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        for c in pred.candidates:
            assert c.mask.dtype == bool and c.mask.shape == (375, 500)
            assert c.area == int(c.mask.sum()) and c.box == mask_box(c.mask)
            assert c.logits.shape == (256, 256) and c.logits.dtype == np.float32


def test_sorting_follows_the_decoder_scores(monkeypatch, voc):
    bridge = SamBridge.tiny()
    fake_decoder(monkeypatch, bridge, radii=(24.0, 48.0, 96.0), scores=(0.6, 0.9, 0.75))
    pred = bridge.predict(voc["rgb"], points=[(250, 180)])
    assert [round(c.score, 2) for c in pred.candidates] == [0.9, 0.75, 0.6]
    areas = [c.area for c in pred.candidates]  # radius 48, 96, 24 in that order
    assert areas[1] > areas[0] > areas[2] > 0
    assert pred.best is pred.candidates[0]


def test_multimask_auto_gives_three_for_a_lone_click_and_one_otherwise(bridge, voc):
    rgb = voc["rgb"]
    assert len(bridge.predict(rgb, points=[(100, 100)]).candidates) == 3
    assert len(bridge.predict(rgb, points=[(100, 100), (300, 200)]).candidates) == 1
    assert len(bridge.predict(rgb, box=(10, 10, 200, 200)).candidates) == 1
    assert len(bridge.predict(rgb, points=[(100, 100), (300, 200)], multimask=True).candidates) == 3
    assert len(bridge.predict(rgb, points=[(100, 100)], multimask=False).candidates) == 1


def test_negative_points_reach_the_prompt_encoder_and_change_the_mask(monkeypatch, voc):
    bridge = SamBridge.tiny()
    spy = spy_prompts(monkeypatch, bridge)
    pos = bridge.predict(voc["rgb"], points=[(200, 150), (260, 170)], labels=[1, 1])
    neg = bridge.predict(voc["rgb"], points=[(200, 150), (260, 170)], labels=[1, 0])
    assert spy.calls[0]["labels"].tolist() == [[1, 1]]
    assert spy.calls[1]["labels"].tolist() == [[1, 0]]
    assert not np.array_equal(pos.best.logits, neg.best.logits)


def test_refinement_feeds_the_previous_logits_back_as_mask_input(monkeypatch, voc):
    bridge = SamBridge.tiny()
    spy = spy_prompts(monkeypatch, bridge)
    rgb = voc["rgb"]
    first = bridge.predict(rgb, points=[(200, 150)])
    assert spy.last["masks"] is None
    clicks, labels = [(200, 150), (330, 90)], [1, 0]
    refined = bridge.predict(rgb, points=clicks, labels=labels, previous=first)
    sent = spy.last["masks"]
    assert sent.shape == (1, 1, 256, 256)
    np.testing.assert_array_equal(sent[0, 0], first.best.logits)
    assert spy.last["labels"].tolist() == [[1, 0]]
    plain = bridge.predict(rgb, points=clicks, labels=labels)
    assert not np.array_equal(refined.best.logits, plain.best.logits)  # the mask input mattered
    # a Candidate or its raw logits work the same way
    for previous in (first.best, first.best.logits, first.best.logits[None]):
        bridge.predict(rgb, points=clicks, labels=labels, previous=previous)
        np.testing.assert_array_equal(spy.last["masks"][0, 0], first.best.logits)


def test_refinement_with_logits_from_another_image_is_refused(bridge, voc):
    first = bridge.predict(voc["rgb"], points=[(200, 150)])
    other = load_image(EXAMPLES / "chelsea.jpg")
    with pytest.raises(SamBridgeError, match="another image"):
        bridge.predict(other, points=[(20, 20)], previous=first)
    with pytest.raises(SamBridgeError, match="256, 256"):
        bridge.predict(voc["rgb"], points=[(20, 20)], previous=np.zeros((64, 64)))
    with pytest.raises(SamBridgeError, match="NaN"):
        bridge.predict(voc["rgb"], points=[(20, 20)], previous=np.full((256, 256), np.nan))


def test_clean_min_area_fills_holes_and_drops_islands(monkeypatch, voc):
    bridge = SamBridge.tiny()
    # The click (250, 190) is at low-res (row 97, col 128): a 3x3 hole at (100, 131) inside the
    # disk, a 3x3 island far away at (5, 5); each about 6x6 image pixels.
    block = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]
    edits = [(100 + dr, 131 + dc, -500.0) for dr, dc in block]
    edits += [(5 + dr, 5 + dc, 500.0) for dr, dc in block]
    fake_decoder(monkeypatch, bridge, single=(96.0, 0.8), edits=edits)

    def image_pixel(row: int, col: int) -> tuple[int, int]:  # low-res centre -> image (y, x)
        return int((row + 0.5) * 4 * 500 / 1024), int((col + 0.5) * 4 * 500 / 1024)

    hole, island = image_pixel(100, 131), image_pixel(5, 5)
    raw = bridge.predict(voc["rgb"], points=[(250, 190)], multimask=False).best
    assert not raw.mask[hole] and raw.mask[island]
    clean = bridge.predict(
        voc["rgb"], points=[(250, 190)], multimask=False, clean_min_area=100
    ).best
    assert clean.mask[hole] and not clean.mask[island]
    assert clean.mask[190, 250] and clean.box == mask_box(clean.mask)
    assert clean.area == int(clean.mask.sum())
    assert np.array_equal(clean.logits, raw.logits)  # refinement keeps SAM's own logits


def test_empty_result_is_reported_not_guessed(monkeypatch, voc):
    bridge = SamBridge.tiny()
    fake_decoder(monkeypatch, bridge, empty=True)
    pred = bridge.predict(voc["rgb"], points=[(100, 100)])
    assert pred.is_empty and all(c.area == 0 and c.box is None for c in pred.candidates)
    with pytest.raises(EmptyMaskError):
        _ = pred.best
    # an empty prediction can still be refined (its logits are fed back)
    again = bridge.predict(voc["rgb"], points=[(100, 100), (50, 50)], previous=pred)
    assert isinstance(again, Prediction)


def test_prediction_types(bridge, voc):
    pred = bridge.predict(voc["rgb"], points=[(1, 1)])
    assert all(isinstance(c, Candidate) for c in pred.candidates)
    assert all(c.image_key == pred.image_key for c in pred.candidates)


# ---------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "no prompt"),
        ({"points": [(500, 10)]}, "outside"),  # x == W
        ({"points": [(10, 375)]}, "outside"),  # y == H
        ({"points": [(-0.5, 10)]}, "outside"),
        ({"points": [(10, 10), (9999, 10)], "labels": [1, 0]}, "outside"),
        ({"points": [(10, 10)], "labels": [0]}, "only negative"),
        ({"points": [(10, 10)], "labels": [2]}, "labels"),
        ({"points": [(10, 10)], "labels": [1, 1]}, "labels"),
        ({"labels": [1]}, "without points"),
        ({"points": [(float("nan"), 10)]}, "NaN"),
        ({"points": [(1, 2, 3)]}, "shape"),
        ({"box": (10, 10, 10, 200)}, "zero area"),
        ({"box": (600, 10, 700, 200)}, "outside"),
        ({"box": (1, 2, 3)}, "4 finite"),
    ],
)
def test_bad_prompts_raise_before_any_encoding(monkeypatch, voc, kwargs, message):
    bridge = SamBridge.tiny()
    encoder = count_encoder(monkeypatch, bridge)
    with pytest.raises(SamBridgeError, match=message):
        bridge.predict(voc["rgb"], **kwargs)
    assert encoder.calls == 0


def test_boxes_are_normalised_and_clipped(monkeypatch, voc):
    bridge = SamBridge.tiny()
    spy = spy_prompts(monkeypatch, bridge)
    bridge.predict(voc["rgb"], box=(450, 300, 100, -20))  # corners swapped, top outside
    sent = to_original(spy.last["boxes"].reshape(2, 2), 375, 500).reshape(-1)
    np.testing.assert_allclose(sent, (100, 0, 450, 300), atol=1e-3)


@pytest.mark.parametrize(
    "convert",
    [
        lambda rgb: Image.fromarray(rgb).convert("L"),
        lambda rgb: Image.fromarray(rgb).convert("RGBA"),
        lambda rgb: rgb[..., 0].astype(np.uint16) * 257,  # 16-bit grey array
        lambda rgb: Image.fromarray(rgb[..., 0].astype(np.uint16) * 257),  # PIL I;16
        lambda rgb: rgb.astype(np.float32) / 255.0,
    ],
    ids=["grey", "rgba", "uint16", "pil-I16", "float"],
)
def test_any_image_mode_gives_masks_in_its_own_size(bridge, voc, convert):
    pred = bridge.predict(convert(voc["rgb"]), points=[(321, 123)])
    assert pred.image_size == (375, 500)
    assert all(c.mask.shape == (375, 500) for c in pred.candidates)


def test_images_above_the_pixel_budget_are_refused(voc):
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (8001, 8001, 3))  # 64 MP, no memory
    with pytest.raises(ImageError, match="above the limit"):
        SamBridge.tiny().set_image(huge)
    small_budget = SamBridge.tiny(max_pixels=100_000)
    with pytest.raises(ImageError, match="above the limit"):
        small_budget.predict(voc["rgb"], points=[(1, 1)])


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((0, 10, 3), np.uint8),
        np.zeros((1, 3000, 3), np.uint8),
        np.zeros((5, 5, 2), np.uint8),
    ],
    ids=["empty", "1x3000", "two-channels"],
)
def test_unusable_images_are_refused(bridge, image):
    with pytest.raises((ImageError, SamBridgeError)):
        bridge.set_image(image)


def test_extreme_but_usable_aspect_ratio_works(bridge):
    image = np.full((1, 2048, 3), 128, np.uint8)  # the short side becomes exactly 1 pixel
    pred = bridge.predict(image, points=[(1000, 0)])
    assert pred.image_size == (1, 2048)
    assert all(c.mask.shape == (1, 2048) for c in pred.candidates)


def test_unreadable_path_is_an_image_error(bridge, tmp_path):
    bad = tmp_path / "not-an-image.jpg"
    bad.write_bytes(b"nope")
    with pytest.raises(ImageError):
        bridge.predict(bad, points=[(1, 1)])


# ---------------------------------------------------------------------------------------------
# precision


def test_bf16_autocast_on_cpu_encodes_in_bf16_and_decodes_in_fp32(voc, monkeypatch):
    bridge = SamBridge.tiny(dtype="bfloat16")
    assert bridge.autocast_dtype == torch.bfloat16
    seen = {}
    encoder = bridge.model.image_encoder
    original = encoder.forward

    def forward(x):
        seen["autocast"] = torch.is_autocast_enabled("cpu")
        return original(x)

    monkeypatch.setattr(encoder, "forward", forward)
    pred = bridge.predict(voc["rgb"], points=[(250, 180)])
    assert seen["autocast"] is True
    fp32 = SamBridge.tiny().predict(voc["rgb"], points=[(250, 180)])
    assert pred.best.logits.dtype == np.float32
    agreement = np.mean(pred.candidates[0].mask == fp32.candidates[0].mask)
    assert agreement > 0.9  # same model, lower precision encoder


# ---------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU)

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@CUDA
def test_cuda_matches_cpu(voc):
    cpu = SamBridge.tiny(device="cpu").predict(voc["rgb"], points=[(250, 180)], multimask=True)
    gpu = SamBridge.tiny(device="cuda", dtype="float32")
    pred = gpu.predict(voc["rgb"], points=[(250, 180)], multimask=True)
    for a, b in zip(cpu.candidates, pred.candidates):
        np.testing.assert_allclose(a.logits, b.logits, atol=2e-3)
        assert np.mean(a.mask == b.mask) > 0.999
    assert gpu.device.type == "cuda" and gpu.autocast_dtype is None


@pytest.mark.gpu
@CUDA
def test_cuda_auto_precision_caches_and_keeps_geometry(monkeypatch, voc):
    bridge = SamBridge.tiny(device="auto", dtype="auto")
    assert bridge.device.type == "cuda"
    assert bridge.autocast_dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else None)
    encoder = count_encoder(monkeypatch, bridge)
    fake_decoder(monkeypatch, bridge)
    image = photo(voc["rgb"], 200, 37)
    for x, y in clicks_for(200, 37):
        mask = bridge.predict(image, points=[(x, y)], multimask=False).best.mask
        assert mask.shape == (200, 37) and mask[y, x]
    assert encoder.calls == 1
    found = bridge.everything(image, points_per_side=2, pred_iou_thresh=0, stability_score_thresh=0)
    assert found and all(m.rle["size"] == [200, 37] for m in found)
    assert encoder.calls == 1


# ---------------------------------------------------------------------------------------------
# the real checkpoint (skipped unless it was downloaded)

VIT_B = REPO / "checkpoints" / "sam_vit_b_01ec64.pth"


@pytest.mark.weights
@pytest.mark.skipif(not VIT_B.is_file(), reason=f"{VIT_B} absent (python -m sam_bridge download)")
def test_real_vit_b_segments_voc_instances(voc):
    bridge = SamBridge.from_pretrained("vit_b", checkpoint=VIT_B, device="cpu")
    ious = []
    for gt in voc["masks"][:5]:
        # click the most interior pixel of the instance, as a person would
        depth = cv2.distanceTransform(gt.astype(np.uint8), cv2.DIST_L2, 5)
        y, x = np.unravel_index(np.argmax(depth), depth.shape)
        pred = bridge.predict(voc["rgb"], points=[(x, y)])
        best = max(pred.candidates, key=lambda c: (c.mask & gt).sum() / (c.mask | gt).sum())
        ious.append((best.mask & gt).sum() / (best.mask | gt).sum())
    assert np.mean(ious) > 0.6, ious
    assert bridge.stats.encodes == 1


def test_encoder_weights_stored_in_autocast_dtype_give_identical_embeddings(voc):
    """Storing the encoder's Linear/Conv2d weights in bf16 (what the bridge does under a bf16
    dtype) changes nothing under autocast but the memory: the embedding is bit-identical."""
    from segment_anything import SamPredictor

    from sam_bridge.build import build_tiny_sam

    bridge = SamBridge.tiny(dtype="bfloat16")
    weights = dict(bridge.model.image_encoder.named_parameters())
    assert weights["patch_embed.proj.weight"].dtype == torch.bfloat16
    assert weights["blocks.0.attn.qkv.bias"].dtype == torch.bfloat16
    assert weights["pos_embed"].dtype == torch.float32  # not a matmul weight
    assert weights["blocks.0.norm1.weight"].dtype == torch.float32
    assert bridge.model.mask_decoder.iou_prediction_head.layers[0].weight.dtype == torch.float32

    reference = SamPredictor(build_tiny_sam(0))  # float32 weights, cast by autocast per call
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.inference_mode():
        reference.set_image(voc["rgb"])
    emb = bridge._embed(bridge.prepare(voc["rgb"]))
    assert torch.equal(emb.features, reference.features.float())
