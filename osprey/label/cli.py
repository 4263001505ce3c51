"""``python -m osprey.label IMAGES --out labels.json``: every region of every image gets a category
and a caption (``--tasks``), and with ``--vocab`` its top-k classes with probabilities, written as
one COCO JSON; in this process or on Ray (``--ray``).

Examples::

    python -m osprey.label photos/ --out labels.json                      # SAM "everything"
    python -m osprey.label coco/val.json --regions coco/val.json --out captions.json
    python -m osprey.label photos/ --out labels.json --ray --actors 4     # local Ray, 4 actors
    python -m osprey.label photos/ --out labels.json --ray auto           # an existing cluster
    python -m osprey.label photos/ --out panoptic.json --vocab coco --top-k 3 --tasks short

Rerunning a command resumes it (finished images are kept in ``<out>.shards/``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from osprey.core.options import generation_options, model_name, model_options, positive_int
from osprey.label.job import BATCHING
from osprey.label.regions import EverythingOptions
from osprey.label.tasks import DEFAULT_TASKS, TASK_FIELDS

DEFAULT_EVERYTHING = EverythingOptions()


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m osprey.label",
        description="Label every region of every image (category, caption, description) into "
        "one COCO JSON; resumable; in this process or on a Ray cluster.",
        parents=[model_options(), generation_options()],
    )
    p.add_argument("images", metavar="IMAGES",
                   help="a folder (searched recursively), a text file of paths, or a COCO JSON")  # fmt: skip
    p.add_argument("--out", required=True, help="the COCO JSON to write (shards: OUT.shards/)")
    p.add_argument("--image-root", default=None,
                   help="where the file names of a COCO JSON or text file are (default: its folder)")  # fmt: skip
    p.add_argument("--regions", default=None, metavar="COCO_JSON",
                   help="label these masks (polygons or RLE, matched by file name) instead of SAM's")  # fmt: skip
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS),
                   help=f"comma-separated, from {', '.join(TASK_FIELDS)} (default: %(default)s)")  # fmt: skip
    p.add_argument("--vocab", default=None, metavar="NAME|FILE",
                   help="also rank every region's classes of this vocabulary: coco, lvis, ade20k, "
                   "cityscapes, paco, or a file (one class a line); the categories are its classes")  # fmt: skip
    p.add_argument("--top-k", type=positive_int, default=5,
                   help="classes kept per region with --vocab (default: %(default)s)")  # fmt: skip
    p.add_argument("--limit", type=positive_int, default=None, help="only the first N images")
    p.add_argument("--retry-skipped", action="store_true",
                   help="label again the images an earlier run recorded as skipped")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--batch-images", type=positive_int, default=4,
                   help="images labelled together: all their regions are decoded in one batch "
                   "(default: %(default)s)")  # fmt: skip
    p.add_argument("--batching", choices=BATCHING, default="auto",
                   help="the continuous-batching engine, which decodes the regions of all the "
                   "images of a batch together: on, off (each image's regions on their own), "
                   "auto: on on GPUs (default: %(default)s)")  # fmt: skip
    _sam_options(p)
    _ray_options(p)
    return p


def _sam_options(p: argparse.ArgumentParser) -> None:
    d = DEFAULT_EVERYTHING
    g = p.add_argument_group("SAM (regions, without --regions)")
    g.add_argument("--sam", default=os.environ.get("OSPREY_SAM") or None, metavar="NAME",
                   help="auto (default: SAM 2.1 large on a GPU, tiny elsewhere), sam2.1-tiny, "
                   "-small, -base-plus, -large, vit_b, vit_l, vit_h, or a SAM 2 Hub id (env "
                   "OSPREY_SAM)")  # fmt: skip
    g.add_argument("--sam-model-type", default=os.environ.get("SAM_MODEL_TYPE") or None,
                   metavar="NAME", help="the older name of --sam (env SAM_MODEL_TYPE)")  # fmt: skip
    g.add_argument("--sam-checkpoint", default=None,
                   help="SAM weights: a .pth for vit_*, a folder with config.json + "
                   "model.safetensors for SAM 2 (default: downloaded into --checkpoints)")  # fmt: skip
    g.add_argument("--points-per-side", type=positive_int, default=d.points_per_side,
                   help="grid of clicks per side (default: %(default)s)")  # fmt: skip
    g.add_argument("--pred-iou-thresh", type=fraction, default=d.pred_iou_thresh,
                   help="keep masks SAM scores above this (default: %(default)s)")  # fmt: skip
    g.add_argument("--stability-score-thresh", type=fraction, default=d.stability_score_thresh,
                   help="keep masks at least this stable (default: %(default)s)")  # fmt: skip
    g.add_argument("--box-nms-thresh", type=fraction, default=d.box_nms_thresh,
                   help="box IoU above which duplicates are dropped (default: %(default)s)")  # fmt: skip
    g.add_argument("--min-area", type=int, default=d.min_area,
                   help="drop masks (and fill holes) smaller than this many pixels")  # fmt: skip
    g.add_argument("--crop-n-layers", type=int, default=d.crop_n_layers,
                   help="SAM's zoomed-in crop layers (each costs encoder runs)")  # fmt: skip
    g.add_argument("--max-regions", type=positive_int, default=None,
                   help="at most N regions per image, largest first (default: all)")  # fmt: skip


def _ray_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Ray (pip install 'osprey-open[ray]')")
    g.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run on Ray: a cluster address (auto, ray://host:10001), or none for a "
                   "local Ray instance (after IMAGES, or --ray=ADDRESS)")  # fmt: skip
    g.add_argument("--actors", type=positive_int, default=None,
                   help="actors (each loads the models once; default: one per GPU, else 1)")  # fmt: skip
    g.add_argument("--actor-cpus", type=float, default=1.0,
                   help="CPUs each actor reserves (default: %(default)s)")  # fmt: skip


def settings_from(args: argparse.Namespace):
    """The :class:`~osprey.label.job.LabelSettings` of parsed arguments (a ``--vocab`` file is
    read here, once: the workers get its classes)."""
    from osprey.inference.vocabularies import resolve
    from osprey.label.job import LabelSettings
    from sam_bridge.names import resolve_choice

    vocabulary = resolve(args.vocab, files=True) if args.vocab else None
    everything = EverythingOptions(
        args.points_per_side, args.pred_iou_thresh, args.stability_score_thresh,
        args.box_nms_thresh, args.min_area, args.crop_n_layers,
    )  # fmt: skip
    return LabelSettings(
        model=model_name(args), device=args.device, dtype=args.dtype, quantize=args.quantize,
        checkpoints=args.checkpoints, clip=args.clip, offline=args.offline,
        sam_model_type=resolve_choice(args.sam, args.sam_model_type),
        sam_checkpoint=args.sam_checkpoint,
        tasks=args.tasks, max_new_tokens=args.max_new_tokens, everything=everything,
        max_regions=args.max_regions, regions_file=args.regions,
        batch_images=args.batch_images, batching=args.batching, vocabulary=vocabulary,
        top_k=args.top_k,
    )  # fmt: skip


def check_options(args: argparse.Namespace) -> None:
    """The model's name, the device and the dtype, checked before anything is loaded or Ray is
    started. On a Ray cluster (an address) only the dtype: the workers' files and devices are not
    this machine's."""
    from osprey.core.devices import parse_dtype, resolve_device
    from osprey.inference.hub import check_model_name

    parse_dtype(args.dtype)
    if args.tiny or args.ray:
        return
    check_model_name(model_name(args))
    resolve_device(args.device)


def main(argv: Sequence[str] | None = None) -> int:
    from osprey.label.inputs import list_images
    from osprey.label.regions import RegionIndex
    from osprey.label.runner import LocalBackend, label_dataset

    args = build_parser().parse_args(argv)
    settings = settings_from(args)
    check_options(args)
    items = list_images(args.images, args.image_root)[: args.limit]
    if args.regions:
        items = RegionIndex.load(args.regions).attach(items)
    if args.ray is None:
        backend = LocalBackend(settings)
    else:
        from osprey.label.ray_backend import RayBackend

        backend = RayBackend(settings, args.ray or None, args.actors, args.actor_cpus)
    summary = label_dataset(
        items, settings, args.out, backend, retry_skipped=args.retry_skipped,
        progress=not args.no_progress,
    )  # fmt: skip
    print(summary.line())
    return 0
