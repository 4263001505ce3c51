"""What is asked about every region, and the annotation field each answer goes to.

A task is a callable ``task(osprey, [(image, masks), ...]) -> one list of values per image (one
value per mask)`` with a ``field``. The ``category`` / ``short`` / ``detailed`` tasks are
:meth:`osprey.Osprey.describe_batch` with the released weights' prompts: with the batching engine
on, every region of every image is decoded in one batch; without it, the regions of each image
are decoded together over a shared prompt prefix. With ``--vocab`` a :class:`TopK` task adds each
region's ``top_k`` classes of the vocabulary with their probabilities
(:meth:`osprey.Osprey.classify`).

Imports no torch: the command line checks ``--tasks`` before any model is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from osprey.core.errors import UsageError
from osprey.core.images import ImageHandle
from osprey.inference.vocabularies import MAX_TOP_K

# task name -> the annotation field of its answer
TASK_FIELDS = {"category": "category_name", "short": "caption", "detailed": "description"}
DEFAULT_TASKS = ("category", "short")
TOP_K_FIELD = "top_k"  # [{"name", "prob"}, ...] per region, most probable first


Images = Sequence[tuple[ImageHandle, Sequence[np.ndarray]]]  # (image, its region masks) each


class Task(Protocol):
    field: str

    def __call__(self, osprey: Any, images: Images) -> list[list]: ...


@dataclass(frozen=True)
class Describe:
    """One :meth:`Osprey.describe_batch` task (greedy, at most ``max_new_tokens`` per answer)."""

    task: str
    max_new_tokens: int

    @property
    def field(self) -> str:
        return TASK_FIELDS[self.task]

    def __call__(self, osprey: Any, images: Images) -> list[list[str]]:
        from osprey.inference.generator import Generation

        return osprey.describe_batch(images, self.task, Generation(self.max_new_tokens))


@dataclass(frozen=True)
class TopK:
    """The ``k`` most probable classes of ``vocabulary`` (its class names, first spelling first)
    for every region: ``[{"name": "dog", "prob": 0.71}, ...]``."""

    vocabulary: (
        Any  # osprey.inference.vocabularies.Vocabulary (picklable: Ray sends it to the actors)
    )
    k: int
    field: str = TOP_K_FIELD

    def __call__(self, osprey: Any, images: Images) -> list[list[list[dict[str, Any]]]]:
        out = []
        for image, masks in images:
            tops = osprey.classify(image, list(masks), self.vocabulary, self.k)
            out.append([[{"name": n, "prob": round(float(p), 6)} for n, p in t] for t in tops])
        return out


def check_top_k(k: int) -> int:
    """``k`` if it is a sensible number of classes to keep per region."""
    if not 1 <= int(k) <= MAX_TOP_K:
        raise UsageError(f"--top-k must be between 1 and {MAX_TOP_K}, got {k}")
    return int(k)


def parse_tasks(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"category,short"`` (or a list of names) -> the task names, checked, repeats removed."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    names = list(dict.fromkeys(p.strip() for p in parts if p.strip()))
    if not names:
        raise UsageError(f"no task given; choose from {', '.join(TASK_FIELDS)}")
    unknown = [n for n in names if n not in TASK_FIELDS]
    if unknown:
        raise UsageError(
            f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASK_FIELDS)}"
        )
    return tuple(names)


def build_tasks(
    names: Sequence[str], max_new_tokens: int, vocabulary: Any = None, top_k: int = 5
) -> list[Task]:
    """The task callables for ``names`` (checked with :func:`parse_tasks`), and a :class:`TopK`
    when a ``vocabulary`` is given."""
    tasks: list[Task] = [Describe(name, max_new_tokens) for name in parse_tasks(names)]
    if vocabulary is not None:
        tasks.append(TopK(vocabulary, check_top_k(top_k)))
    return tasks
