"""What every source shares: the record store, index-time rejection counts, and the few string and
mask rules of the original loaders (``<image>`` normalisation, COCO file-name tails)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from osprey.core import prompt_strings as P
from osprey.core.masks import MaskError, decode_segmentation
from osprey.data.sample import Rejected, Sample

# ---------------------------------------------------------------------------------------------
# string rules of the original loaders


def image_first(text: str) -> str:
    """The original's ``preprocess_multimodal``: a message holding ``<image>`` has it removed, is
    stripped, and gets ``<image>\\n`` in front (so ``"<image>.\\nThis ..."`` becomes
    ``"<image>\\n.\\nThis ..."``, ``"Describe it.\\n<image>"`` becomes ``"<image>\\nDescribe it."``,
    and ``"<image>\\n In ..."`` loses the space). Messages without ``<image>`` are unchanged."""
    if P.IMAGE not in text:
        return text
    return (P.IMAGE + "\n" + text.replace(P.IMAGE, "").strip()).strip()


def coco_tail(file_name: str) -> str:
    """``COCO_train2014_000000123456.jpg`` -> ``000000123456.jpg`` (the part after the last ``_``),
    how the original finds COCO-2014-named images in a folder of 2017-named files."""
    return file_name.split("_")[-1]


def pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    """One element of ``options``, uniformly."""
    return options[int(rng.integers(len(options)))]


# ---------------------------------------------------------------------------------------------
# files


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    with path.open() as f:
        return json.load(f)


def read_jsonl(path: Path) -> list[Any]:
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def decode_region(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` (polygons, RLE) -> bool (H, W); undecodable or empty masks are
    :class:`Rejected` (``bad_mask`` / ``empty_mask``): Osprey has no notion of an empty region."""
    try:
        mask = decode_segmentation(segmentation, int(height), int(width))
    except (MaskError, ValueError, TypeError, KeyError) as exc:
        raise Rejected("bad_mask", str(exc)) from exc
    if not mask.any():
        raise Rejected("empty_mask")
    return mask


# ---------------------------------------------------------------------------------------------
# the base class


class Source:
    """A loader over one annotation file.

    Construction reads the file once and keeps each usable record as compact JSON bytes (a few
    hundred thousand dicts would otherwise be copied into every data-loader worker as its
    reference counts are touched); records that can never become samples are counted in
    ``rejected`` by reason. ``sample(i, rng)`` builds the i-th :class:`Sample`, decoding masks on
    demand; its random choices (question templates, region order) come from ``rng`` only.
    """

    name = "source"

    def __init__(self, ann_file: str | Path, image_dir: str | Path, *, limit: int | None = None):
        self.ann_file = Path(ann_file)
        self.image_dir = Path(image_dir)
        self.rejected: Counter = Counter()
        self.skipped: Counter = Counter()  # records the original also leaves out (not errors)
        self._records: list[bytes] = []
        for record in self._records_from(self.ann_file):
            if limit is not None and len(self._records) >= limit:
                break
            try:
                kept = self._index(record)
            except Rejected as rej:
                self.rejected[rej.reason] += 1
                continue
            if kept is not None:
                self._records.append(json.dumps(kept).encode())

    # -- to implement ------------------------------------------------------------------------

    def _records_from(self, path: Path) -> Iterable[Any]:
        """The raw records of the annotation file."""
        return read_json(path)

    def _index(self, record: Any) -> Any | None:
        """Validate one raw record: what to keep for :meth:`sample`, ``None`` to skip it, or
        raise :class:`Rejected`."""
        return record

    def sample(self, index: int, rng: np.random.Generator) -> Sample:
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._records)

    def record(self, index: int) -> Any:
        return json.loads(self._records[index])

    def report(self) -> dict[str, Any]:
        """Counts for the data report: usable records, rejections and skips by reason."""
        return {
            "type": self.name,
            "ann_file": str(self.ann_file),
            "records": len(self),
            "rejected": dict(self.rejected),
            "skipped": dict(self.skipped),
        }


def region_turns(
    items: Sequence[Any],
    rng: np.random.Generator,
    *,
    cap: int,
    prefix: str,
    question: Callable[[np.random.Generator], str],
    answer: Callable[[Any], str],
    mask: Callable[[Any], np.ndarray],
) -> tuple[list, list[np.ndarray], Counter]:
    """The stage-2 / VG conversation: regions in random order, at most ``cap``, one human turn per
    region (``question``, the first prefixed with ``prefix``), answered by ``answer(item)``.

    Regions whose mask is empty or undecodable, or whose answer is empty, are dropped and
    counted; the cap counts kept regions. Returns (turns, masks, events).
    """
    from osprey.inference.prompt_format import Turn

    turns: list[Turn] = []
    masks: list[np.ndarray] = []
    events: Counter = Counter()
    order = rng.permutation(len(items))
    for k, j in enumerate(order):
        if len(turns) == cap:
            events["regions_over_cap"] += len(order) - k
            break
        text = answer(items[j])
        if not isinstance(text, str) or not text.strip():
            events["empty_answer"] += 1
            continue
        try:
            masks.append(mask(items[j]))
        except Rejected as rej:
            events[rej.reason] += 1
            continue
        q = question(rng) if turns else image_first(prefix + question(rng))
        turns.append(Turn(q, text))
    if not turns:
        raise Rejected("no_valid_region", f"{dict(events)}")
    return turns, masks, events
