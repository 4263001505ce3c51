"""Faithful tracking: with the same random weights, the project's tracker (transformers'
Sam2VideoModel behind sam_bridge.tracker, our own frame preprocessing, prompts and
propagation) gives the masks of Meta's ``sam2`` 1.1.0 ``SAM2VideoPredictor`` frame by frame,
on a short real clip (labelme's street-video frames, else a camera pan over a real photo):
two objects (a click, a box), tracked forward and backward, then a correction (a negative and a
positive click on a tracked frame) tracked again from there. Meta's predictor is built from its
own config with ``add_all_frames_to_correct_as_cond`` (a corrected frame stays a conditioning
frame, as the app's corrections do); the weights are its random ones with every tensor
perturbed (the object-score head leaning to "present", so that no mask compared is empty),
converted with transformers' key mapping. Hiera-tiny at full size on 2 cores: about
two minutes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

sam2 = pytest.importorskip(
    "sam2", reason="Meta's sam2 1.1.0 (requirements-dev.txt) is the reference"
)

from osprey.core.video import clip_from_images  # noqa: E402
from sam_bridge.sam2_convert import convert  # noqa: E402
from sam_bridge.tracker import VideoTracker  # noqa: E402
from tests.support.clips import labelme_frames, pan, photo  # noqa: E402

MAX_DIFFERING = 1e-4  # share of a frame's pixels where the two masks may differ


def _meta_predictor(seed: int = 0):
    from sam2.build_sam import build_sam2_video_predictor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictor = build_sam2_video_predictor(
            "configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu",
            hydra_overrides_extra=["++model.add_all_frames_to_correct_as_cond=true"],
        )  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in predictor.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.02 * torch.randn(tensor.shape, generator=generator))
        # random object scores sit near 0 and tracked masks would be empty on both sides:
        # "present", so the masks compared are real ones
        predictor.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.add_(4.0)
    return predictor


def _ours(predictor) -> VideoTracker:
    from transformers import Sam2VideoModel

    from sam_bridge.sam2_build import sam2_config
    from sam_bridge.sam2_video import video_config

    model = Sam2VideoModel(video_config(sam2_config("sam2.1-tiny")))
    model.load_state_dict({k: v.float() for k, v in convert(predictor.state_dict()).items()})
    return VideoTracker(model.eval())


def _clip():
    frames = labelme_frames()
    if frames is not None:
        return clip_from_images(frames[:4], fps=5), [(700, 280)], (600, 190, 990, 400)
    return clip_from_images(pan(photo("coffee.jpg"), 4, (480, 320), 10), fps=5), [(300, 160)], (
        40, 40, 260, 300)  # fmt: skip


def _compare(theirs: dict, ours: dict, stage: str) -> None:
    assert sorted(theirs) == sorted(ours), stage
    assert all(m.any() for frame in theirs.values() for m in frame.values()), stage
    for frame in sorted(theirs):
        for obj, mask in theirs[frame].items():
            mine = ours[frame][obj]
            differ = np.mean(mine != mask)
            assert differ <= MAX_DIFFERING, f"{stage}, frame {frame}, object {obj}: {differ:.2e}"


@pytest.mark.slow
def test_tracked_masks_equal_meta_sam2_video_predictor_frame_by_frame(tmp_path):
    clip, click, box = _clip()
    for i, jpeg in enumerate(clip.frames):  # Meta's predictor reads a folder of JPEG frames
        (tmp_path / f"{i:05d}.jpg").write_bytes(jpeg)
    meta = _meta_predictor()
    tracker = _ours(meta)
    tracking = tracker.open(clip)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # no CUDA extension: hole filling is skipped (both)
        state = meta.init_state(str(tmp_path))

        def meta_run(start, reverse):
            return {f: {o: m[i, 0].numpy() > 0 for i, o in enumerate(ids)}
                    for f, ids, m in meta.propagate_in_video(state, start, reverse=reverse)}  # fmt: skip

        # prompts on frame 1: a click (object 1), a box (object 2)
        _, _, m1 = meta.add_new_points_or_box(state, 1, 1, points=[click[0]], labels=[1])
        _, _, m2 = meta.add_new_points_or_box(state, 1, 2, box=list(box))
        ours1 = tracking.prompt(1, 1, points=click)
        ours2 = tracking.prompt(2, 1, box=box)
        _compare({1: {1: m1[0, 0].numpy() > 0, 2: m2[1, 0].numpy() > 0}},
                 {1: {1: ours1, 2: ours2}}, "prompts")  # fmt: skip
        for direction, reverse in (("forward", False), ("backward", True)):
            theirs = meta_run(1, reverse)
            ours = {fm.frame: fm.masks for fm in tracking.propagate(1, direction)}
            _compare(theirs, ours, direction)

        # a correction on tracked frame 2: a positive and a negative click, tracked again
        points, labels = [click[0], (click[0][0] - 150, click[0][1] + 100)], [1, 0]
        _, _, m3 = meta.add_new_points_or_box(state, 2, 1, points=points, labels=labels)
        mine = tracking.prompt(1, 2, points=points, labels=labels)
        _compare({2: {1: m3[0, 0].numpy() > 0}}, {2: {1: mine}}, "correction")
        theirs = meta_run(2, False)
        ours = {fm.frame: fm.masks for fm in tracking.propagate(2, "forward")}
        _compare(theirs, ours, "after the correction")
