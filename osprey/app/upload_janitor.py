"""Uploads leave the server once no request needs them.

Gradio's upload route stores a file under a folder named by its content, so two requests that
send the same bytes (two visitors with one photo, a client sending requests in parallel, one file
as the image and the mask of a request) share one path. The app reads an upload once into memory
(:mod:`osprey.app.uploads`) and never deletes it itself: deleting it after decoding broke the
other request (6 of 16 parallel calls failed). :class:`UploadJanitor` deletes an uploaded file
when no queued or running event names it and it was last written more than ``grace`` seconds ago
(a client uploads, then calls: the grace covers the gap). The same bytes uploaded again are
written again, and their clock starts over.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

GRACE_S = 30.0  # an upload nobody names is kept this long (the client's upload -> call gap)
INTERVAL_S = 5.0


def _strings(value: Any) -> Iterator[str]:
    """Every string inside a request's data (file objects' paths among them)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def queued_events(demo) -> list:
    """The events waiting in ``demo``'s queue and the ones running (a snapshot; Gradio changes
    these lists on its event loop, so a copy that races a change is taken again)."""
    queue = getattr(demo, "_queue", None)
    if queue is None:
        return []
    for _ in range(5):
        try:
            waiting = [e for q in list(queue.event_queue_per_concurrency_id.values())
                       for e in list(q.queue)]  # fmt: skip
            running = [e for job in list(queue.active_jobs) if job for e in list(job)]
            return waiting + running
        except RuntimeError:  # a dict changed size while it was read
            continue
    return []


class UploadJanitor:
    """Deletes ``demo``'s uploads that no event needs any more (see the module docstring), every
    ``interval`` seconds on a thread of its own, and on :meth:`sweep`."""

    def __init__(self, demo, grace: float = GRACE_S, interval: float = INTERVAL_S):
        self.demo, self.grace, self.interval = demo, grace, interval
        self.deleted = 0
        self._missing: dict[str, float] = {}  # listed, not on disk yet (Gradio moves it in after)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> UploadJanitor:
        self._thread = threading.Thread(target=self._run, name="osprey-uploads", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sweep()

    def in_use(self) -> set[str]:
        """The paths the queued and running events name."""
        named: set[str] = set()
        for event in queued_events(self.demo):
            body = getattr(event, "data", None)
            named.update(_strings(getattr(body, "data", None)))
            # the canvas page names its upload in the event's own data (its "open_file")
            named.update(_strings(getattr(body, "event_data", None)))
        return named

    def sweep(self, now: float | None = None) -> int:
        """Delete what may go now; returns how many files went."""
        uploads: set[str] = getattr(self.demo, "upload_file_set", set())
        now = time.time() if now is None else now
        named = self.in_use()
        gone = 0
        for path in list(uploads):
            if path in named or not self._stale(path, now):
                continue
            uploads.discard(path)
            self._missing.pop(path, None)
            gone += _delete(Path(path))
        self.deleted += gone
        return gone

    def _stale(self, path: str, now: float) -> bool:
        try:
            written = os.stat(path).st_mtime
        except FileNotFoundError:  # the route lists a file before it has moved it into place
            written = self._missing.setdefault(path, now)
        else:
            self._missing.pop(path, None)
        return now - written >= self.grace


def _delete(path: Path) -> int:
    """Delete an upload and its content-named folder once empty; 1 if the file was there."""
    try:
        path.unlink()
    except FileNotFoundError:
        return 0
    _remove_empty((path.parent,))
    return 1


def _remove_empty(folders: Iterable[Path]) -> None:
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty: outputs may share the folder
