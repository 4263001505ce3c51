"""What all open sessions hold of their images, within one budget.

A session keeps its image as the upload's compressed bytes (the decoded pixels go once SAM and
Osprey have encoded it; :meth:`~osprey.core.images.ImageHandle.release`). Those bytes are small
for a photo and up to the upload limit for a large PNG, and a visitor that goes away without
closing anything (an API client) keeps them until its session expires. :class:`SessionImages`
counts them: when the sessions together hold more than ``budget`` bytes, the images used longest
ago move to files in the store's folder, read back (and decoded again) if their visitor comes
back. Sessions that open the same photo share one handle. The folder goes with :meth:`close`;
a spilled file goes with the last session that held its image.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import weakref
from pathlib import Path

from osprey.core.images import ImageHandle

DEFAULT_BUDGET = 512 * 2**20


class SessionImages:
    """The open images of every session (held weakly: a session that goes takes its image)."""

    def __init__(self, budget: int = DEFAULT_BUDGET, folder: Path | None = None):
        self.budget = budget
        self._folder = folder
        self._made_folder = False
        self._handles: weakref.WeakValueDictionary[str, ImageHandle] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()
        self.spills = 0

    def add(self, handle: ImageHandle) -> ImageHandle:
        """Hold ``handle`` (a released upload): the handle to keep in the session, which is an
        open one for the same image when there is one. Moves the longest-unused images to disk
        when the budget is passed."""
        with self._lock:
            known = self._handles.get(handle.key)
            if known is not None and not known.decoded:
                known.touch()
                return known
            self._handles[handle.key] = handle
            handle.touch()
            self._enforce(keep=handle)
        return handle

    @property
    def nbytes(self) -> int:
        """Bytes the open images hold in memory."""
        with self._lock:
            return sum(h.nbytes for h in list(self._handles.values()))

    def __len__(self) -> int:
        return len(self._handles)

    def _enforce(self, keep: ImageHandle) -> None:
        """Spill the longest-unused images until the rest fit the budget (``keep``, the one just
        opened, stays in memory whatever its size)."""
        handles = [h for h in list(self._handles.values()) if h.spilled is None and h is not keep]
        held = sum(h.nbytes for h in handles) + keep.nbytes
        for handle in sorted(handles, key=lambda h: h.last_used):
            if held <= self.budget:
                break
            path = self.folder() / f"{handle.key}.img"
            freed = handle.spill(path)
            if freed:
                weakref.finalize(handle, _remove, path)
                held -= freed
                self.spills += 1

    def folder(self) -> Path:
        """Where spilled images go (made on first use, unless given)."""
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="osprey-sessions-"))
            self._made_folder = True
        self._folder.mkdir(parents=True, exist_ok=True)
        return self._folder

    def close(self) -> None:
        """Delete the spilled files (the server is stopping)."""
        with self._lock:
            if self._folder is not None and self._folder.exists():
                if self._made_folder:
                    shutil.rmtree(self._folder, ignore_errors=True)
                else:
                    for path in self._folder.glob("*.img"):
                        _remove(path)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
