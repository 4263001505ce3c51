"""The work on a few images at a time, the same in-process and in a Ray actor: read each, find
its regions, ask every task about all the regions of all the images at once (one batch with the
batching engine), and return one record (a JSON-ready dict) per image.

A record is either ``{"file_name", "height", "width", "annotations": [...]}`` (plus ``"dropped"``:
``--regions`` annotations that could not be used, with the reason) or ``{"file_name",
"skipped": reason}`` for an image that cannot be read. Annotations carry the region's COCO fields
(:meth:`Region.annotation`) and one field per task; ids are assigned when the records are merged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from osprey.core.constants import DEFAULT_MAX_NEW_TOKENS
from osprey.core.errors import ImageError, MaskError, UsageError
from osprey.core.images import ImageHandle
from osprey.core.options import TINY_MODEL, one_line
from osprey.label.inputs import ImageItem
from osprey.label.regions import EverythingOptions, Region, given_regions, sam_regions
from osprey.label.tasks import DEFAULT_TASKS, build_tasks, check_top_k, parse_tasks

TINY_KV_BUDGET = 64 * 2**20  # the batching engine's KV cache for the tiny model (bytes)
# When Labeller.load turns the batching engine on. auto: on CUDA devices only (on the 2-core CPU
# the engine made the tiny model slower: see benchmarks/label_bench.py).
BATCHING = ("auto", "on", "off")


@dataclass(frozen=True)
class LabelSettings:
    """Everything a worker needs to label images (picklable: Ray sends it to every actor)."""

    model: str = "osprey-7b"  # registry name, checkpoint folder, or tiny-random
    device: str = "auto"
    dtype: str = "auto"
    quantize: str | None = None
    checkpoints: str | None = None
    clip: str | None = None
    offline: bool = False
    sam_model_type: str = "auto"  # a SAM name (sam_bridge.names); auto: decided on the worker
    sam_checkpoint: str | None = None
    tasks: tuple[str, ...] = DEFAULT_TASKS
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    everything: EverythingOptions = field(default_factory=EverythingOptions)
    max_regions: int | None = None  # SAM regions per image, largest first
    regions_file: str | None = None  # --regions: the images' own masks instead of SAM's
    batch_images: int = 4  # images labelled together (their regions decoded in one batch)
    batching: str = "auto"  # the continuous-batching engine: on, off, auto (on CUDA)
    vocabulary: Any = (
        None  # --vocab, resolved (osprey.inference.vocabularies.Vocabulary): top-k per region
    )
    top_k: int = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", parse_tasks(self.tasks))
        if self.batching not in BATCHING:
            raise UsageError(
                f"batching must be one of {', '.join(BATCHING)}, got {self.batching!r}"
            )
        if self.batch_images < 1:
            raise UsageError(f"batch_images must be at least 1, got {self.batch_images}")
        if self.max_regions is not None and self.max_regions < 1:
            raise UsageError(f"max_regions must be at least 1, got {self.max_regions}")
        if self.max_new_tokens < 1:
            raise UsageError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.vocabulary is not None:
            check_top_k(self.top_k)

    @property
    def tiny(self) -> bool:
        return self.model == TINY_MODEL

    def fingerprint(self) -> dict[str, Any]:
        """The settings a result depends on: a rerun may resume only with the same ones (the
        device, the dtype and the batching may change between runs)."""
        keep = ("model", "quantize", "tasks", "max_new_tokens", "max_regions", "regions_file")
        out = {k: getattr(self, k) for k in keep}
        out["tasks"] = list(self.tasks)
        if self.vocabulary is not None:
            out["vocabulary"] = [self.vocabulary.name, [list(c) for c in self.vocabulary.classes]]
            out["top_k"] = self.top_k
        if self.regions_file is None:
            out["sam"] = [self.sam_model_type, self.sam_checkpoint, asdict(self.everything)]
        return out


@dataclass(eq=False)
class _Image:
    """An image on its way through :meth:`Labeller.label_many`."""

    item: ImageItem
    image: ImageHandle
    regions: list[Region]
    dropped: list[dict[str, Any]]
    masks: list[Any]  # bool (H, W) per region


class Labeller:
    """Labels images with an Osprey and (without ``--regions``) a SAM."""

    def __init__(self, osprey: Any, sam: Any, settings: LabelSettings):
        self.osprey = osprey
        self.sam = sam
        self.settings = settings
        self.tasks = build_tasks(
            settings.tasks, settings.max_new_tokens, settings.vocabulary, settings.top_k
        )

    @classmethod
    def load(cls, settings: LabelSettings) -> Labeller:
        """Load the models the settings name (downloading them unless ``offline``), and turn on
        the batching engine as ``settings.batching`` says."""
        from osprey.core.devices import resolve_device
        from osprey.inference.facade import Osprey
        from sam_bridge import SamBridge
        from sam_bridge.names import AUTO, auto_choice, tiny_family

        s = settings
        need_sam = s.regions_file is None
        if s.tiny:
            sam = SamBridge.tiny(family=tiny_family(s.sam_model_type)) if need_sam else None
            osprey = Osprey.tiny()
        else:
            sam = None
            if need_sam:
                name = s.sam_model_type
                name = auto_choice(resolve_device(s.device).type) if name == AUTO else name
                sam = SamBridge.from_pretrained(
                    name, s.sam_checkpoint, s.checkpoints, device=s.device,
                    dtype=s.dtype, download=not s.offline,
                )  # fmt: skip
            osprey = Osprey.from_pretrained(
                s.model, device=s.device, dtype=s.dtype, checkpoints_dir=s.checkpoints,
                clip_path=s.clip, download=not s.offline, quantize=s.quantize,
            )  # fmt: skip
        on_gpu = osprey.model.device.type == "cuda"
        if s.batching == "on" or (s.batching == "auto" and on_gpu):
            osprey.generator.enable_batching(kv_budget=TINY_KV_BUDGET if s.tiny else None)
        return cls(osprey, sam, s)

    def close(self) -> None:
        """Stop the batching engine's threads (if :meth:`load` started them)."""
        self.osprey.generator.disable_batching()

    def label(self, item: ImageItem) -> dict[str, Any]:
        """The record of one image (see the module docstring)."""
        return self.label_many([item])[0]

    def label_many(self, items: Sequence[ImageItem]) -> list[dict[str, Any]]:
        """The records of ``items``, in order. Every task is asked about the regions of all of
        them together. An image that cannot be read, or whose ``--regions`` entry does not fit
        it, gives a ``skipped`` record."""
        opened = [self.read(item) for item in items]
        ready = [o for o in opened if isinstance(o, _Image) and o.masks]
        batch = [(o.image, o.masks) for o in ready]
        answers = {t.field: t(self.osprey, batch) for t in self.tasks} if batch else {}
        per_image = {
            id(o): {f: values[n] for f, values in answers.items()} for n, o in enumerate(ready)
        }
        return [o if isinstance(o, dict) else _record(o, per_image.get(id(o), {})) for o in opened]

    def read(self, item: ImageItem) -> _Image | dict[str, Any]:
        """``item`` read, with its regions and their masks; or its ``skipped`` record."""
        from sam_bridge import SamBridgeError

        try:
            image = ImageHandle.of(item.path)
            regions, dropped = self.regions(item, image)
        except (ImageError, SamBridgeError, MaskError) as exc:
            return {"file_name": item.file_name, "skipped": one_line(exc)}
        return _Image(item, image, regions, dropped, [r.mask() for r in regions])

    def regions(
        self, item: ImageItem, image: ImageHandle
    ) -> tuple[list[Region], list[dict[str, Any]]]:
        """The regions to label on ``image`` and the ``--regions`` annotations left out."""
        s = self.settings
        if s.regions_file is None:
            return sam_regions(self.sam, image, s.everything, s.max_regions), []
        if item.regions is None:
            raise MaskError(f"{s.regions_file} has no image named {item.file_name}")
        return given_regions(item.regions, image.height, image.width)


def _record(opened: _Image, answers: dict[str, list]) -> dict[str, Any]:
    """The record of a labelled image: its regions' COCO fields and their answers."""
    annotations = [
        r.annotation() | {name: values[i] for name, values in answers.items()}
        for i, r in enumerate(opened.regions)
    ]
    image = opened.image
    record = {"file_name": opened.item.file_name, "height": image.height, "width": image.width}
    record["annotations"] = annotations
    if opened.dropped:
        record["dropped"] = opened.dropped
    return record
