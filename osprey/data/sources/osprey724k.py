"""Osprey-724K, the five published files (``sunshine-lwt/Osprey-724K``), stage 3.

Every record has ``file_name``, ``height``, ``width``, ``annotation`` (one dict per region with a
COCO ``segmentation``) and either ``conversations`` (alternating human/gpt) or, for the detail
file, ``description`` (one ``"<regionK>: text"`` per region).

* conversation / short_form / part_level: the first question is prefixed with the overview line
  and "Ther are N part regions in the picture: region1<mask><pos>,...". ``<`` and ``>`` are
  stripped from every question and answer (``<region2>`` -> ``region2``); short-form and
  part-level append " Answer the question using a single word or phrase." to every question.
* detail_description: one turn per region, a random detailed-description template with
  ``<mask><pos>``; the answer is the text after ``>: ``.
* lvis_positive_negative: ``<regionK>`` is replaced in place by ``<mask><pos>``.

Images: ``file_name`` keeps the part after the last ``_`` (COCO-2014 names over a 2017 folder),
except the LVIS file, whose names are used as they are.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from osprey.core import prompt_strings as P
from osprey.data.sample import Rejected, Sample
from osprey.data.sources.base import Source, coco_tail, decode_region, image_first, pick
from osprey.inference.prompt_format import Turn

_REF = re.compile(r"<region(\d+)>")
_DESCRIPTION = re.compile(r"<.*>: (.*)")  # greedy, one line: the original's pattern

# The published detail file and the name the original stage-3 config uses for it.
DETAIL_FILE_NAMES = ("osprey_detail_description.json", "osprey_detailed_description.json")


def resolve_detail_file(path: Path) -> Path:
    """``osprey_detail_description.json`` (Hugging Face) and ``osprey_detailed_description.json``
    (the original config) are the same file: accept whichever exists."""
    if path.is_file() or path.name not in DETAIL_FILE_NAMES:
        return path
    for name in DETAIL_FILE_NAMES:
        if (path.parent / name).is_file():
            return path.parent / name
    return path


def _check_record(record: dict[str, Any], text_key: str) -> int:
    """Number of regions of a well-formed record, or Rejected."""
    for key in ("file_name", "height", "width", "annotation", text_key):
        if key not in record:
            raise Rejected("malformed_record", f"missing {key!r}")
    n = len(record["annotation"])
    if n == 0:
        raise Rejected("no_regions")
    return n


def _pairs(conversations: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(question, answer) pairs of an alternating human/gpt list (a dangling question is dropped,
    as in the original); a role out of place is Rejected."""
    pairs = []
    for i in range(len(conversations) // 2):
        q, a = conversations[2 * i], conversations[2 * i + 1]
        if q.get("from") != "human" or a.get("from") != "gpt":
            raise Rejected("bad_roles", f"turn {i + 1}: {q.get('from')}/{a.get('from')}")
        pairs.append((str(q.get("value", "")), str(a.get("value", ""))))
    if not pairs:
        raise Rejected("no_turns")
    return pairs


def _refs(text: str) -> list[int]:
    return [int(k) for k in _REF.findall(text)]


class _Osprey724K(Source):
    """Shared sample building: masks decoded in the order ``masks_order`` gives."""

    image_name_tail = True

    def _masks(self, record: dict[str, Any], order: list[int]) -> list[np.ndarray]:
        h, w = int(record["height"]), int(record["width"])
        decoded: dict[int, np.ndarray] = {}
        for k in order:
            if k not in decoded:
                decoded[k] = decode_region(record["annotation"][k]["segmentation"], h, w)
        return [decoded[k] for k in order]

    def _sample(self, index: int, record: dict, turns: list[Turn], order: list[int]) -> Sample:
        name = record["file_name"]
        return Sample(
            turns=turns,
            image_path=self.image_dir / (coco_tail(name) if self.image_name_tail else name),
            masks=self._masks(record, order),
            size=(int(record["height"]), int(record["width"])),
            source=self.name,
            key=str(record.get("id", index)),
        )


class OspreyConversation(_Osprey724K):
    """``osprey_conversation.json``: multi-turn chats about all regions of an image."""

    name = "osprey_conversation"
    suffix = ""

    def _index(self, record: dict[str, Any]) -> dict[str, Any]:
        n = _check_record(record, "conversations")
        pairs = _pairs(record["conversations"])
        refs = [k for q, a in pairs for k in _refs(q) + _refs(a)]
        if any(not 1 <= k <= n for k in refs):
            raise Rejected("region_ref_out_of_range", f"refs {sorted(set(refs))} with {n} regions")
        keep = {k: record[k] for k in ("file_name", "height", "width", "annotation")}
        return {**keep, "id": record.get("id"), "pairs": pairs}

    def turns(self, record: dict[str, Any]) -> list[Turn]:
        n = len(record["annotation"])
        out = []
        for i, (q, a) in enumerate(record["pairs"]):
            q = q.replace("<", "").replace(">", "")
            if i == 0:
                q = image_first(P.BEGIN + P.regions_sentence(n) + q + self.suffix)
            else:
                q = q + self.suffix
            out.append(Turn(q, a.replace("<", "").replace(">", "")))
        return out

    def sample(self, index: int, rng: np.random.Generator) -> Sample:
        record = self.record(index)
        order = list(range(len(record["annotation"])))
        return self._sample(index, record, self.turns(record), order)


class OspreyShortForm(OspreyConversation):
    """``osprey_short_form.json``: short answers ("Answer ... a single word or phrase.")."""

    name = "osprey_short_form"
    suffix = P.LIMIT_SINGLE_WORD


class OspreyPartLevel(OspreyConversation):
    """``osprey_part_level.json``: part categories and attributes (PACO-LVIS)."""

    name = "osprey_part_level"
    suffix = P.LIMIT_SINGLE_WORD


class OspreyDetailDescription(_Osprey724K):
    """``osprey_detail_description.json``: one detailed description per region."""

    name = "osprey_detail_description"

    def __init__(self, ann_file: str | Path, image_dir: str | Path, *, limit: int | None = None):
        super().__init__(resolve_detail_file(Path(ann_file)), image_dir, limit=limit)

    def _index(self, record: dict[str, Any]) -> dict[str, Any]:
        n = _check_record(record, "description")
        descriptions = record["description"]
        if len(descriptions) < n:
            raise Rejected("missing_description", f"{len(descriptions)} descriptions, {n} regions")
        answers = []
        for text in descriptions[:n]:
            match = _DESCRIPTION.search(str(text))
            if match is None or not match.group(1).strip():
                raise Rejected("bad_description", repr(str(text)[:60]))
            answers.append(match.group(1))
        keep = {k: record[k] for k in ("file_name", "height", "width", "annotation")}
        return {**keep, "id": record.get("id"), "answers": answers}

    def sample(self, index: int, rng: np.random.Generator) -> Sample:
        record = self.record(index)
        turns = []
        for i, answer in enumerate(record["answers"]):
            q = pick(rng, P.DETAILED_QUESTIONS).replace(P.REGION_REF, P.REGION)
            turns.append(Turn(image_first(P.BEGIN + q) if i == 0 else q, answer))
        return self._sample(index, record, turns, list(range(len(turns))))


class OspreyLvisPosNeg(_Osprey724K):
    """``osprey_lvis_positive_negative.json``: yes/no questions about LVIS regions.

    ``<regionK>`` becomes ``<mask><pos>`` in place. The original binds the i-th placeholder to the
    i-th region; here it binds to region K, the one the text names (identical for the published
    files, which name regions in order, and correct for any that do not).
    """

    name = "osprey_lvis_posneg"
    image_name_tail = False

    def _index(self, record: dict[str, Any]) -> dict[str, Any]:
        n = _check_record(record, "conversations")
        pairs = _pairs(record["conversations"])
        refs = [k for q, _ in pairs for k in _refs(q)]
        if not refs:
            raise Rejected("no_region_ref")
        if any(not 1 <= k <= n for k in refs):
            raise Rejected("region_ref_out_of_range", f"refs {sorted(set(refs))} with {n} regions")
        keep = {k: record[k] for k in ("file_name", "height", "width", "annotation")}
        return {**keep, "id": record.get("id"), "pairs": pairs, "refs": refs}

    def sample(self, index: int, rng: np.random.Generator) -> Sample:
        record = self.record(index)
        turns = []
        for i, (q, a) in enumerate(record["pairs"]):
            q = _REF.sub(P.REGION, q)
            turns.append(Turn(image_first(P.BEGIN + q) if i == 0 else q, a))
        order = [k - 1 for k in record["refs"]]
        return self._sample(index, record, turns, order)
