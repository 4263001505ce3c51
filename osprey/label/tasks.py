"""What is asked about every region, and the annotation field each answer goes to.

A task is a callable ``task(osprey, [(image, masks), ...]) -> one list of values per image (one
value per mask)`` with a ``field``. The ``category`` / ``short`` / ``detailed`` tasks are
:meth:`osprey.Osprey.describe_batch` with the released weights' prompts: with the batching engine
on, every region of every image is decoded in one batch; without it, the regions of each image
are decoded together over a shared prompt prefix. A new kind of answer (e.g. top-k over a
vocabulary) is one more entry of :data:`TASK_FIELDS` and one more task class.

Imports no torch: the command line checks ``--tasks`` before any model is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from osprey.errors import UsageError
from osprey.images import ImageHandle

# task name -> the annotation field of its answer
TASK_FIELDS = {"category": "category_name", "short": "caption", "detailed": "description"}
DEFAULT_TASKS = ("category", "short")


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
        from osprey.generation import Generation

        return osprey.describe_batch(images, self.task, Generation(self.max_new_tokens))


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


def build_tasks(names: Sequence[str], max_new_tokens: int) -> list[Task]:
    """The task callables for ``names`` (checked with :func:`parse_tasks`)."""
    return [Describe(name, max_new_tokens) for name in parse_tasks(names)]
