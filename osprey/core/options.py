"""Command-line options shared by every command (``app.py``, ``python -m osprey``,
``python -m osprey.eval``, ``python -m sam_bridge``), and the one way a command reports an error.

Only argparse and the standard library are imported here, so ``--help`` stays instant. Every
model option also reads an environment variable (``OSPREY_MODEL``, ``OSPREY_DEVICE``, ...): a
Hugging Face Space cannot pass flags.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from osprey.core.constants import DEFAULT_MAX_NEW_TOKENS
from osprey.core.errors import OspreyError

DEFAULT_MODEL = "osprey-7b"
TINY_MODEL = "tiny-random"
DTYPE_WORDS = ("auto", "fp32", "float32", "bf16", "bfloat16", "fp16", "float16", "half")
QUANTIZE_WORDS = ("auto", "none", "8bit", "4bit")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name) or default


def env_flag(name: str) -> bool:
    """An on/off environment variable: on for 1, true, yes or on (any case); off otherwise,
    so OSPREY_NO_BATCHING=0 means what it says."""
    return (os.environ.get(name) or "").lower() in ("1", "true", "yes", "on")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a clear usage error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def device_options() -> argparse.ArgumentParser:
    """``--device --dtype --checkpoints --offline --tiny --debug`` (a parent parser)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("device and weights")
    g.add_argument("--device", default=_env("OSPREY_DEVICE", "auto"),
                   help="auto, cpu, cuda, cuda:N, mps (env OSPREY_DEVICE; default: auto)")  # fmt: skip
    g.add_argument("--dtype", default=_env("OSPREY_DTYPE", "auto"), choices=DTYPE_WORDS,
                   metavar="DTYPE", help=f"{', '.join(DTYPE_WORDS)} (env OSPREY_DTYPE)")  # fmt: skip
    g.add_argument("--checkpoints", "--checkpoints-dir", dest="checkpoints",
                   default=_env("OSPREY_CHECKPOINTS"),
                   help="weights folder (env OSPREY_CHECKPOINTS; default: the repo's checkpoints/)")  # fmt: skip
    g.add_argument("--offline", "--no-download", dest="offline", action="store_true",
                   default=env_flag("OSPREY_OFFLINE"),
                   help="never download; stop with what to fetch if weights are missing")  # fmt: skip
    g.add_argument("--tiny", action="store_true", default=env_flag("OSPREY_TINY"),
                   help="tiny random-weight models: no downloads, meaningless output (development)")  # fmt: skip
    g.add_argument("--debug", action="store_true", default=env_flag("OSPREY_DEBUG"),
                   help="show tracebacks instead of one-line errors (env OSPREY_DEBUG=1)")  # fmt: skip
    return p


def model_options(*, model_default: str | None = DEFAULT_MODEL) -> argparse.ArgumentParser:
    """:func:`device_options` plus ``--model --clip --quantize`` (a parent parser)."""
    p = argparse.ArgumentParser(add_help=False, parents=[device_options()])
    g = p.add_argument_group("model")
    g.add_argument("--model", default=_env("OSPREY_MODEL", model_default),
                   help="registry name (osprey-7b, osprey-chat-7b, ..., tiny-random) or a "
                   "checkpoint folder (env OSPREY_MODEL)")  # fmt: skip
    g.add_argument("--clip", default=None,
                   help="open_clip CLIP file, when the checkpoint does not embed the vision tower")  # fmt: skip
    g.add_argument("--quantize", choices=QUANTIZE_WORDS, default=_env("OSPREY_QUANTIZE"),
                   help="8-bit / 4-bit LLM weights with bitsandbytes; auto: bf16, else 8-bit, else "
                   "4-bit, whichever fits the free memory (env OSPREY_QUANTIZE)")  # fmt: skip
    return p


def generation_options() -> argparse.ArgumentParser:
    """``--max-new-tokens`` (a parent parser)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--max-new-tokens", type=positive_int,
                   default=int(_env("OSPREY_MAX_NEW_TOKENS", str(DEFAULT_MAX_NEW_TOKENS))),
                   help=f"longest answer in tokens (env OSPREY_MAX_NEW_TOKENS; default "
                   f"{DEFAULT_MAX_NEW_TOKENS})")  # fmt: skip
    return p


def positive_float(text: str) -> float:
    """argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def video_options() -> argparse.ArgumentParser:
    """What a video clip may be (a parent parser; ``osprey.core.video.VideoLimits``'s fields,
    defaults for a CPU: short clips at a low frame rate)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("video")
    g.add_argument("--video-fps", type=positive_float, default=float(_env("OSPREY_VIDEO_FPS", "2")),
                   help="frames kept per second of video (env OSPREY_VIDEO_FPS; default 2)")  # fmt: skip
    g.add_argument("--max-video-seconds", type=positive_float,
                   default=float(_env("OSPREY_MAX_VIDEO_SECONDS", "120")),
                   help="longest clip accepted (env OSPREY_MAX_VIDEO_SECONDS; default 120)")  # fmt: skip
    g.add_argument("--max-video-frames", type=positive_int,
                   default=int(_env("OSPREY_MAX_VIDEO_FRAMES", "300")),
                   help="most frames kept after sampling (env OSPREY_MAX_VIDEO_FRAMES; default 300)")  # fmt: skip
    g.add_argument("--video-max-side", type=positive_int,
                   default=int(_env("OSPREY_VIDEO_MAX_SIDE", "1024")),
                   help="pixels on a kept frame's long side (env OSPREY_VIDEO_MAX_SIDE; default 1024)")  # fmt: skip
    return p


def video_limits(args: argparse.Namespace):
    """The :class:`~osprey.core.video.VideoLimits` the options name."""
    from osprey.core.video import VideoLimits

    return VideoLimits(
        max_seconds=args.max_video_seconds, max_frames=args.max_video_frames,
        fps=args.video_fps, max_side=args.video_max_side,
    )  # fmt: skip


def model_name(args: argparse.Namespace) -> str | None:
    """The model to load: ``tiny-random`` with ``--tiny`` (``--model tiny-random`` stays an alias)."""
    return TINY_MODEL if getattr(args, "tiny", False) else args.model


def checkpoints_dir(args: argparse.Namespace) -> Path | None:
    return Path(args.checkpoints) if getattr(args, "checkpoints", None) else None


# ---------------------------------------------------------------------------------------------
# errors


def run(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a command's ``main``: an :class:`~osprey.core.errors.OspreyError` (or a missing file, or
    Ctrl-C) ends it with one ``error: ...`` line on stderr and exit code 1 (130 for Ctrl-C),
    never a traceback, unless ``--debug`` or ``OSPREY_DEBUG=1``. Usage errors exit 2 (argparse)."""
    debug = env_flag("OSPREY_DEBUG") or "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        return main(argv)
    except BrokenPipeError:  # the reader went away (`... | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (OspreyError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        if debug:
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1


def one_line(exc: BaseException) -> str:
    """An exception's message as the user should read it (multi-line hints kept, indented)."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
        text = f"{text}: {exc.filename}"
    return text.replace("\n", "\n  ")
