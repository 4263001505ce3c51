"""Faithful to the release: the SAM 2.1 the project builds (transformers' Sam2Model behind
SamBridge, our own preprocessing and decoding) gives the masks and scores of Meta's ``sam2``
package (1.1.0, SAM2ImagePredictor) for the same weights, converted with transformers' key
mapping (sam_bridge.sam2_convert), on a real photo with points, negative points, a box, a box with
a point, three candidates and refinement. Random weights stand in for the released ones (which
cannot be downloaded here); every tensor is perturbed first, so none is left at a constant init
that would hide a wrong mapping. And the key mapping of every released size: Meta's model, built
from its own config file, converts to exactly the tensors (names and shapes) of transformers'
video model of our size table, of which the image model takes its part."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

sam2 = pytest.importorskip(
    "sam2", reason="Meta's sam2 1.1.0 (requirements-dev.txt) is the reference"
)

from sam_bridge import SamBridge  # noqa: E402
from sam_bridge.sam2_build import build_sam2, expected_tensors, sam2_config, size_of  # noqa: E402
from sam_bridge.sam2_convert import convert  # noqa: E402

META_CONFIGS = {
    "sam2.1-tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1-small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1-base-plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1-large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}
# (points, labels, box, multimask) on the 500x375 VOC photo
PROMPTS = {
    "click": ([(250, 180)], [1], None, True),
    "positive and negative": ([(250, 180), (100, 300)], [1, 0], None, False),
    "box": (None, None, (60, 40, 420, 330), False),
    "box and point": ([(250, 180)], [1], (60, 40, 420, 330), False),
    "box and point, three": ([(250, 180)], [1], (60, 40, 420, 330), True),
}


def meta_model(size: str, seed: int | None = None):
    """Meta's SAM 2 (the image predictor's model) from its own config, random weights; with a
    seed every tensor is perturbed."""
    from sam2.build_sam import build_sam2 as meta_build

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = meta_build(META_CONFIGS[size], ckpt_path=None, device="cpu", mode="eval")
    if seed is not None:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for tensor in model.state_dict().values():
                if tensor.is_floating_point():
                    tensor.add_(0.02 * torch.randn(tensor.shape, generator=generator))
    return model


@pytest.mark.parametrize("size", list(META_CONFIGS))
def test_meta_checkpoints_convert_to_exactly_the_tensors_of_our_size_table(size):
    from transformers import Sam2VideoConfig, Sam2VideoModel

    converted = convert(meta_model(size).state_dict())
    config = sam2_config(size)
    own, video_only = expected_tensors(config)
    with torch.device("meta"):
        video = Sam2VideoModel(Sam2VideoConfig(**{k: getattr(config, k) for k in (
            "vision_config", "prompt_encoder_config", "mask_decoder_config")}))  # fmt: skip
    shapes = {k: tuple(v.shape) for k, v in video.state_dict().items()}
    assert set(converted) == set(shapes) == set(own) | video_only
    assert {k: tuple(v.shape) for k, v in converted.items()} == shapes
    assert size_of(config) == size
    assert torch.equal(  # the Gaussian matrix is shared by the prompt encoder and the model
        converted["shared_image_embedding.positional_embedding"],
        converted["prompt_encoder.shared_embedding.positional_embedding"],
    )


@pytest.mark.slow
def test_transformers_sam2_gives_meta_sam2_masks_on_a_real_photo(voc):
    """Hiera-tiny at full size, two encoder runs (about 15 s on 2 cores)."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    meta = meta_model("sam2.1-tiny", seed=0)
    ours = SamBridge(build_sam2("sam2.1-tiny", convert(meta.state_dict())), device="cpu")
    with warnings.catch_warnings():  # its transforms use torch.jit.script (deprecated)
        warnings.simplefilter("ignore")
        reference = SAM2ImagePredictor(meta)  # threshold 0, no hole filling: Meta's defaults
    rgb = voc["rgb"]
    with torch.inference_mode():
        reference.set_image(rgb)
    key = ours.set_image(rgb)
    emb = ours._cached(key)
    torch.testing.assert_close(
        emb.features, reference._features["image_embed"], atol=1e-5, rtol=1e-5
    )
    for mine, theirs in zip(emb.high_res, reference._features["high_res_feats"]):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)

    for name, (points, labels, box, multimask) in PROMPTS.items():
        masks, scores, low = reference.predict(
            None if points is None else np.array(points, float),
            None if labels is None else np.array(labels),
            None if box is None else np.array(box, float),
            multimask_output=multimask,
        )
        order = np.argsort(-scores, kind="stable")  # the bridge sorts candidates by score
        pred = ours.predict(key, points=points, labels=labels, box=box, multimask=multimask)
        got = pred.candidates
        assert len(got) == len(order), name
        np.testing.assert_allclose([c.score for c in got], scores[order], atol=1e-5, err_msg=name)
        np.testing.assert_allclose(np.stack([c.logits for c in got]), low[order], atol=1e-4)
        disagree = np.mean(np.stack([c.mask for c in got]) != masks[order].astype(bool))
        assert disagree < 1e-4, f"{name}: {disagree:.2e} of the pixels differ"
        assert all(c.area > 0 for c in got)

        # refinement: the best candidate's logits fed back with one more negative click
        clicks, marks = (points or [(250, 180)]) + [(420, 60)], (labels or [1]) + [0]
        _, scores2, low2 = reference.predict(
            np.array(clicks, float), np.array(marks), None, mask_input=low[order][:1],
            multimask_output=False,
        )  # fmt: skip
        refined = ours.predict(key, points=clicks, labels=marks, previous=got[0], multimask=False)
        assert refined.best.score == pytest.approx(float(scores2[0]), abs=1e-5)
        np.testing.assert_allclose(refined.candidates[0].logits, low2[0], atol=1e-4)
