"""``python -m osprey track``: the video service offline, from the command line.

    python -m osprey track --video CLIP --point X,Y,FRAME [--point X,Y,FRAME,0] [--box X0,Y0,X1,Y1,FRAME]
        [--object NAME --point ...] --out tracks.json [--describe-every K] [--masks-zip Z]
        [--mp4 M] [--start F] [--direction both|forward|backward] [--tiny | --sam NAME]

Prompts belong to the current object; ``--object NAME`` starts the next one (the first is
``track1`` unless named). Everything the inputs can get wrong (the clip, a frame outside it, a
click outside a frame) is found before a model loads; each is one ``error:`` line.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from osprey.core.errors import UsageError


@dataclass
class ObjectPrompts:
    name: str = ""
    # (frame, points [(x, y)], labels, box)
    frames: dict[int, tuple[list, list, tuple | None]] = field(default_factory=dict)


class _Prompts(argparse.Action):
    """``--point``, ``--box`` and ``--object`` into one ordered list of (kind, text)."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, self.dest, None) or [])
        items.append((option_string.lstrip("-"), values))
        setattr(namespace, self.dest, items)


def add_parser(sub, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "track", parents=parents,
        help="track clicked objects through a clip (SAM 2.1), optionally describe them over time",
    )  # fmt: skip
    p.add_argument("--video", required=True, help="MP4, MOV, WebM, MKV, AVI or GIF")
    p.add_argument("--point", dest="prompts", action=_Prompts, metavar="X,Y,FRAME[,LABEL]",
                   help="a click on FRAME (label 1 positive, 0 negative; default 1)")  # fmt: skip
    p.add_argument("--box", dest="prompts", action=_Prompts, metavar="X0,Y0,X1,Y1,FRAME",
                   help="a box on FRAME")  # fmt: skip
    p.add_argument("--object", dest="prompts", action=_Prompts, metavar="NAME",
                   help="start the next object, named NAME (its prompts follow)")  # fmt: skip
    p.add_argument("--out", required=True, help="the tracks as YouTube-VIS-style JSON")
    p.add_argument("--masks-zip", default=None, help="also a zip of per-frame PNG masks")
    p.add_argument("--mp4", default=None, help="also the clip with the tracks drawn")
    p.add_argument("--start", type=int, default=None, help="first frame tracked (default: the "
                   "first with a prompt)")  # fmt: skip
    p.add_argument("--direction", choices=["both", "forward", "backward"], default="both")
    p.add_argument("--describe-every", type=int, default=0, metavar="K",
                   help="category and caption of each track every K frames it is seen (Osprey)")  # fmt: skip
    p.add_argument("--sam", default="auto", metavar="NAME",
                   help="auto (SAM 2.1 large on a GPU, tiny on a CPU) or sam2.1-tiny ... -large")  # fmt: skip
    p.add_argument("--sam-checkpoint", default=None, help="a SAM 2 folder (config.json + "
                   "model.safetensors)")  # fmt: skip
    p.set_defaults(func=cmd_track)


FORMS = {"--point": "X,Y,FRAME or X,Y,FRAME,LABEL", "--box": "X0,Y0,X1,Y1,FRAME"}


def _numbers(text: str, count: tuple[int, ...], what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in count or not all(v == v and abs(v) < float("inf") for v in values):
        raise UsageError(f"{what} {text!r}: expected {FORMS[what]} (numbers)")
    return values


def parse_prompts(items: list[tuple[str, str]]) -> list[ObjectPrompts]:
    """The ordered ``--point`` / ``--box`` / ``--object`` options as objects and their prompts."""
    objects = [ObjectPrompts()]
    for kind, text in items or []:
        if kind == "object":
            if objects[-1].frames or objects[-1].name:
                objects.append(ObjectPrompts())
            objects[-1].name = text
            continue
        current = objects[-1]
        if kind == "point":
            v = _numbers(text, (3, 4), "--point")
            if len(v) == 4 and v[3] not in (0, 1):
                raise UsageError(f"--point {text!r}: the label is 1 (positive) or 0 (negative)")
            frame, label = _frame(v[2], text), int(v[3]) if len(v) == 4 else 1
            points, labels, box = current.frames.get(frame, ([], [], None))
            current.frames[frame] = ([*points, (v[0], v[1])], [*labels, label], box)
        else:
            v = _numbers(text, (5,), "--box")
            frame = _frame(v[4], text)
            points, labels, _ = current.frames.get(frame, ([], [], None))
            current.frames[frame] = (points, labels, tuple(v[:4]))
    objects = [o for o in objects if o.frames]
    if not objects:
        raise UsageError("track needs at least one --point X,Y,FRAME or --box X0,Y0,X1,Y1,FRAME")
    return objects


def _frame(value: float, text: str) -> int:
    if value != int(value) or value < 0:
        raise UsageError(f"{text!r}: FRAME is a frame number (0, 1, ...)")
    return int(value)


def _check(objects: list[ObjectPrompts], clip) -> None:
    """Every prompt inside the clip, before a model loads."""
    for obj in objects:
        for frame, (points, _, box) in obj.frames.items():
            if frame >= len(clip):
                raise UsageError(f"frame {frame} is outside the clip: it has {len(clip)} frames "
                                 f"(0 to {len(clip) - 1}) at --video-fps {clip.fps:g}")  # fmt: skip
            inside = [(x, y, 0 <= x < clip.width and 0 <= y < clip.height) for x, y in points]
            if box:
                inside += [(x, y, 0 <= x <= clip.width and 0 <= y <= clip.height)
                           for x, y in (box[:2], box[2:])]  # fmt: skip
            for x, y, ok in inside:
                if not ok:
                    raise UsageError(f"({x:g}, {y:g}) on frame {frame} is outside the "
                                     f"{clip.width}x{clip.height} frames")  # fmt: skip


def _tracker(args: argparse.Namespace):
    from osprey.core.devices import resolve_device
    from sam_bridge import SamBridge
    from sam_bridge.names import auto_choice, check_name, family
    from sam_bridge.tracker import VideoTracker

    if args.tiny:
        return VideoTracker.tiny()
    check_name(args.sam)
    name = args.sam if args.sam != "auto" else auto_choice(resolve_device(args.device).type)
    if family(name) != "sam2":
        raise UsageError(f"track needs SAM 2.1 (--sam sam2.1-tiny ... sam2.1-large), not {name}")
    bridge = SamBridge.from_pretrained(
        name, args.sam_checkpoint, args.checkpoints, device=args.device, download=not args.offline
    )
    return VideoTracker.for_bridge(bridge, bridge.weights_dir / "model.safetensors")


def cmd_track(args: argparse.Namespace) -> int:
    from osprey.app.video_service import VideoChat
    from osprey.app.video_session import VideoSession
    from osprey.core.options import video_limits
    from osprey.core.video import open_clip

    objects = parse_prompts(args.prompts)
    if args.describe_every < 0:
        raise UsageError("--describe-every is a number of frames (0: no descriptions)")
    for out in (args.out, args.masks_zip, args.mp4):
        if out and not Path(out).resolve().parent.is_dir():
            raise UsageError(f"the folder of {out} does not exist")
    limits = video_limits(args)
    clip = open_clip(args.video, limits)
    _check(objects, clip)
    print(f"{len(clip)} frames of {clip.width}x{clip.height} at {clip.fps:g} a second"
          + (f" ({clip.note})" if clip.note else ""), file=sys.stderr)  # fmt: skip
    video, vs = VideoChat(_tracker(args), limits), VideoSession()
    video.start(vs, clip)
    for obj in objects:
        index = None
        for frame, (points, labels, box) in sorted(obj.frames.items()):
            index, _ = video.prompt(vs, frame, points, labels, box, track=index)
        if obj.name:
            video.rename(vs, index, obj.name)
    for p in video.track(vs, args.start, args.direction):
        print(f"\rtracked {p.done}/{p.total} frames", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    if args.describe_every:
        _describe(args, video, vs)
    return _write(args, video, vs)


def _describe(args: argparse.Namespace, video, vs) -> None:
    from osprey.app.service import RegionChat
    from osprey.app.video_answers import VideoAnswers
    from osprey.core.options import checkpoints_dir, model_name
    from osprey.inference.facade import Osprey

    osp = Osprey.from_pretrained(
        model_name(args), device=args.device, dtype=args.dtype,
        checkpoints_dir=checkpoints_dir(args), clip_path=args.clip, download=not args.offline,
        quantize=args.quantize,
    )  # fmt: skip
    VideoAnswers(RegionChat(osp, None), video).describe_over_time(vs, args.describe_every)
    args.model_used = osp.name


def _write(args: argparse.Namespace, video, vs) -> int:
    from osprey.app import video_export

    untrained = args.tiny or video.untrained
    data = video_export.to_json(vs, getattr(args, "model_used", ""), untrained)
    Path(args.out).write_text(json.dumps(data))
    if args.masks_zip:
        Path(args.masks_zip).write_bytes(video_export.to_zip(vs, data))
    if args.mp4:
        video_export.to_mp4(vs, args.mp4)
    if untrained:
        print("[tiny-random: untrained weights, the masks and answers are meaningless]",
              file=sys.stderr)  # fmt: skip
    for track in vs.tracks:
        runs = ", ".join(f"{a}-{b}" for a, b in track.runs()) or "not seen"
        said = "; ".join(f"{s.start}-{s.end}: {s.category}" for s in track.spans)
        print(f"{track.label}\tframes {runs}" + (f"\t{said}" if said else ""))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0
