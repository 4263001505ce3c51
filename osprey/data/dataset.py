"""The training dataset: a mixture of sources, tokenised with ``osprey.inference.prompt_format.encode``.

Item ``i`` of the mixture is record ``i - offset`` of the source it falls in (concatenation, as
the original's ``ConcatDataset``). Its random choices come from a generator seeded with
``(seed, epoch, i)``: the same item is the same sample whenever it is drawn in the same epoch,
which makes resumed runs see exactly the data they would have seen.

A record that cannot become a sample (unreadable image, empty mask, a render error, ...) is never
silently dropped: the dataset moves on to the next index and the rejection travels with the
returned item in ``events`` (a Counter of ``"<source>/<what>/<reason>"``), which the trainer sums
and reports. Conversations longer than the context lose their trailing turns (and the regions
those turns introduced) until they fit, also counted.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from osprey.data.sample import Rejected, Sample
from osprey.data.sources.base import Source
from osprey.inference.preprocess import preprocess_image
from osprey.inference.prompt_format import (
    TEMPLATES,
    ContextLengthError,
    Encoded,
    RenderError,
    Template,
    Turn,
    encode,
)

# Consecutive rejected records after which the data is declared broken rather than noisy.
MAX_CONSECUTIVE_REJECTIONS = 64


def training_template(tokenizer, name: str = "vicuna_v1") -> Template:
    """The conversation template to train with. Vicuna-family tokenizers end answers with
    ``</s>`` (their EOS); for another LLM (SmolLM2, ...) the answer terminator becomes that
    tokenizer's own EOS token, so that generation learns to stop."""
    template = TEMPLATES[name]
    eos = tokenizer.eos_token
    if eos is None:
        raise ValueError("the tokenizer has no EOS token to end answers with")
    return template if eos == template.sep2 else replace(template, sep2=eos)


def read_training_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB as stored. No EXIF rotation: the annotations of COCO, VG and VCR are
    in the stored pixel grid (the original also read images with a plain ``convert('RGB')``)."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise Rejected("unreadable_image", f"{path}: {exc}") from exc


@dataclass(frozen=True)
class EncodeSettings:
    """What tokenisation needs to know about the model (read from its config)."""

    num_image_tokens: int
    mask_token_id: int
    pos_token_id: int
    template: Template
    max_length: int
    image_size: int


def fit_context(tokenizer, turns: list[Turn], settings: EncodeSettings) -> tuple[Encoded, int]:
    """Encode ``turns``, dropping trailing turns until the result fits ``settings.max_length``.
    Returns (encoded, number of turns kept); Rejected when not even the first turn fits or the
    conversation does not render."""
    for keep in range(len(turns), 0, -1):
        try:
            enc = encode(
                tokenizer,
                turns[:keep],
                num_image_tokens=settings.num_image_tokens,
                mask_token_id=settings.mask_token_id,
                pos_token_id=settings.pos_token_id,
                template=settings.template,
                max_length=settings.max_length,
            )
        except ContextLengthError:
            continue
        except RenderError as exc:
            raise Rejected("render_error", str(exc)) from exc
        return enc, keep
    raise Rejected("too_long", f"the first turn alone exceeds {settings.max_length} tokens")


class OspreyDataset(torch.utils.data.Dataset):
    """A mixture of sources as tokenised training items.

    Item: ``input_ids`` / ``labels`` (T,) int64, ``pixel_values`` (3, S, S) float32 or None for a
    text-only sample, ``masks`` bool (Q, H, W) (None for a text-only sample) and ``events``.
    """

    def __init__(
        self, sources: list[Source], tokenizer, settings: EncodeSettings, *, seed: int = 0
    ):
        if not sources:
            raise ValueError("no sources")
        self.sources = sources
        self.tokenizer = tokenizer
        self.settings = settings
        self.seed = seed
        self.epoch = 0
        self.offsets = np.cumsum([0, *(len(s) for s in sources)]).tolist()
        if self.offsets[-1] == 0:
            raise ValueError("every source is empty: " + str([s.report() for s in sources]))

    def __len__(self) -> int:
        return self.offsets[-1]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def locate(self, index: int) -> tuple[Source, int]:
        k = bisect.bisect_right(self.offsets, index) - 1
        return self.sources[k], index - self.offsets[k]

    def report(self) -> list[dict[str, Any]]:
        return [s.report() for s in self.sources]

    def __getitem__(self, index: int) -> dict[str, Any]:
        events: Counter = Counter()
        for attempt in range(MAX_CONSECUTIVE_REJECTIONS):
            j = (index + attempt) % len(self)
            try:
                item = self.build(j)
            except Rejected as rej:
                events[f"{self.locate(j)[0].name}/rejected/{rej.reason}"] += 1
                continue
            events.update(item.pop("events"))
            item["events"] = events
            return item
        raise RuntimeError(
            f"{MAX_CONSECUTIVE_REJECTIONS} consecutive records from index {index} were rejected "
            f"({dict(events)}): check the dataset paths and formats"
        )

    def build(self, index: int) -> dict[str, Any]:
        """The item for mixture index ``index`` (Rejected if it cannot be one)."""
        source, local = self.locate(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        sample = source.sample(local, rng)
        events = Counter({f"{source.name}/{k}": v for k, v in sample.events.items()})
        enc, kept = fit_context(self.tokenizer, sample.turns, self.settings)
        if kept < len(sample.turns):
            events[f"{source.name}/truncated/turns"] += len(sample.turns) - kept
            events[f"{source.name}/truncated/regions"] += len(sample.masks) - enc.num_regions
        masks = sample.masks[: enc.num_regions]
        if enc.num_regions != len(masks):
            raise Rejected("region_count_mismatch", f"{enc.num_regions} placeholders")
        pixels, mask_tensor = self._image_and_masks(sample, masks, enc.has_image)
        events[f"{source.name}/samples"] += 1
        return {
            "input_ids": torch.tensor(enc.input_ids, dtype=torch.long),
            "labels": torch.tensor(enc.labels, dtype=torch.long),
            "pixel_values": pixels,
            "masks": mask_tensor,
            "events": events,
        }

    def _image_and_masks(
        self, sample: Sample, masks: list[np.ndarray], has_image_token: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if sample.image_path is None:
            if has_image_token or masks:
                raise Rejected("image_token_without_image")
            return None, None
        if not has_image_token:
            raise Rejected("image_without_image_token")
        rgb = read_training_image(sample.image_path)
        shape = rgb.shape[:2]
        if sample.size is not None and tuple(sample.size) != shape:
            raise Rejected("image_size_mismatch", f"annotation {sample.size}, image {shape}")
        if any(m.shape != shape for m in masks):
            raise Rejected("mask_size_mismatch", f"image {shape}")
        stacked = np.stack(masks) if masks else np.zeros((0, *shape), dtype=bool)
        pixels = preprocess_image(rgb, self.settings.image_size)
        return pixels, torch.from_numpy(stacked.astype(bool))
