"""The work on one image, the same in-process and in a Ray actor: read it, find its regions, ask
every task about all of them, and return the image's record (a JSON-ready dict).

A record is either ``{"file_name", "height", "width", "annotations": [...]}`` (plus ``"dropped"``:
``--regions`` annotations that could not be used, with the reason) or ``{"file_name",
"skipped": reason}`` for an image that cannot be read. Annotations carry the region's COCO fields
(:meth:`Region.annotation`) and one field per task; ids are assigned when the records are merged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from osprey.constants import DEFAULT_MAX_NEW_TOKENS
from osprey.errors import ImageError, MaskError, UsageError
from osprey.images import ImageHandle
from osprey.label.inputs import ImageItem
from osprey.label.regions import EverythingOptions, Region, given_regions, sam_regions
from osprey.label.tasks import DEFAULT_TASKS, build_tasks, parse_tasks
from osprey.options import TINY_MODEL, one_line


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
    sam_model_type: str = "vit_b"
    sam_checkpoint: str | None = None
    tasks: tuple[str, ...] = DEFAULT_TASKS
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    everything: EverythingOptions = field(default_factory=EverythingOptions)
    max_regions: int | None = None  # SAM regions per image, largest first
    regions_file: str | None = None  # --regions: the images' own masks instead of SAM's

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", parse_tasks(self.tasks))
        if self.max_regions is not None and self.max_regions < 1:
            raise UsageError(f"max_regions must be at least 1, got {self.max_regions}")
        if self.max_new_tokens < 1:
            raise UsageError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")

    @property
    def tiny(self) -> bool:
        return self.model == TINY_MODEL

    def fingerprint(self) -> dict[str, Any]:
        """The settings a result depends on: a rerun may resume only with the same ones (the
        device and dtype may change between runs)."""
        keep = ("model", "quantize", "tasks", "max_new_tokens", "max_regions", "regions_file")
        out = {k: getattr(self, k) for k in keep}
        out["tasks"] = list(self.tasks)
        if self.regions_file is None:
            out["sam"] = [self.sam_model_type, self.sam_checkpoint, asdict(self.everything)]
        return out


class Labeller:
    """Labels images one at a time with an Osprey and (without ``--regions``) a SAM."""

    def __init__(self, osprey: Any, sam: Any, settings: LabelSettings):
        self.osprey = osprey
        self.sam = sam
        self.settings = settings
        self.tasks = build_tasks(settings.tasks, settings.max_new_tokens)

    @classmethod
    def load(cls, settings: LabelSettings) -> Labeller:
        """Load the models the settings name (downloading them unless ``offline``)."""
        from osprey.pipeline import Osprey
        from sam_bridge import SamBridge

        s = settings
        need_sam = s.regions_file is None
        if s.tiny:
            return cls(Osprey.tiny(), SamBridge.tiny() if need_sam else None, s)
        sam = None
        if need_sam:
            sam = SamBridge.from_pretrained(
                s.sam_model_type, s.sam_checkpoint, s.checkpoints, device=s.device,
                dtype=s.dtype, download=not s.offline,
            )  # fmt: skip
        osprey = Osprey.from_pretrained(
            s.model, device=s.device, dtype=s.dtype, checkpoints_dir=s.checkpoints,
            clip_path=s.clip, download=not s.offline, quantize=s.quantize,
        )  # fmt: skip
        return cls(osprey, sam, s)

    def label(self, item: ImageItem) -> dict[str, Any]:
        """The record of ``item`` (see the module docstring). An image that cannot be read, or
        whose ``--regions`` entry does not fit it, gives a ``skipped`` record."""
        from sam_bridge import SamBridgeError

        try:
            image = ImageHandle.of(item.path)
            regions, dropped = self.regions(item, image)
        except (ImageError, SamBridgeError, MaskError) as exc:
            return {"file_name": item.file_name, "skipped": one_line(exc)}
        masks = [r.mask() for r in regions]
        answers = {t.field: t(self.osprey, image, masks) for t in self.tasks} if masks else {}
        annotations = [
            r.annotation() | {name: values[i] for name, values in answers.items()}
            for i, r in enumerate(regions)
        ]
        record = {"file_name": item.file_name, "height": image.height, "width": image.width}
        record["annotations"] = annotations
        if dropped:
            record["dropped"] = dropped
        return record

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
