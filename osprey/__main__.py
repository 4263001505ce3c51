"""Command line: ``python -m osprey {describe,classify,info,download,convert,track} ...``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from osprey.core.errors import UsageError
from osprey.core.options import (
    checkpoints_dir,
    device_options,
    generation_options,
    model_name,
    model_options,
    positive_int,
    run,
    video_options,
)


def cmd_describe(args: argparse.Namespace) -> int:
    from osprey.core.images import load_image
    from osprey.inference.facade import Generation

    if not args.mask and not args.question:
        raise UsageError(
            "describe needs regions: give --mask MASK.png (one per region, repeatable), or ask "
            "about the whole image with --question TEXT"
        )
    image = load_image(args.image)
    masks = _masks(args.mask, image.shape[:2])
    _check_before_loading(args, image, masks)
    osp = _load_model(args)
    gen = (
        Generation.paper(args.seed, args.max_new_tokens)
        if args.paper_sampling
        else Generation(args.max_new_tokens)
    )
    if args.question:
        print(osp.ask(image, masks, args.question, gen=gen).text)
        return 0
    for i, text in enumerate(osp.describe(image, masks, args.task, gen=gen)):
        print(f"region{i + 1}: {text}" if len(masks) > 1 else text)
    return 0


def _masks(paths: list[str], size: tuple[int, int]) -> list:
    """The ``--mask`` files, each checked against the image's (height, width) from its header
    before it is decoded (a 13370x13370 PNG of a few hundred KB would take gigabytes first),
    at most :data:`~osprey.core.constants.MAX_MASKS_PER_REQUEST` of them."""
    from osprey.core.constants import MAX_MASKS_PER_REQUEST
    from osprey.core.masks import load_mask

    if len(paths) > MAX_MASKS_PER_REQUEST:
        raise UsageError(f"at most {MAX_MASKS_PER_REQUEST} --mask files per command")
    return [load_mask(p, size, f"mask {p} (region {i + 1})") for i, p in enumerate(paths)]


def _load_model(args: argparse.Namespace):
    """The model the options name (after :func:`_check_before_loading`); says so when it is the
    untrained tiny one."""
    from osprey.inference.facade import Osprey

    osp = Osprey.from_pretrained(
        model_name(args), device=args.device, dtype=args.dtype,
        checkpoints_dir=checkpoints_dir(args), clip_path=args.clip, download=not args.offline,
        quantize=args.quantize,
    )  # fmt: skip
    if osp.untrained:
        print("[tiny-random: untrained weights, the answers are meaningless]", file=sys.stderr)
    return osp


def _check_before_loading(args: argparse.Namespace, image, masks) -> None:
    """Everything that can be wrong with the inputs and options, found before seconds (or
    minutes) of model loading: the model's name, the device, the dtype, each mask's size."""
    from osprey.core.devices import parse_dtype, resolve_device
    from osprey.inference.hub import check_model_name
    from osprey.inference.preprocess import prepare_masks

    check_model_name(model_name(args))
    resolve_device(args.device)
    parse_dtype(args.dtype)
    prepare_masks(masks, image.shape[0], image.shape[1])


def cmd_classify(args: argparse.Namespace) -> int:
    import json

    from osprey.core.images import load_image
    from osprey.inference.vocabularies import resolve

    vocabulary = resolve(args.vocab, files=True)
    image = load_image(args.image)
    masks = _masks(args.mask, image.shape[:2])
    _check_before_loading(args, image, masks)
    osp = _load_model(args)
    tops = osp.classify(image, masks or None, vocabulary, args.top_k)
    if args.json:
        print(json.dumps([[{"name": n, "prob": p} for n, p in top] for top in tops]))
        return 0
    for i, top in enumerate(tops):
        for name, prob in top:
            print(f"region{i + 1}\t{prob:.4f}\t{name}" if len(masks) > 1 else f"{prob:.4f}\t{name}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from osprey.inference.hub import REGISTRY
    from osprey.model.checkpoint import OUR_CONFIG, original_key_shapes
    from osprey.model.config import OspreyConfig, osprey_7b_config, tiny_config

    if model_name(args) == "tiny-random":
        config = tiny_config()
    elif args.model in REGISTRY:
        config = osprey_7b_config()
    elif (Path(args.model) / OUR_CONFIG).is_file():
        config = OspreyConfig.load(Path(args.model) / OUR_CONFIG)
    else:
        raise UsageError(
            f"unknown model {args.model!r}; known: {sorted(REGISTRY)} or a folder with {OUR_CONFIG}"
        )
    shapes = original_key_shapes(config)
    if args.keys == "original":
        for name, shape in shapes.items():
            print(f"{name}\t{','.join(map(str, shape))}")
    else:
        total = sum(_numel(s) for s in shapes.values())
        print(f"{args.model}: {len(shapes)} tensors, {total / 1e9:.3f} B parameters")
    return 0


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def cmd_download(args: argparse.Namespace) -> int:
    from osprey.inference.hub import DEFAULT_CHECKPOINTS, download_model, find_clip

    ckpt = checkpoints_dir(args) or DEFAULT_CHECKPOINTS
    path = download_model(args.model, ckpt)
    print(f"{args.model}: {path}")
    if args.clip:
        print(f"CLIP: {find_clip(ckpt)}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from osprey.model.checkpoint import export_original, load_osprey, save_osprey

    model, tokenizer = load_osprey(args.src, clip_path=args.clip)
    if args.to == "original":
        export_original(model, tokenizer, args.dst)
    else:
        save_osprey(model, tokenizer, args.dst)
    print(f"wrote {args.dst}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m osprey", description="Osprey region understanding (osprey-open)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "describe", help="describe masked regions of an image, or ask a question about them",
        parents=[model_options(), generation_options()],
    )  # fmt: skip
    p.add_argument("--image", required=True)
    p.add_argument(
        "--mask",
        action="append",
        default=[],
        help="region mask PNG (nonzero = region); repeat for several regions",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--task", default="short", choices=["category", "short", "detailed"])
    g.add_argument(
        "--question", help="free question; refer to the regions as region1, region2, ..."
    )
    p.add_argument(
        "--paper-sampling",
        action="store_true",
        help="T=0.2, top_p=0.6 sampling as the paper (default: greedy)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser(
        "classify", help="top-k classes of a vocabulary, with probabilities, per masked region",
        parents=[model_options()],
    )  # fmt: skip
    p.add_argument("--image", required=True)
    p.add_argument("--mask", action="append", default=[],
                   help="region mask PNG (nonzero = region); repeat for several; none: the whole "
                   "image")  # fmt: skip
    p.add_argument("--vocab", default="coco",
                   help="coco, lvis, ade20k, cityscapes, paco, a file with one name per line, or "
                   "comma-separated names (default: coco)")  # fmt: skip
    p.add_argument("--top-k", type=positive_int, default=5)
    p.add_argument("--json", action="store_true", help="one JSON list per region of {name, prob}")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser(
        "info", help="tensor names and shapes of a model, computed without downloading",
        parents=[device_options()],
    )  # fmt: skip
    p.add_argument("model", nargs="?", default="osprey-7b",
                   help="registry name or a directory in our format")  # fmt: skip
    p.add_argument(
        "--keys",
        choices=["original", "summary"],
        default="summary",
        help="original: one line per tensor of the released checkpoint, name<TAB>d0,d1,...",
    )
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "download", help="fetch a registry model into the checkpoints directory",
        parents=[device_options()],
    )  # fmt: skip
    p.add_argument("model")
    p.add_argument("--clip", action="store_true", help="also fetch the LAION CLIP vision weights")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser(
        "convert", help="convert a checkpoint between the released format and ours",
        parents=[device_options()],
    )  # fmt: skip
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--to", choices=["ours", "original"], default="ours")
    p.add_argument("--clip", default=None)
    p.set_defaults(func=cmd_convert)
    _add_track(sub)
    return parser


def _add_track(sub) -> None:
    from osprey.app.video_cli import add_parser

    add_parser(sub, [model_options(), video_options()])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


def entry_point() -> None:
    """The ``osprey`` console script (``pip install`` puts it on the PATH)."""
    sys.exit(run(main))


if __name__ == "__main__":
    entry_point()
