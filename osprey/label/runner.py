"""The driver of a labelling run, whatever runs the images: find what is left to do, hand it to a
backend (in-process, or Ray), write every record to a shard as it arrives, show progress, then
merge every shard into the output COCO JSON.

A backend is ``backend(items, emit)``: it labels ``items`` in any order and calls ``emit(record)``
once per image, in the driver's process (the driver alone writes shards and the output).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from osprey.core.errors import OspreyError, UsageError
from osprey.label.coco import to_coco, write_json_atomic
from osprey.label.inputs import ImageItem
from osprey.label.job import Labeller, LabelSettings
from osprey.label.shards import ShardStore, shard_dir

Emit = Callable[[dict[str, Any]], None]
Backend = Callable[[list[ImageItem], Emit], None]


class LocalBackend:
    """Labels the images in this process, ``settings.batch_images`` at a time (the models are
    loaded on first use, and their batching engine stopped at the end, unless given)."""

    def __init__(self, settings: LabelSettings, labeller: Labeller | None = None):
        self.settings = settings
        self.labeller = labeller

    def __call__(self, items: list[ImageItem], emit: Emit) -> None:
        labeller = self.labeller or Labeller.load(self.settings)
        try:
            size = self.settings.batch_images
            for start in range(0, len(items), size):
                for record in labeller.label_many(items[start : start + size]):
                    emit(record)
        finally:
            if labeller is not self.labeller:
                labeller.close()


@dataclass(frozen=True)
class Summary:
    out: Path
    images: int  # in the output
    skipped: int
    regions: int
    new: int  # images labelled by this run (the rest were done before)
    seconds: float  # this run, models included

    def line(self) -> str:
        rate = f"{self.new / self.seconds:.2f} images/s" if self.new and self.seconds else "-"
        return (
            f"{self.images} images ({self.skipped} skipped), {self.regions} regions -> "
            f"{self.out} ({self.new} labelled now in {self.seconds:.1f} s, {rate})"
        )


class Progress:
    """A tqdm bar over images (images/s, ETA) with regions/s and the skipped count."""

    def __init__(self, total: int, done: int, enabled: bool = True):
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=done, unit="img", disable=not enabled,
                        dynamic_ncols=True, file=sys.stderr)  # fmt: skip
        self.start = time.perf_counter()
        self.regions = 0
        self.skipped = 0

    def update(self, record: dict[str, Any]) -> None:
        self.regions += len(record.get("annotations", ()))
        self.skipped += "skipped" in record
        rate = self.regions / max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix_str(f"{rate:.2f} regions/s, {self.skipped} skipped", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def pending_items(
    items: Sequence[ImageItem], done: dict[str, dict[str, Any]], retry_skipped: bool
) -> list[ImageItem]:
    """The items without a record (and, with ``retry_skipped``, those recorded as skipped)."""

    def todo(item: ImageItem) -> bool:
        record = done.get(item.file_name)
        return record is None or (retry_skipped and "skipped" in record)

    return [item for item in items if todo(item)]


def label_dataset(
    items: Sequence[ImageItem], settings: LabelSettings, out: str | Path, backend: Backend, *,
    retry_skipped: bool = False, progress: bool = True,
) -> Summary:  # fmt: skip
    """Label what is not done yet of ``items`` with ``backend``, then write ``out``."""
    out, start = Path(out), time.perf_counter()
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give the JSON file to write")
    store = ShardStore(shard_dir(out))
    store.open(settings.fingerprint())
    todo = pending_items(items, store.records(), retry_skipped)
    if store.bad_lines:
        print(f"note: {store.bad_lines} unreadable shard line(s) ignored (a write cut short); "
              "their images are labelled again", file=sys.stderr)  # fmt: skip
    bar = Progress(len(items), len(items) - len(todo), progress)
    try:
        with store.writer() as writer:

            def emit(record: dict[str, Any]) -> None:
                writer.write(record)
                bar.update(record)

            if todo:
                backend(todo, emit)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished images are saved in {store.root}; run the same command "
              "again to resume", file=sys.stderr)  # fmt: skip
        raise
    finally:
        bar.close()
    return _merge(items, settings, store, out, len(todo), time.perf_counter() - start)


def _merge(
    items: Sequence[ImageItem], settings: LabelSettings, store: ShardStore, out: Path,
    new: int, seconds: float,
) -> Summary:  # fmt: skip
    records = store.records()
    missing = [item.file_name for item in items if item.file_name not in records]
    if missing:
        raise OspreyError(
            f"{len(missing)} image(s) have no result (first: {missing[0]}); run the same command "
            "again to label them"
        )
    info = {
        "description": "region labels by osprey-open (python -m osprey.label)",
        "untrained": settings.tiny, "settings": settings.fingerprint(),
    }  # fmt: skip
    v = settings.vocabulary
    data = to_coco(items, records, info, None if v is None else v.names)
    write_json_atomic(out, data)
    return Summary(out, len(data["images"]), len(data["skipped"]), len(data["annotations"]),
                   new, seconds)  # fmt: skip
