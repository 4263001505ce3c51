"""The labelling job on a Ray cluster, with Ray Data.

The items left to do become a dataset (one image per block), mapped in batches of
``batch_images`` images by :class:`LabelActor`: a pool of actors, each loading SAM + Osprey once
and labelling with the same :class:`~osprey.label.job.Labeller` as the in-process run (the
regions of a batch's images decoded together), one GPU per actor where the cluster has GPUs. The records come back to the driver, which writes the shards and
the output exactly as in-process: the workers need to read the images (shared storage, or the same
paths on every node) but not the output folder.

Faults: Ray Data restarts an actor that dies and retries the images it was working on (its actors
run with ``max_restarts=-1, max_task_retries=-1``). A retried image is labelled again from
scratch; since only the driver writes, and only records that came back, nothing is written twice
(and the merge keeps one record per image anyway).

Ray is optional (``pip install osprey-open[ray]``); it is imported only when this backend runs.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from osprey.core.errors import OspreyError, UsageError
from osprey.label.inputs import ImageItem
from osprey.label.job import Labeller, LabelSettings
from osprey.label.runner import Emit

# the unindented "package.module.SomeError: message" line that ends a Python traceback
_RAISED = re.compile(r"^([A-Za-z_][\w.]*): (.*)", re.M)


class LabelActor:
    """A Ray Data callable class: the models are loaded once per actor, in its constructor."""

    def __init__(self, settings: LabelSettings):
        self.labeller = Labeller.load(settings)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[str]]:
        """``{"item": [ImageItem JSON, ...]}`` -> ``{"record": [record JSON, ...]}``."""
        items = [ImageItem.from_json(str(text)) for text in batch["item"]]
        return {"record": [json.dumps(record) for record in self.labeller.label_many(items)]}


def import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise UsageError(
            "--ray needs Ray: pip install 'osprey-open[ray]' (or pip install 'ray[data]==2.60.0')"
        ) from None
    return ray


@dataclass
class RayBackend:
    """Runs the job on the Ray cluster at ``address`` (``auto``, ``ray://host:port``, ...), or on
    a local Ray instance started for the run (``address`` None; ``init_kwargs`` go to
    ``ray.init``, e.g. ``num_cpus``, ``object_store_memory``). A Ray already initialised in this
    process is used as it is and left running. ``actors``: the pool size (default: one per GPU,
    or 1 without GPUs); ``actor_cpus``: CPUs each actor reserves."""

    settings: LabelSettings
    address: str | None = None
    actors: int | None = None
    actor_cpus: float = 1.0
    actor_cls: type = LabelActor
    init_kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self, items: list[ImageItem], emit: Emit) -> None:
        ray = import_ray()
        started = self._connect(ray)
        try:
            for record in self._run(ray, items):
                emit(record)
        except ray.exceptions.RayError as exc:
            cause = _user_error(exc)
            if cause is None:
                raise
            raise cause from exc
        finally:
            if started:
                ray.shutdown()

    def _connect(self, ray: Any) -> bool:
        """Initialise Ray unless it is already; True if this call did (then we shut it down)."""
        if ray.is_initialized():
            return False
        if self.address is None:
            kwargs = {"include_dashboard": False, **self.init_kwargs}
            ray.init(logging_level=logging.WARNING, **kwargs)
        else:
            ray.init(address=self.address, logging_level=logging.WARNING)
        return True

    def _run(self, ray: Any, items: list[ImageItem]) -> Any:
        """Yield the record of every item as its actor finishes it."""
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the driver shows its own
        context.print_on_execution_start = False
        gpus = int(ray.cluster_resources().get("GPU", 0))
        size = self.actors or max(gpus, 1)
        rows = [{"item": item.to_json()} for item in items]
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
        dataset = dataset.map_batches(
            self.actor_cls, fn_constructor_kwargs={"settings": self.settings},
            batch_size=self.settings.batch_images,
            compute=ray.data.ActorPoolStrategy(size=size), num_cpus=self.actor_cpus,
            num_gpus=1 if gpus else 0,
        )  # fmt: skip
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for text in batch["record"]:
                yield json.loads(str(text))


def _user_error(exc: BaseException) -> OspreyError | None:
    """The OspreyError (a missing checkpoint, ...) behind a Ray error, if there is one. An actor
    whose constructor failed reaches the driver as text only: its last line is the error."""
    if getattr(exc, "actor_init_failed", False):
        raised = list(_RAISED.finditer(str(exc)))  # the traceback's "module.Error: message"
        message = str(exc)[raised[-1].start(2) :] if raised else str(exc)
        return OspreyError(f"a Ray actor could not load the models: {message.strip()}")
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OspreyError):
            return exc
        exc = getattr(exc, "cause", None) or exc.__cause__
    return None
