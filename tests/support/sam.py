"""Test helpers for sam_bridge: spies on a tiny SAM and a geometric fake mask decoder.

The fake decoder makes geometry testable with an untrained model: it outputs, in SAM's 256x256
low-resolution frame, logits that are positive within a radius of the first positive point the
prompt encoder received (or of the box centre). If the bridge mapped a click to the wrong place,
the full-resolution mask would not cover the clicked pixel.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

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
    encoder = bridge.model.image_encoder
    original = encoder.forward

    def forward(x):
        counter.calls += 1
        return original(x)

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


def spy_prompts(monkeypatch, bridge) -> PromptSpy:
    spy = PromptSpy()
    encoder = bridge.model.prompt_encoder
    original = encoder.forward

    def forward(points, boxes, masks):
        spy.calls.append(
            call := {
                "coords": None if points is None else points[0].float().cpu().numpy(),
                "labels": None if points is None else points[1].cpu().numpy(),
                "boxes": None if boxes is None else boxes.float().cpu().numpy(),
                "masks": None if masks is None else masks.float().cpu().numpy(),
            }
        )
        spy.latest[threading.get_ident()] = call
        return original(points=points, boxes=boxes, masks=masks)

    monkeypatch.setattr(encoder, "forward", forward)
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
        batch = sparse_prompt_embeddings.shape[0]
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
        iou = np.tile(np.asarray(scores, np.float32), (batch, 1))
        device = sparse_prompt_embeddings.device
        return torch.from_numpy(logits).to(device), torch.from_numpy(iou).to(device)


def fake_decoder(monkeypatch, bridge, **options: Any) -> FakeDecoder:
    """Install a prompt spy and the geometric fake decoder on ``bridge``'s model."""
    spy = spy_prompts(monkeypatch, bridge)
    fake = FakeDecoder(spy, **options)
    monkeypatch.setattr(bridge.model.mask_decoder, "forward", fake)
    return fake
