"""LLaVA-format conversations: the stage-1 caption pairs (LCS-558K
``blip_laion_cc_sbu_558k.json``, CC3M-595K ``chat.json``) and the Osprey-Chat mix
(``llava_v1_5_mix665k.json``).

Records: ``{"id", "image"?, "conversations": [{"from": "human", "value": "<image>\\n..."},
{"from": "gpt", "value": ...}, ...]}``; ``image`` is relative to the image folder. The
``<image>`` placeholder is moved to the front of its message (the original's normalisation:
"Describe it.\\n<image>" -> "<image>\\nDescribe it."). A first message from gpt is dropped, as in
LLaVA. Records without ``image`` are text-only (ShareGPT in the 665K mix): kept by default, or
skipped and counted with ``text_only="skip"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from osprey.core import prompt_strings as P
from osprey.data.sample import Rejected, Sample
from osprey.data.sources.base import Source, image_first
from osprey.inference.prompt_format import Turn


class LlavaConversations(Source):
    name = "llava"

    def __init__(
        self,
        ann_file: str | Path,
        image_dir: str | Path,
        *,
        limit: int | None = None,
        text_only: str = "keep",
    ):
        if text_only not in ("keep", "skip"):
            raise ValueError(f"text_only must be 'keep' or 'skip', not {text_only!r}")
        self.text_only = text_only
        super().__init__(ann_file, image_dir, limit=limit)

    def _index(self, record: dict[str, Any]) -> dict[str, Any] | None:
        messages = list(record.get("conversations") or [])
        if messages and messages[0].get("from") != "human":
            messages = messages[1:]
        pairs = []
        for i in range(0, len(messages) - 1, 2):
            q, a = messages[i], messages[i + 1]
            if q.get("from") != "human" or a.get("from") != "gpt":
                raise Rejected("bad_roles", f"record {record.get('id')}")
            pairs.append((str(q.get("value", "")), str(a.get("value", ""))))
        if not pairs:
            raise Rejected("no_turns", f"record {record.get('id')}")
        has_token = any(P.IMAGE in q for q, _ in pairs)
        image = record.get("image")
        if image is None:
            if has_token:
                raise Rejected("image_token_without_image", f"record {record.get('id')}")
            if self.text_only == "skip":
                self.skipped["text_only"] += 1
                return None
        elif not has_token:
            raise Rejected("image_without_image_token", f"record {record.get('id')}")
        return {"id": record.get("id"), "image": image, "pairs": pairs}

    def sample(self, index: int, rng: np.random.Generator) -> Sample:
        record = self.record(index)
        turns = [Turn(image_first(q), a) for q, a in record["pairs"]]
        image = record["image"]
        return Sample(
            turns=turns,
            image_path=None if image is None else self.image_dir / image,
            source=self.name,
            key=str(record.get("id", index)),
        )
