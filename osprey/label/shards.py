"""Results as they finish: one JSON line per image in ``<out>.shards/*.jsonl``.

Every run (and every writer of a run) appends to its own new shard file, one line per finished
image, flushed and fsync'ed before the next image starts, so an interrupted run loses at most the
images in flight. A rerun reads every shard to learn what is done. A line cut short by a crash is
ignored (and its image labelled again). ``run.json`` holds the settings the shards were made with:
resuming with other settings is refused rather than mixed.

An image may have several lines (a retried task, two runs racing): :meth:`ShardStore.records`
keeps one per image, a labelled record over a ``skipped`` one, otherwise the first.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from osprey.core.errors import UsageError
from osprey.label.coco import write_json_atomic

SETTINGS_FILE = "run.json"


def shard_dir(out: str | Path) -> Path:
    """Where the shards of output ``out`` live: ``<out>.shards`` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".shards")


class ShardWriter:
    """Appends records to one shard file, each on its own line, durably."""

    def __init__(self, path: Path):
        self.path = path
        self._file: IO[str] | None = None

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ShardStore:
    """The shard folder of one output file."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.bad_lines = 0  # lines that could not be read (a write cut short), last records()

    def open(self, fingerprint: dict[str, Any]) -> None:
        """Create the folder, or check that its shards were made with the same settings."""
        settings = self.root / SETTINGS_FILE
        fingerprint = json.loads(json.dumps(fingerprint))  # as it reads back from the file
        if settings.is_file():
            before = json.loads(settings.read_text())
            if before != fingerprint:
                keys = {*before, *fingerprint}
                changed = sorted(k for k in keys if before.get(k) != fingerprint.get(k))
                raise UsageError(
                    f"{self.root} holds results made with other settings ({', '.join(changed)} "
                    f"differ); use the same settings to resume, or another --out (or delete "
                    f"{self.root}) to start over"
                )
            return
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(settings, fingerprint)

    def writer(self) -> ShardWriter:
        """A writer to a new shard file (names sort by creation time)."""
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        name = f"{stamp}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        return ShardWriter(self.root / name)

    def records(self) -> dict[str, dict[str, Any]]:
        """One record per image file name, from every shard (see the module docstring)."""
        self.bad_lines = 0
        out: dict[str, dict[str, Any]] = {}
        for path in sorted(self.root.glob("*.jsonl")):
            for record in self._read(path):
                before = out.get(record["file_name"])
                if before is None or ("skipped" in before and "skipped" not in record):
                    out[record["file_name"]] = record
        return out

    def _read(self, path: Path) -> list[dict[str, Any]]:
        records = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                self.bad_lines += 1
                continue
            if isinstance(record, dict) and isinstance(record.get("file_name"), str):
                records.append(record)
            else:
                self.bad_lines += 1
        return records
