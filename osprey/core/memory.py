"""The process's memory allocator, set for a long-running server.

glibc gives each thread that meets contention its own malloc arena (up to 8 per core), and an
arena keeps the memory freed in it. A server whose worker threads each decode a large photo
now and then ends up holding a photo's worth of freed memory per thread: measured with
``benchmarks/hostile_memory.py`` (ten visitors opening a 64 MP PNG), the app held 317 MB more
once they had gone with glibc's default and 5 MB with two arenas.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_ARENA_MAX = -8  # mallopt's parameter number (glibc malloc.h)
TRIM_PIXELS = 4_000_000  # an image this large leaves enough freed memory to hand back


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def give_back_freed_memory() -> bool:
    """Hand the memory freed in the allocator's heaps back to the system (glibc's
    ``malloc_trim``): a large photo decoded and resized leaves hundreds of MB that glibc
    otherwise keeps for later (measured: +282 MB after a 64 MP image was encoded and released,
    -14 MB after this). A few milliseconds; False off glibc."""
    libc = _libc()
    try:
        return bool(libc.malloc_trim(0)) if libc is not None else False
    except AttributeError:
        return False


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` for this process (for the threads that start
    afterwards), unless ``MALLOC_ARENA_MAX`` is set in the environment (the operator's choice
    wins). Returns whether the cap was set; False off glibc."""
    libc = _libc()
    if os.environ.get("MALLOC_ARENA_MAX") or libc is None:
        return False
    try:
        return bool(libc.mallopt(_M_ARENA_MAX, int(arenas)))
    except AttributeError:  # not glibc (musl, macOS): nothing to set
        return False
