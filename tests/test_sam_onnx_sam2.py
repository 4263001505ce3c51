"""SAM 2's page decoder (sam_bridge/sam2_onnx.py) against the server's torch decoder, in python
onnxruntime, on the tiny SAM 2 and the real VOC photo: the same candidates, scores and
low-resolution logits for every prompt kind and refinement; display-size masks from the float16
maps as the page receives them (packed, gzip) agree with the server's preview; SAM 2's dynamic
single-mask choice is the one transformers makes; the file is cached by weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from osprey.app.canvas_page import pack_maps
from sam_bridge import SamBridge
from sam_bridge.sam2_onnx import Sam2PageDecoder
from tests.support.page_decoder import decode, feeds_sam2, iou, unpack_maps
from tests.support.sam import photo

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in requirements.txt")

PROMPTS = {  # (points (x, y, label), box)
    "click": ([(250, 180, 1)], None),
    "negative": ([(250, 180, 1), (120, 90, 0)], None),
    "box": ([], (60, 40, 420, 330)),
    "box+point": ([(250, 180, 1)], (60, 40, 420, 330)),
    "box+points": ([(250, 180, 1), (400, 300, 0)], (60, 40, 420, 330)),
}


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    b = SamBridge.tiny(family="sam2")
    b.onnx_dir = tmp_path_factory.mktemp("onnx")
    return b


@pytest.fixture(scope="module")
def session(bridge):
    return ort.InferenceSession(str(bridge.decoder_onnx()), providers=["CPUExecutionProvider"])


def _server(bridge, rgb, points, box, previous=None, mask_size=None):
    pts = [(x, y) for x, y, _ in points] or None
    labels = [lab for _, _, lab in points] or None
    return bridge.predict(rgb, points=pts, labels=labels, box=box, previous=previous,
                          mask_size=mask_size)  # fmt: skip


def _maps(bridge, rgb, f16=False):
    if f16:
        return list(bridge.page_embedding(rgb).maps)
    emb = bridge._cached(bridge.set_image(rgb))
    return [t.numpy() for t in (emb.features, *emb.high_res)]


def test_export_is_cached_by_weights(bridge):
    first = bridge.decoder_onnx()
    assert first.name.startswith("sam2_sam2.1-tiny-random_decoder_") and first.suffix == ".onnx"
    stamp = first.stat().st_mtime_ns
    assert bridge.decoder_onnx() == first and first.stat().st_mtime_ns == stamp
    other = SamBridge.tiny(family="sam2", seed=1)
    other.onnx_dir = bridge.onnx_dir
    assert other.decoder_onnx() != first


@pytest.mark.parametrize("name", list(PROMPTS))
def test_onnx_equals_torch_at_full_resolution(bridge, session, voc, name):
    points, box = PROMPTS[name]
    rgb = voc["rgb"]
    server = _server(bridge, rgb, points, box)
    multimask = len(points) == 1 and box is None
    masks, scores, low = decode(session, feeds_sam2(_maps(bridge, rgb), (375, 500), points, box),
                                multimask)  # fmt: skip
    assert len(scores) == len(server.candidates) == (3 if multimask else 1)
    np.testing.assert_allclose(scores, [c.score for c in server.candidates], atol=1e-5)
    np.testing.assert_allclose(low, np.stack([c.logits for c in server.candidates]), atol=1e-4)
    for mine, theirs in zip(masks, server.candidates):
        assert iou(mine, theirs.mask) >= 0.999


def test_refinement_feeds_the_previous_logits_back(bridge, session, voc):
    rgb = voc["rgb"]
    first = _server(bridge, rgb, [(250, 180, 1)], None)
    points = [(250, 180, 1), (420, 60, 0)]
    server = _server(bridge, rgb, points, None, previous=first)
    inputs = feeds_sam2(_maps(bridge, rgb), (375, 500), points, None, first.best.logits)
    masks, scores, low = decode(session, inputs, multimask=False)
    assert scores[0] == pytest.approx(server.best.score, abs=1e-5)
    np.testing.assert_allclose(low[0], server.best.logits, atol=1e-4)
    assert iou(masks[0], server.best.mask) >= 0.999


@pytest.mark.parametrize("size", [(375, 500), (1500, 2000)])
def test_display_size_masks_from_the_packed_float16_maps(bridge, session, voc, size):
    """What the page gets: the maps in float16, packed and gzipped, masks at display size."""
    rgb = photo(voc["rgb"], *size)
    page = bridge.page_embedding(rgb)
    maps = unpack_maps(pack_maps(page.maps), [m.shape for m in page.maps])
    assert all(np.array_equal(a, b) for a, b in zip(maps, page.maps))
    shown = (size[0] * 1024 // max(size), size[1] * 1024 // max(size))
    for name, (points, box) in PROMPTS.items():
        points = [(x * size[1] / 500, y * size[0] / 375, lab) for x, y, lab in points]
        box = None if box is None else [v * size[1] / 500 for v in box]
        multimask = len(points) == 1 and box is None
        masks, _, _ = decode(
            session, feeds_sam2(maps, size, points, box, out_size=shown), multimask
        )
        server = _server(bridge, rgb, points, box, mask_size=shown)
        assert masks.shape[1:] == shown
        for mine, theirs in zip(masks, server.candidates):
            assert iou(mine, theirs.mask) >= 0.99, name


def test_the_single_mask_is_sam2s_dynamic_choice(bridge):
    """Output 0: the decoder's own mask where stable, else the best of the three (by IoU), as
    transformers' mask decoder chooses with multimask_output=False."""
    wrapper = Sam2PageDecoder(bridge.model).eval()
    grid = torch.linspace(-3, 3, 256)
    stable = (grid[None, :] + 0 * grid[:, None]) * 100  # a sharp edge: stable
    unstable = torch.full((256, 256), 0.01)  # every logit near 0: unstable
    for first in (stable, unstable):
        low = torch.stack([first, -stable, stable.T, stable.flip(1)])[None]  # (1, 4, 256, 256)
        scores = torch.tensor([[0.5, 0.2, 0.9, 0.4]])
        got_low, got_iou = wrapper.single(low, scores)
        want_low, want_iou = bridge.model.mask_decoder._dynamic_multimask_via_stability(
            low[:, None], scores[:, None]
        )
        assert torch.equal(got_low[:, :1], want_low[:, 0]) and torch.equal(
            got_iou[:, :1], want_iou[:, 0]
        )
        assert torch.equal(got_low[:, 1:], low[:, 1:])  # the three candidates as they are
    assert not torch.equal(wrapper.single(low, scores)[0][:, 0], low[:, 0])  # the fallback ran


def test_the_image_pe_is_computed_in_the_graph_not_stored(bridge):
    wrapper = Sam2PageDecoder(bridge.model).eval()
    emb = torch.zeros(1, 32, 64, 64)
    torch.testing.assert_close(
        wrapper.image_pe(emb), bridge.model.get_image_wide_positional_embeddings()
    )


def test_the_full_size_8bit_decoder_is_a_third_of_the_size_and_decodes_alike(tmp_path):
    """The released sizes share one decoder architecture: SAM 2.1 tiny's (random weights)."""
    from sam_bridge.sam2_build import build_sam2
    from sam_bridge.sam2_onnx import cached_decoder, example_inputs

    model = build_sam2("sam2.1-tiny")
    full = cached_decoder(model, "sam2.1-tiny", tmp_path, quantize=False)
    small = cached_decoder(model, "sam2.1-tiny", tmp_path)  # trained sizes: 8 bits by default
    assert small.name.endswith("_int8.onnx") and small.stat().st_size < full.stat().st_size / 3
    assert full.stat().st_size < 18e6  # no 4 MiB positional-encoding constant in the file
    torch.manual_seed(0)
    inputs = [t.numpy() for t in example_inputs(model)]
    inputs[4] = np.array([[1.0, -1.0]], np.float32)  # one click and the padding point
    inputs[3] = np.array([[[300.0, 500.0], [0.0, 0.0]]], np.float32)
    inputs[6] = np.array([0.0], np.float32)
    names = [i.name for i in ort.InferenceSession(str(full)).get_inputs()]
    feeds = dict(zip(names, inputs))
    a = ort.InferenceSession(str(full)).run(None, feeds)
    b = ort.InferenceSession(str(small)).run(None, feeds)
    assert np.abs(a[1] - b[1]).max() < 0.05  # IoU predictions
    for k in range(4):
        assert iou(a[0][0, k] > 0, b[0][0, k] > 0) > 0.9
