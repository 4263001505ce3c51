"""Batches of training items: right-padded ids and labels, stacked images, masks kept as a list."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch

from osprey.core import constants as C


@dataclass
class Collator:
    """``items`` (from :class:`~osprey.data.dataset.OspreyDataset`) -> a batch for
    ``OspreyModel.forward``:

    * ``input_ids`` (B, T) right-padded with ``pad_token_id``; ``labels`` (B, T) padded with
      IGNORE_INDEX; ``attention_mask`` (B, T), 1 on real tokens (built from the lengths, not from
      ``ids != pad``: the pad id is also the unk id and may occur in text);
    * ``pixel_values`` (B_img, 3, S, S) for the items that have an image, in batch order (absent
      when none has), and ``masks``: one bool (Q_b, H_b, W_b) tensor per such item;
    * ``events``: the items' event counts summed, as a plain dict (the trainer pops them before
      the forward). Not a Counter: pinning a batch copies each mapping and ``update``s the copy
      with the pinned values, which adds a Counter's counts to themselves.
    """

    pad_token_id: int

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        lengths = [len(it["input_ids"]) for it in items]
        width = max(lengths)
        ids = torch.full((len(items), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(items), width), C.IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(items), width), dtype=torch.long)
        for b, (it, n) in enumerate(zip(items, lengths)):
            ids[b, :n] = it["input_ids"]
            labels[b, :n] = it["labels"]
            attention[b, :n] = 1
        batch: dict[str, Any] = {"input_ids": ids, "attention_mask": attention, "labels": labels}
        with_image = [it for it in items if it.get("pixel_values") is not None]
        if with_image:
            batch["pixel_values"] = torch.stack([it["pixel_values"] for it in with_image])
        batch["masks"] = [it["masks"] for it in with_image]
        events: Counter = Counter()
        for it in items:
            events.update(it.get("events", {}))
        batch["events"] = dict(events)
        return batch
