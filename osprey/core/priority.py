"""CPU scheduling of background work: on a machine where the models run on the CPU, the work
nobody is waiting for at that instant (decode steps of running answers, encoding a new upload)
runs at a raised OS niceness, so that a click's SAM decode on the same cores is scheduled first.

Linux sets niceness per thread, and threads started later (torch's OpenMP workers) inherit it.
Elsewhere, or where the OS refuses, nothing changes: the work runs at normal priority.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# How much nicer than request threads: running answers' decode steps, and new uploads' encoding.
ENGINE_NICE = 10
ENCODE_NICE = 5


def lower_priority(thread: threading.Thread | None, by: int) -> None:
    """Raise the OS niceness of ``thread`` (None: nothing) by ``by``."""
    tid = getattr(thread, "native_id", None)
    if tid is None or not hasattr(os, "setpriority"):
        return
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + by)


class Lane:
    """One dedicated thread, ``by`` nicer than the threads that call it, which runs the calls
    given to :meth:`run` one at a time (first come, first served) while their callers wait.
    Thread-local state (torch's grad and inference modes) is the lane thread's own: the calls
    set what they need themselves."""

    def __init__(self, name: str, by: int):
        self._pool = ThreadPoolExecutor(
            1,
            thread_name_prefix=name,
            initializer=lambda: lower_priority(threading.current_thread(), by),
        )

    def run(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on the lane's thread, once the calls before it are done; its result, or its
        exception."""
        return self._pool.submit(fn).result()
