"""Command line: ``python -m sam_bridge segment ...`` and ``python -m sam_bridge download ...``.

Only argparse is imported up front (``--help`` is instant); torch and SAM load inside the commands.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from osprey.core.options import device_options, run
from sam_bridge.checkpoints import CHECKPOINTS, ensure_checkpoint, verify_checkpoint
from sam_bridge.names import (
    AUTO,
    CHOICES,
    SAM1_TYPES,
    auto_choice,
    family,
    resolve_choice,
    tiny_family,
)

if TYPE_CHECKING:
    import numpy as np

TINY_WARNING = (
    "WARNING: --tiny uses a tiny random-weight SAM: untrained, masks are meaningless "
    "(offline development only)"
)
SAM_HELP = (
    f"which SAM: {', '.join(CHOICES)}, or the Hub id (owner/name) of a SAM 2 checkpoint; auto: "
    f"SAM 2.1 large on a GPU, tiny elsewhere (env OSPREY_SAM; with --tiny a SAM 2 name builds "
    f"the tiny SAM 2, anything else the tiny SAM 1)"
)


# ---------------------------------------------------------------------------------------------
# argument parsing

_FORMATS = {"point": ("X,Y", "X,Y,LABEL"), "box": ("X0,Y0,X1,Y1",)}


def _numbers(text: str, counts: tuple[int, ...], what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in counts:
        raise argparse.ArgumentTypeError(
            f"{what} must be {' or '.join(_FORMATS[what])}, got {text!r}"
        )
    return values


def _point(text: str) -> tuple[float, float, int]:
    values = _numbers(text, (2, 3), "point")
    label = int(values[2]) if len(values) == 3 else 1
    if len(values) == 3 and values[2] not in (0.0, 1.0):
        raise argparse.ArgumentTypeError(
            f"a point's LABEL is 1 (positive) or 0 (negative): {text!r}"
        )
    return values[0], values[1], label


def _box(text: str) -> list[float]:
    return _numbers(text, (4,), "box")


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sam", default=os.environ.get("OSPREY_SAM") or None, metavar="NAME",
                   help=SAM_HELP)  # fmt: skip
    p.add_argument("--model-type", "--sam-model-type", dest="model_type", default=None,
                   metavar="NAME", help=f"the older name of --sam ({', '.join(SAM1_TYPES)})")  # fmt: skip


def _sam_name(args: argparse.Namespace) -> str:
    """--sam / --model-type resolved; ``auto`` decided by the device (and said on stderr)."""
    name = resolve_choice(args.sam, args.model_type)
    if name == AUTO and not args.tiny:
        from osprey.core.devices import resolve_device

        name = auto_choice(resolve_device(args.device).type)
        print(f"SAM auto: {name}", file=sys.stderr)
    return name


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sam_bridge", description="Segment Anything: clicks and boxes to masks."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    seg = sub.add_parser(
        "segment", help="masks for clicks / a box, or everything, in one image",
        parents=[device_options()],
    )  # fmt: skip
    seg.add_argument("--image", type=Path, required=True)
    seg.add_argument(
        "--point",
        type=_point,
        action="append",
        default=[],
        metavar="X,Y[,LABEL]",
        help="a click in image pixels; LABEL 1 = positive (default), 0 = negative; repeatable",
    )
    seg.add_argument("--box", type=_box, metavar="X0,Y0,X1,Y1")
    seg.add_argument("--everything", action="store_true", help="all masks (automatic generator)")
    seg.add_argument(
        "--masks",
        choices=("auto", "1", "3"),
        default="auto",
        help="candidates per prompt: 3 (sub-part/part/whole), 1, or auto (3 for a lone click)",
    )
    seg.add_argument(
        "--clean-min-area", type=int, default=0, help="fill holes / drop islands below N px"
    )
    _model_args(seg)
    seg.add_argument("--checkpoint", type=Path, help="weights of --sam: a .pth for vit_b/l/h, "
                     "a folder with config.json + model.safetensors for SAM 2")  # fmt: skip
    auto = seg.add_argument_group("--everything options")
    auto.add_argument("--points-per-side", type=int, default=16)
    auto.add_argument("--pred-iou-thresh", type=float, default=0.88)
    auto.add_argument("--stability-score-thresh", type=float, default=0.95)
    auto.add_argument("--min-area", type=int, default=0)
    auto.add_argument("--crop-layers", type=int, default=0)
    seg.add_argument("--out", type=Path, required=True, help="output folder for mask_*.png")
    seg.add_argument("--rle", action="store_true", help="also write masks.json (COCO RLE)")

    dl = sub.add_parser(
        "download", help="download a checkpoint (verified by size and SHA-256)",
        parents=[device_options()],
    )  # fmt: skip
    _model_args(dl)
    dl.add_argument("--verify", action="store_true",
                    help="also check weights that were already there (SAM 1: the whole file's "
                    "SHA-256; SAM 2: the config and every tensor's name and shape)")  # fmt: skip
    return parser


# ---------------------------------------------------------------------------------------------
# commands


def _bridge(args: argparse.Namespace):
    from sam_bridge.predictor import SamBridge

    name = _sam_name(args)
    if args.tiny:
        print(TINY_WARNING, file=sys.stderr)
        return SamBridge.tiny(device=args.device, dtype=args.dtype, family=tiny_family(name))
    return SamBridge.from_pretrained(
        name,
        checkpoint=args.checkpoint,
        checkpoints_dir=args.checkpoints,
        device=args.device,
        dtype=args.dtype,
        download=not args.offline,
    )


def _fmt_box(box: Sequence[int] | None) -> str:
    return "-" if box is None else "(" + ", ".join(str(v) for v in box) + ")"


def _write(out: Path, rows: list[dict[str, Any]], masks: Iterable[np.ndarray], rle: bool) -> None:
    """Write ``mask_{i}.png`` per row (+ masks.json) and print one line per mask."""
    from osprey.core.masks import encode_rle, save_mask_png

    out.mkdir(parents=True, exist_ok=True)
    for i, (row, mask) in enumerate(zip(rows, masks)):
        row["file"] = name = f"mask_{i}.png"
        save_mask_png(mask, out / name)
        if rle and "rle" not in row:
            row["rle"] = encode_rle(mask)
        extra = f"  stability={row['stability']:.3f}" if "stability" in row else ""
        mark = "  (best)" if row.get("best") else ""
        box = _fmt_box(row["box"])
        print(f"{name}  score={row['score']:.3f}{extra}  area={row['area']}  box={box}{mark}")
    if rle:
        (out / "masks.json").write_text(json.dumps(rows, indent=1))


def _everything(bridge, image: np.ndarray, args: argparse.Namespace) -> None:
    found = bridge.everything(
        image,
        points_per_side=args.points_per_side,
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_score_thresh,
        min_area=args.min_area,
        crop_n_layers=args.crop_layers,
    )
    if not found:
        print("no masks found (lower --pred-iou-thresh / --stability-score-thresh)")
    rows = [
        {
            "score": m.score,
            "stability": m.stability,
            "area": m.area,
            "box": list(m.box),
            "rle": m.rle,
        }
        for m in found
    ]
    _write(args.out, rows, (m.mask for m in found), args.rle)


def _prompted(bridge, image: np.ndarray, args: argparse.Namespace) -> None:
    pred = bridge.predict(
        image,
        points=[(x, y) for x, y, _ in args.point] or None,
        labels=[label for _, _, label in args.point] or None,
        box=args.box,
        multimask={"auto": None, "1": False, "3": True}[args.masks],
        clean_min_area=args.clean_min_area,
    )
    best = None if pred.is_empty else pred.best
    rows = [
        {"score": c.score, "area": c.area, "box": list(c.box) if c.box else None, "best": c is best}
        for c in pred.candidates
    ]
    _write(args.out, rows, (c.mask for c in pred.candidates), args.rle)
    if best is None:
        print("every candidate mask is empty")


def _segment(args: argparse.Namespace) -> int:
    from osprey.core.images import load_image

    if not (args.everything or args.point or args.box):
        print("error: give --point, --box or --everything", file=sys.stderr)
        return 2
    if args.tiny and args.checkpoint:
        print("error: --tiny and --checkpoint exclude each other", file=sys.stderr)
        return 2
    image = load_image(args.image)
    bridge = _bridge(args)
    if args.everything:
        _everything(bridge, image, args)
    else:
        _prompted(bridge, image, args)
    return 0


def _download(args: argparse.Namespace) -> int:
    name = _sam_name(args)
    if family(name) == "sam2":
        from sam_bridge.sam2_hub import ensure_sam2

        folder = ensure_sam2(name, args.checkpoints, download=not args.offline)
        if args.verify:
            from sam_bridge.loading import load_model

            load_model(name, folder)  # the config's family and size, every tensor
        print(folder)
        return 0
    path = ensure_checkpoint(name, args.checkpoints, download=not args.offline)
    if args.verify:
        verify_checkpoint(path, CHECKPOINTS[name], full=True)
    print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Errors the user can fix end in one ``error: ...`` line (exit 1), see osprey.core.options.run."""
    args = build_parser().parse_args(argv)
    return run(lambda _: _segment(args) if args.command == "segment" else _download(args), argv)


def entry_point() -> None:
    """The ``osprey-sam`` console script (``python -m sam_bridge``)."""
    raise SystemExit(main())
