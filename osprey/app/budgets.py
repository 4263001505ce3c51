"""How much memory the app's caches and sessions may take, from what the machine has left once
the models (and the batching engine's KV cache) are placed; printed at start-up, settable.

* caches (``--cache-mib``): SAM's image embeddings, Osprey's image features and the prompt-prefix
  KV cache of the per-request path; they live where the models run (GPU memory on a GPU). By
  default a fifth of what is left, between 192 MiB and 1.5 GiB, split 25 / 50 / 25;
* the sessions' open images (``--session-mib``): compressed uploads in host memory, the
  longest-unused moved to disk past it (:class:`~osprey.app.session_images.SessionImages`). By
  default a tenth of the host memory left, between 64 MiB and 1 GiB.

On Spaces CPU basic beside the 7B in 8 bits (about 4 GiB left) that is about 0.8 GiB of caches
and 0.4 GiB of sessions, where fixed bounds took 832 MiB whatever the machine.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 2**20
CACHE_SHARE, CACHE_MIN, CACHE_MAX = 0.2, 192 * MIB, 1536 * MIB
SESSION_SHARE, SESSION_MIN, SESSION_MAX = 0.1, 64 * MIB, 1024 * MIB
SPLIT = {"sam": 0.25, "features": 0.5, "prefix": 0.25}


def _clamp(value: float, low: int, high: int) -> int:
    return int(max(low, min(high, value)))


@dataclass(frozen=True)
class Budgets:
    """Bytes for each cache and for the sessions' images; ``left``: what the plan started from
    (bytes left on the models' device), ``host_left``: the same in host memory."""

    sam: int
    features: int
    prefix: int
    sessions: int
    left: int
    host_left: int
    given: bool = False  # the caches' total came from --cache-mib

    @property
    def caches(self) -> int:
        return self.sam + self.features + self.prefix

    def describe(self) -> str:
        source = "as set" if self.given else f"of {self.left / 2**30:.1f} GiB left by the models"
        return (
            f"Caches: {self.caches / MIB:.0f} MiB {source} (SAM embeddings {self.sam / MIB:.0f}, "
            f"image features {self.features / MIB:.0f}, prompt prefixes {self.prefix / MIB:.0f}); "
            f"sessions keep up to {self.sessions / MIB:.0f} MiB of uploads in memory, the rest on "
            "disk"
        )


def plan_budgets(
    left: int, host_left: int | None = None, cache_mib: int | None = None,
    session_mib: int | None = None,
) -> Budgets:  # fmt: skip
    """Split ``left`` bytes (the models' device) and ``host_left`` (host memory; default: the
    same) between the caches and the sessions, or take ``cache_mib`` / ``session_mib`` as set."""
    host_left = left if host_left is None else host_left
    total = cache_mib * MIB if cache_mib else _clamp(CACHE_SHARE * left, CACHE_MIN, CACHE_MAX)
    sessions = (
        session_mib * MIB
        if session_mib
        else _clamp(SESSION_SHARE * host_left, SESSION_MIN, SESSION_MAX)
    )
    parts = {name: int(total * share) for name, share in SPLIT.items()}
    return Budgets(
        **parts, sessions=sessions, left=left, host_left=host_left, given=bool(cache_mib)
    )
