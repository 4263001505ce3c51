"""Track objects through a clip with SAM 2.1's video model (transformers' ``Sam2VideoModel``),
computing what Meta's ``SAM2VideoPredictor`` computes (``sam2`` 1.1.0, with
``add_all_frames_to_correct_as_cond``: a frame that gets clicks becomes a conditioning frame,
so a correction is kept when the clip is tracked again).

:class:`VideoTracker` is the shared model (one tracking step at a time, so visitors' clips
interleave frame by frame); :meth:`VideoTracker.open` gives a :class:`Tracking` per clip: clicks,
negative clicks and boxes on any frame give that frame's mask at once (:meth:`Tracking.prompt`,
prompts held apart until the clip is tracked, as Meta's predictor holds them), and
:meth:`Tracking.propagate` tracks every object forward and backward from a frame, one frame
at a time, stoppable between frames.

Geometry and preprocessing are Meta's video predictor's (the one owner here): a frame is resized
to 1024x1024 by PIL (``Image.resize`` with its default filter) from its uint8 pixels, scaled to
[0, 1] and normalised with ImageNet's mean and std; points scale per axis; a mask is the
256x256 logits resized straight to the frame (bilinear) and thresholded at 0. Frames are read
from the clip's JPEG bytes when the model needs them (one at a time), never held as tensors.

Memory per tracked frame and object: the 256x256 logits (256 KB), the memory features (64
channels of 64x64 in bfloat16, 512 KB) and the object pointer, as Meta's predictor keeps them;
the full-resolution mask the model makes on the way is dropped and the memories' positional
encoding (the same for every frame) is kept once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from sam_bridge.errors import SamBridgeError
from sam_bridge.prompts import make_prompt

PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)
LOGIT_CLAMP = 32.0  # previous logits fed back with new clicks (Meta's clamp)
DIRECTIONS = ("both", "forward", "backward")


class Frames(Protocol):
    """What a tracker reads of a clip (``osprey.core.video.VideoClip`` is one)."""

    width: int
    height: int

    def __len__(self) -> int: ...

    def pil(self, index: int) -> Image.Image: ...


@dataclass(frozen=True)
class FrameMasks:
    """Every object's mask on one frame: ``masks[obj]`` bool (H, W) (empty where the object is
    not seen) and ``scores[obj]`` the model's object score (> 0: present)."""

    frame: int
    masks: dict[int, np.ndarray]
    scores: dict[int, float]


class _Pixels(Mapping):
    """Frame index -> (3, S, S) float32 normalised pixels, made from the clip when read (the
    inference session's ``processed_frames``; it reads one frame per image-encoder run)."""

    def __init__(self, frames: Frames, size: int):
        self.frames, self.size = frames, size
        self.mean = torch.tensor(PIXEL_MEAN, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(PIXEL_STD, dtype=torch.float32)[:, None, None]

    def __getitem__(self, index: int) -> torch.Tensor:
        resized = np.array(self.frames.pil(index).resize((self.size, self.size))) / 255.0
        x = torch.from_numpy(resized).permute(2, 0, 1).to(torch.float32)
        return (x - self.mean) / self.std

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.frames)))


class VideoTracker:
    """SAM 2.1's video model, shared by every clip. ``state_on_cpu_after``: clips longer than
    this many frames keep their tracking state in CPU memory when the model is on a GPU."""

    def __init__(
        self, model: Any, *, autocast_dtype: torch.dtype | None = None,
        state_on_cpu_after: int = 64, untrained: bool = False,
    ):  # fmt: skip
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.autocast_dtype = autocast_dtype
        self.state_on_cpu_after = state_on_cpu_after
        self.untrained = untrained
        self.size = int(model.config.image_size)
        self.lock = threading.Lock()  # one tracking step at a time

    @classmethod
    def for_bridge(cls, bridge: Any, weights: str | None = None) -> VideoTracker:
        """The tracker beside a SAM 2 :class:`~sam_bridge.SamBridge`, sharing its model's
        tensors, with the video parts read from ``weights`` (the checkpoint's
        model.safetensors; None: random ones, for benchmarks). An untrained (tiny) bridge gets
        the tiny tracker."""
        from sam_bridge.sam2_video import build_video_model

        if getattr(bridge.family, "name", "") != "sam2":
            raise SamBridgeError(
                "video tracking needs SAM 2.1 (--sam sam2.1-tiny ... sam2.1-large, or auto); "
                f"this app runs {bridge.model_type}"
            )
        if bridge.untrained:
            return cls.tiny()
        model = build_video_model(bridge.model, weights)
        return cls(model, autocast_dtype=bridge.autocast_dtype)

    @classmethod
    def tiny(cls, seed: int = 0, device: str = "cpu") -> VideoTracker:
        """A tiny random-weight tracker (untrained: its masks are meaningless), for tests and
        ``--tiny``."""
        from sam_bridge.sam2_video import build_tiny_video

        return cls(build_tiny_video(seed).to(device), untrained=True)

    def open(self, frames: Frames) -> Tracking:
        """A tracking session over ``frames`` (nothing is encoded yet)."""
        return Tracking(self, frames)

    def context(self):
        """The lock, inference mode and (when set) autocast of one tracking step."""
        dtype = self.autocast_dtype
        auto = nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)
        return _Step(self.lock, auto)


class _Step:
    def __init__(self, lock: threading.Lock, autocast: Any):
        self.lock, self.autocast, self.mode = lock, autocast, torch.inference_mode()

    def __enter__(self) -> None:
        self.lock.acquire()
        self.mode.__enter__()
        self.autocast.__enter__()

    def __exit__(self, *exc: Any) -> None:
        try:
            self.autocast.__exit__(*exc)
            self.mode.__exit__(*exc)
        finally:
            self.lock.release()


class Tracking:
    """One clip's tracking: objects (by the caller's integer ids), their prompts and the
    model's memory of every frame tracked."""

    def __init__(self, tracker: VideoTracker, frames: Frames):
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

        self.tracker, self.model, self.frames = tracker, tracker.model, frames
        device = tracker.device
        state = device if len(frames) <= tracker.state_on_cpu_after else torch.device("cpu")
        self.session = Sam2VideoInferenceSession(
            video_height=frames.height, video_width=frames.width, inference_device=device,
            inference_state_device=state, video_storage_device="cpu", dtype=torch.float32,
        )  # fmt: skip
        self.session.processed_frames = _Pixels(frames, tracker.size)
        self._pending: dict[tuple[int, int], dict[str, Any]] = {}  # (obj index, frame) -> out
        self._pos_enc: torch.Tensor | None = None

    @property
    def objects(self) -> list[int]:
        return list(self.session.obj_ids)

    # -- prompts ---------------------------------------------------------------------------------

    def prompt(self, obj: int, frame: int, points=None, labels=None, box=None) -> np.ndarray:
        """Clicks (``points`` (N, 2) x, y in the frame's pixels, ``labels`` 1/0) and/or a ``box``
        for object ``obj`` on ``frame``, replacing that object's earlier prompt there: its mask
        on that frame now, bool (H, W). On a frame already tracked (a correction), the clicks
        refine what was tracked there, with the clip's memory."""
        frame = self._frame(frame)
        prompt = self._checked(obj, frame, points, labels, box)
        s, m = self.session, self.model
        with self.tracker.context():
            idx = s.obj_id_to_idx(int(obj))
            inputs = self._point_inputs(prompt)
            s.add_point_inputs(idx, frame, inputs)
            s.remove_mask_inputs(idx, frame)
            tracked = s.frames_tracked_per_obj[idx]
            first = frame not in tracked
            previous = self._previous(idx, frame)
            out = m._run_single_frame_inference(
                inference_session=s, frame_idx=frame, obj_idx=idx, batch_size=1,
                is_init_cond_frame=first, point_inputs=s.point_inputs_per_obj[idx][frame],
                mask_inputs=None, reverse=False if first else tracked[frame]["reverse"],
                prev_sam_mask_logits=previous,
            )  # fmt: skip
            self._pending[idx, frame] = out
            return self._to_frame(out["pred_masks"])[0]

    def _checked(self, obj: int, frame: int, points, labels, box):
        """The prompt checked (sam_bridge.prompts); negative clicks alone are a correction of
        what the object already has on ``frame``, refused where it has nothing."""
        size = (self.frames.height, self.frames.width)
        negative_only = (
            box is None and points is not None and labels is not None and len(labels) > 0
            and all(int(v) == 0 for v in labels)
        )  # fmt: skip
        if not negative_only:
            return make_prompt(size, points, labels, box)
        idx = self.session._obj_id_to_idx.get(int(obj))
        if idx is None or self._previous(idx, frame) is None:
            raise SamBridgeError(
                "only negative clicks: give a positive click or a box first (a negative click "
                "corrects a mask the object already has on this frame)"
            )
        checked = make_prompt(size, points, [1] * len(labels))
        return type(checked)(size, checked.points, np.zeros(len(labels), np.int32), None)

    def _frame(self, frame: Any) -> int:
        n = len(self.frames)
        if (
            isinstance(frame, bool)
            or not isinstance(frame, (int, np.integer))
            or not 0 <= frame < n
        ):
            raise SamBridgeError(f"frame {frame!r} is outside the clip (0 to {n - 1})")
        return int(frame)

    def _point_inputs(self, prompt) -> dict[str, torch.Tensor]:
        """The prompt in the 1024 frame as Meta's predictor builds it: a box is its two corners,
        labelled 2 and 3, before the clicks."""
        coords, labels = [], []
        if prompt.box is not None:
            coords += [prompt.box[:2], prompt.box[2:]]
            labels += [2, 3]
        if prompt.points is not None:
            coords += list(prompt.points)
            labels += prompt.labels.tolist()
        scale = torch.tensor([self.frames.width, self.frames.height], dtype=torch.float32)
        xy = torch.tensor(np.array(coords), dtype=torch.float32) / scale * self.tracker.size
        device = self.tracker.device
        return {"point_coords": xy[None, None].to(device),
                "point_labels": torch.tensor(labels, dtype=torch.int32)[None, None].to(device)}  # fmt: skip

    def _previous(self, idx: int, frame: int) -> torch.Tensor | None:
        """The logits this object last had on ``frame`` (fed to the decoder with new clicks)."""
        out = self._pending.get((idx, frame))
        if out is None:
            outputs = self.session.output_dict_per_obj[idx]
            out = outputs["cond_frame_outputs"].get(frame)
            out = out if out is not None else outputs["non_cond_frame_outputs"].get(frame)
        if out is None or out.get("pred_masks") is None:
            return None
        return out["pred_masks"].to(self.tracker.device).clamp(-LOGIT_CLAMP, LOGIT_CLAMP)

    def _to_frame(self, logits: torch.Tensor) -> np.ndarray:
        """(B, 1, 256, 256) logits -> bool (B, H, W) masks at the frame's size."""
        size = (self.frames.height, self.frames.width)
        up = F.interpolate(logits.float(), size, mode="bilinear", align_corners=False)
        return (up[:, 0] > 0).cpu().numpy()

    # -- propagation -----------------------------------------------------------------------------

    def propagate(
        self, start: int | None = None, direction: str = "both",
        stop: threading.Event | None = None,
    ) -> Iterator[FrameMasks]:  # fmt: skip
        """Track every object from ``start`` (default: the first frame with a prompt) to the
        end (``forward``), to the beginning (``backward``) or both (forward first), yielding
        each frame's masks as it is done; between frames it stops when ``stop`` is set (or the
        caller stops reading). Frames with prompts keep their prompted masks."""
        if direction not in DIRECTIONS:
            raise SamBridgeError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if not self.session.obj_ids:
            raise SamBridgeError("nothing to track: click on an object first")
        with self.tracker.context():
            self._commit_prompts()
        if start is None:
            start = min(f for out in self.session.output_dict_per_obj.values()
                        for f in out["cond_frame_outputs"])  # fmt: skip
        start = self._frame(start)
        for frame, reverse in self.order(start, direction):
            if stop is not None and stop.is_set():
                return
            yield self._step(frame, reverse)

    def order(self, start: int, direction: str = "both") -> list[tuple[int, bool]]:
        """(frame, reverse) in the order :meth:`propagate` tracks them."""
        n = len(self.frames)
        forward = [(f, False) for f in range(start, n)] if direction != "backward" else []
        back = [(f, True) for f in range(start, -1, -1)] if direction != "forward" else []
        return forward + (back[1:] if direction == "both" else back)  # the start frame once

    def _step(self, frame: int, reverse: bool) -> FrameMasks:
        s = self.session
        with self.tracker.context():
            out = self.model(s, frame_idx=frame, reverse=reverse)
            for idx in range(s.get_obj_num()):
                s.frames_tracked_per_obj[idx][frame] = {"reverse": reverse}
                self._compact(idx, frame)
            masks = self._to_frame(out.pred_masks)
            scores = out.object_score_logits.float().reshape(-1).cpu().tolist()
        ids = list(out.object_ids)
        return FrameMasks(frame, dict(zip(ids, masks)), dict(zip(ids, scores)))

    def _commit_prompts(self) -> None:
        """Make the prompted frames conditioning frames with their memories (Meta's
        ``propagate_in_video_preflight``): encoded now, from the masks the prompts gave."""
        s, m = self.session, self.model
        for (idx, frame), out in sorted(self._pending.items()):
            feats, _ = m._prepare_vision_features(s, frame, batch_size=1)
            features, pos = m._encode_new_memory(
                current_vision_feats=feats[-1], pred_masks_high_res=out["high_res_masks"],
                object_score_logits=out["object_score_logits"], is_mask_from_pts=True,
            )  # fmt: skip
            out = {**out, "maskmem_features": features, "maskmem_pos_enc": pos}
            s.store_output(idx, frame, output_value=out, is_conditioning_frame=True)
            s.output_dict_per_obj[idx]["non_cond_frame_outputs"].pop(frame, None)
            self._compact(idx, frame)
        self._pending.clear()

    def _compact(self, idx: int, frame: int) -> None:
        """Keep what later frames read: drop the full-resolution mask, share the positional
        encoding of the memories (the same for every frame)."""
        outputs = self.session.output_dict_per_obj[idx]
        out = outputs["cond_frame_outputs"].get(frame) or outputs["non_cond_frame_outputs"].get(
            frame
        )
        if out is None:
            return
        out.pop("high_res_masks", None)
        pos = out.get("maskmem_pos_enc")
        if pos is not None:
            if self._pos_enc is None:
                self._pos_enc = pos.clone()
            if torch.equal(pos, self._pos_enc):
                out["maskmem_pos_enc"] = self._pos_enc

    # -- objects ---------------------------------------------------------------------------------

    def remove(self, obj: int) -> None:
        """Forget object ``obj`` (its prompts and memory); the others keep theirs."""
        s = self.session
        with self.tracker.context():
            if obj not in s._obj_id_to_idx:
                return
            gone = s._obj_id_to_idx[obj]
            keep = [i for i in range(s.get_obj_num()) if i != gone]
            ids = [s.obj_idx_to_id(i) for i in keep]
            for table in (s.point_inputs_per_obj, s.mask_inputs_per_obj,
                          s.output_dict_per_obj, s.frames_tracked_per_obj):  # fmt: skip
                moved = [table[i] for i in keep]
                table.clear()
                table.update(enumerate(moved))
            s._obj_id_to_idx.clear()
            s._obj_idx_to_id.clear()
            s._obj_id_to_idx.update((o, i) for i, o in enumerate(ids))
            s._obj_idx_to_id.update(enumerate(ids))
            s.obj_ids = ids
            self._pending = {
                (keep.index(i), f): v for (i, f), v in self._pending.items() if i != gone
            }

    def close(self) -> None:
        """Free the memory of every frame (the clip's own frames are the caller's)."""
        with self.tracker.context():
            self.session.reset_inference_session()
            self.session.cache.clear_all()
            self._pending.clear()
            self._pos_enc = None

    def state_bytes(self) -> int:
        """Bytes of tracking state held (memories, logits, pointers)."""
        seen, total = set(), 0
        for outputs in self.session.output_dict_per_obj.values():
            for table in outputs.values():
                for out in table.values():
                    for value in out.values():
                        if isinstance(value, torch.Tensor):
                            storage = value.untyped_storage()
                            if storage.data_ptr() not in seen:
                                seen.add(storage.data_ptr())
                                total += storage.nbytes()
        return total
