"""Test helpers for sam_bridge: spies on a tiny SAM (either family) and a geometric fake mask
decoder.

The fake decoder makes geometry testable with an untrained model: it outputs, in SAM's 256x256
low-resolution frame, logits that are positive within a radius of the first positive point the
prompt encoder received (or of the box centre). If the bridge mapped a click to the wrong place,
the full-resolution mask would not cover the clicked pixel. SAM 1's and SAM 2's modules take
their inputs under different names and shapes; the spies record both the same way.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

SAM2_PARTS = ("vision_config", "prompt_encoder_config", "mask_decoder_config")
LOW_RES = 256  # SAM's low-resolution logits (1024 / 4)
FRAME = 1024  # SAM's input frame


def photo(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """A real photo resized to (height, width, 3) uint8."""
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.BILINEAR))


@dataclass
class EncoderCounter:
    calls: int = 0


def count_encoder(monkeypatch, bridge) -> EncoderCounter:
    """Count forward passes of the bridge's image encoder."""
    counter = EncoderCounter()
    encoder = bridge.family.encoder
    original = encoder.forward

    def forward(*args, **kwargs):
        counter.calls += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(encoder, "forward", forward)
    return counter


@dataclass
class PromptSpy:
    """Records what SAM's prompt encoder receives (points, boxes, masks), as numpy. ``last`` is
    the calling thread's latest: clicks of several threads decode at the same time."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    latest: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def last(self) -> dict[str, Any]:
        return self.latest[threading.get_ident()]


def _numpy(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.float().cpu().numpy()


def spy_prompts(monkeypatch, bridge) -> PromptSpy:
    """Record the prompt encoder's inputs: coords (B, N, 2) and labels (B, N) in the 1024 frame,
    boxes (B, 4), masks (B, 1, 256, 256); B is SAM 2's point batch."""
    spy = PromptSpy()
    encoder = bridge.model.prompt_encoder
    original = encoder.forward

    def record(call: dict[str, Any]) -> None:
        spy.calls.append(call)
        spy.latest[threading.get_ident()] = call

    def forward(points, boxes, masks):  # SAM 1
        record({"coords": _numpy(None if points is None else points[0]),
                "labels": _numpy(None if points is None else points[1]),
                "boxes": _numpy(boxes), "masks": _numpy(masks)})  # fmt: skip
        return original(points=points, boxes=boxes, masks=masks)

    def forward2(input_points, input_labels, input_boxes, input_masks):  # SAM 2: (1, B, ...)
        record({"coords": _numpy(None if input_points is None else input_points[0]),
                "labels": _numpy(None if input_labels is None else input_labels[0]),
                "boxes": _numpy(None if input_boxes is None else input_boxes[0]),
                "masks": _numpy(input_masks)})  # fmt: skip
        return original(input_points, input_labels, input_boxes, input_masks)

    monkeypatch.setattr(encoder, "forward", forward2 if bridge.family.name == "sam2" else forward)
    return spy


@dataclass
class FakeDecoder:
    """Disks around the prompted point in SAM's 1024 frame, one radius per output mask.

    ``radii`` (in 1024-frame pixels) and ``scores`` are for the three multimask outputs;
    single-mask output uses ``single``. ``edits`` are (row, col, value) overrides in the 256x256
    logits (holes and islands); ``empty`` makes every logit negative.
    """

    spy: PromptSpy
    radii: tuple[float, float, float] = (24.0, 48.0, 96.0)
    scores: tuple[float, float, float] = (0.6, 0.9, 0.75)
    single: tuple[float, float] = (48.0, 0.8)  # radius, score
    edits: list[tuple[int, int, float]] = field(default_factory=list)
    empty: bool = False
    outputs: list[np.ndarray] = field(default_factory=list)

    def centres(self, batch: int) -> np.ndarray:
        """(B, 2) centre per batch item in the 1024 frame, SAM's pixel-centre convention."""
        call = self.spy.last
        out = np.zeros((batch, 2))
        for b in range(batch):
            if call["coords"] is not None and (call["labels"][b] == 1).any():
                out[b] = call["coords"][b][np.flatnonzero(call["labels"][b] == 1)[0]]
            else:
                x0, y0, x1, y1 = call["boxes"][b]
                out[b] = ((x0 + x1) / 2, (y0 + y1) / 2)
        return out + 0.5

    def __call__(
        self,
        image_embeddings,
        image_pe,
        sparse_prompt_embeddings,
        dense_prompt_embeddings,
        multimask_output,
    ):
        logits, iou = self.logits(sparse_prompt_embeddings.shape[0], multimask_output)
        device = sparse_prompt_embeddings.device
        return torch.from_numpy(logits).to(device), torch.from_numpy(iou).to(device)

    def sam2(self, image_embeddings, image_positional_embeddings, sparse_prompt_embeddings,
             dense_prompt_embeddings, multimask_output, high_resolution_features, **kwargs):  # fmt: skip
        """SAM 2's mask decoder: the same disks, for the (1, B, ...) point batch."""
        logits, iou = self.logits(sparse_prompt_embeddings.shape[1], multimask_output)
        device = sparse_prompt_embeddings.device
        return (
            torch.from_numpy(logits)[None].to(device),
            torch.from_numpy(iou)[None].to(device),
            None,
            None,
        )

    def logits(self, batch: int, multimask_output: bool) -> tuple[np.ndarray, np.ndarray]:
        """(B, C, 256, 256) logits and (B, C) scores."""
        grid = (np.arange(LOW_RES) + 0.5) * (FRAME / LOW_RES)
        radii, scores = (
            (self.radii, self.scores)
            if multimask_output
            else ((self.single[0],), (self.single[1],))
        )
        logits = np.zeros((batch, len(radii), LOW_RES, LOW_RES), np.float32)
        for b, (cx, cy) in enumerate(self.centres(batch)):
            dist = np.hypot(grid[None, :] - cx, grid[:, None] - cy)
            for k, r in enumerate(radii):
                logits[b, k] = -5.0 if self.empty else (r - dist) / 4.0
                for row, col, value in self.edits:
                    logits[b, k, row, col] = value
        self.outputs.append(logits)
        return logits, np.tile(np.asarray(scores, np.float32), (batch, 1))


def fake_decoder(monkeypatch, bridge, **options: Any) -> FakeDecoder:
    """Install a prompt spy and the geometric fake decoder on ``bridge``'s model."""
    spy = spy_prompts(monkeypatch, bridge)
    fake = FakeDecoder(spy, **options)
    sam2 = bridge.family.name == "sam2"
    monkeypatch.setattr(bridge.model.mask_decoder, "forward", fake.sam2 if sam2 else fake)
    return fake


def video_checkpoint(folder: Path, seed: int = 0, edit=None) -> Path:
    """A tiny SAM 2 saved the way the Hub's releases are: transformers' Sam2VideoModel
    (model_type sam2_video) as config.json + model.safetensors. ``edit(state)`` may change it."""
    from safetensors.torch import save_file
    from transformers import Sam2VideoConfig, Sam2VideoModel

    from sam_bridge.sam2_build import build_tiny_sam2

    image = build_tiny_sam2(seed)
    config = Sam2VideoConfig(**{p: getattr(image.config, p) for p in SAM2_PARTS})
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        video = Sam2VideoModel(config)  # its memory parts: random, never used by the image model
    state = {k: v.contiguous() for k, v in video.state_dict().items()}
    state.update({k: v.contiguous() for k, v in image.state_dict().items()})  # the image part
    if edit is not None:
        edit(state)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    return folder
