"""The page's ONNX decoder (segment_anything's SamOnnxModel export) against the server's torch
decoder, in python onnxruntime, on the tiny SAM and the real VOC photo: same candidates, same
scores, same low-resolution logits, and masks that agree at display resolution (IoU >= 0.99)
with the float16 embedding the page receives."""

from __future__ import annotations

import numpy as np
import pytest

from sam_bridge import SamBridge
from tests.support.page_decoder import decode, feeds, iou
from tests.support.sam import photo

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in requirements.txt")

# prompts as the app builds them: (points (x, y, label), box, refine the previous prediction)
PROMPTS = {
    "click": ([(250, 180, 1)], None),
    "negative": ([(250, 180, 1), (120, 90, 0)], None),
    "box": ([], (60, 40, 420, 330)),
    "box+point": ([(250, 180, 1)], (60, 40, 420, 330)),
}


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    b = SamBridge.tiny()
    b.onnx_dir = tmp_path_factory.mktemp("onnx")
    return b


@pytest.fixture(scope="module")
def session(bridge):
    return ort.InferenceSession(str(bridge.decoder_onnx()), providers=["CPUExecutionProvider"])


def _server(bridge, rgb, points, box, previous=None, mask_size=None):
    pts = [(x, y) for x, y, _ in points] or None
    labels = [lab for _, _, lab in points] or None
    return bridge.predict(
        rgb, points=pts, labels=labels, box=box, previous=previous, mask_size=mask_size
    )


def _page(bridge, session, rgb, points, box, previous=None, out_size=None, f16=False):
    emb = bridge.page_embedding(rgb)
    features = emb.features if f16 else bridge._cached(bridge.set_image(rgb)).features.numpy()
    inputs = feeds(features, emb.original_size, emb.input_size, points, box, previous, out_size)
    multimask = len(points) == 1 and box is None and previous is None
    return decode(session, inputs, multimask)


def test_export_is_cached_by_weights(bridge, tmp_path):
    first = bridge.decoder_onnx()
    stamp = first.stat().st_mtime_ns
    assert bridge.decoder_onnx() == first and first.stat().st_mtime_ns == stamp
    other = SamBridge.tiny(seed=1)
    other.onnx_dir = bridge.onnx_dir
    assert other.decoder_onnx() != first  # other weights, another file
    assert first.name.startswith("sam_tiny_decoder_") and first.name.endswith("_op17.onnx")


@pytest.mark.parametrize("name", list(PROMPTS))
def test_onnx_equals_torch_at_full_resolution(bridge, session, voc, name):
    points, box = PROMPTS[name]
    rgb = voc["rgb"]
    server = _server(bridge, rgb, points, box)
    masks, scores, low = _page(bridge, session, rgb, points, box)
    assert len(masks) == len(server.candidates)
    np.testing.assert_allclose(scores, [c.score for c in server.candidates], atol=1e-4)
    for m, lo, c in zip(masks, low, server.candidates):
        np.testing.assert_allclose(lo, c.logits, atol=2e-4)
        assert iou(m, c.mask) >= 0.999


def test_refinement_feeds_the_previous_logits_back(bridge, session, voc):
    """The second click refines the first prediction's best logits, as the app does."""
    rgb = voc["rgb"]
    first = _server(bridge, rgb, [(250, 180, 1)], None)
    points = [(250, 180, 1), (300, 200, 1)]
    server = _server(bridge, rgb, points, None, previous=first)
    _, scores, low = _page(bridge, session, rgb, points, None, previous=first.best.logits)
    np.testing.assert_allclose(scores, [c.score for c in server.candidates], atol=1e-4)
    np.testing.assert_allclose(low[0], server.candidates[0].logits, atol=2e-4)
    unrefined = _page(bridge, session, rgb, points, None)[2]
    assert np.abs(unrefined[0] - low[0]).max() > 1e-3  # the logits did change the answer


@pytest.mark.parametrize("size", [(375, 500), (1500, 2000)])
def test_display_size_masks_from_the_float16_embedding(bridge, session, voc, size):
    """What the page draws: masks at display size (long side <= 1024) from the float16 embedding
    agree with the server's masks at the same size (IoU >= 0.99; the server path that the page
    falls back to)."""
    rgb = photo(voc["rgb"], *size)
    scale = min(1.0, 1024 / max(size))
    shown = (round(size[0] * scale), round(size[1] * scale))
    for points, box in PROMPTS.values():
        points = [(x * size[1] / 500, y * size[0] / 375, lab) for x, y, lab in points]
        box = None if box is None else [v * size[1] / 500 for v in box]
        server = _server(bridge, rgb, points, box, mask_size=shown)
        masks, _, _ = _page(bridge, session, rgb, points, box, out_size=shown, f16=True)
        for m, c in zip(masks, server.candidates):
            assert m.shape == c.mask.shape == shown and iou(m, c.mask) >= 0.99


def test_the_8bit_decoder_is_a_quarter_of_the_size_and_decodes_the_same_prompts(bridge, voc):
    """The full-size models' page decoder is quantized to 8 bits (tried here on the tiny SAM,
    forced): its own file beside the float32 one, its matrix products in 8 bits, the same inputs
    and outputs, and candidates close to the float32 decoder's (the tiny random decoder's noisy
    logits are a harsh case: trained SAM decoders quantize well, as SAM's own web demo shows)."""
    import onnx

    from sam_bridge.onnx_export import cached_decoder

    full = bridge.decoder_onnx()
    small = cached_decoder(bridge.model, "tiny", bridge.onnx_dir, quantize=True)
    assert small.name == full.stem + "_int8.onnx"
    ops = {node.op_type for node in onnx.load(str(small)).graph.node}
    assert "MatMulInteger" in ops  # the weights' products (activation products stay float)
    assert cached_decoder(bridge.model, "tiny", bridge.onnx_dir, quantize=True) == small
    s32, s8 = (
        ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (full, small)
    )
    assert [i.name for i in s8.get_inputs()] == [i.name for i in s32.get_inputs()]
    for points, box in PROMPTS.values():
        m32, _, lo32 = _page(bridge, s32, voc["rgb"], points, box, f16=True)
        m8, _, lo8 = _page(bridge, s8, voc["rgb"], points, box, f16=True)
        assert lo8.shape == lo32.shape and np.corrcoef(lo8.ravel(), lo32.ravel())[0, 1] > 0.99
        assert iou(m8[0], m32[0]) >= 0.9
