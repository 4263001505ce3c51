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
