"""``python app.py``: the demo's command line (each option also an environment variable, for
Spaces) and its start-up: check the options, build the service, build the page, serve."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from osprey.app.demo import CACHE_TTL_S, build_demo
from osprey.app.fair_share import PER_VISITOR
from osprey.app.serving import Policy, serve, wait_and_drain
from osprey.app.startup import build_service, check_options, stop_service
from osprey.core.options import env_flag, generation_options, model_options, positive_int
from sam_bridge.names import resolve_choice

DRAIN_SECONDS = 30.0  # a stopping server lets running answers finish this long


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(
        description="Osprey point-and-describe demo (osprey-open)",
        parents=[model_options(), generation_options()],
    )
    p.add_argument("--sam", default=env("OSPREY_SAM"), metavar="NAME",
                   help="auto (default: SAM 2.1 large on a GPU where it fits beside the LLM, SAM "
                   "2.1 tiny on a CPU), sam2.1-tiny, -small, -base-plus, -large, vit_b, vit_l, "
                   "vit_h, or the Hub id of a SAM 2 checkpoint (env OSPREY_SAM)")  # fmt: skip
    p.add_argument("--sam-model-type", default=env("SAM_MODEL_TYPE"), metavar="NAME",
                   help="the older name of --sam (env SAM_MODEL_TYPE)")  # fmt: skip
    p.add_argument("--sam-checkpoint", default=None,
                   help="SAM weights: a .pth for vit_*, a folder with config.json + "
                   "model.safetensors for SAM 2 (default: downloaded into --checkpoints)")  # fmt: skip
    p.add_argument("--compile", action="store_true",
                   help="static KV cache + torch.compile'd decode step (CUDA graphs on GPUs; "
                   "compiles at start-up; not on ZeroGPU)")  # fmt: skip
    p.add_argument("--host", default=None, help="default: $GRADIO_SERVER_NAME or 127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default: $GRADIO_SERVER_PORT or 7860")
    p.add_argument("--share", action="store_true", help="create a public gradio.live link")
    p.add_argument("--cache-ttl", type=int, default=int(env("OSPREY_CACHE_TTL", str(CACHE_TTL_S))),
                   help="seconds drawn images and exports stay in the server's cache")  # fmt: skip
    p.add_argument("--max-file-size", default=env("OSPREY_MAX_FILE_SIZE", "50mb"),
                   help="largest upload the server accepts, e.g. 50mb (env OSPREY_MAX_FILE_SIZE)")  # fmt: skip
    p.add_argument("--max-active", type=int, default=int(env("OSPREY_MAX_ACTIVE", "32")),
                   help="answers decoded together (continuous batching; env OSPREY_MAX_ACTIVE)")  # fmt: skip
    p.add_argument("--queue-size", type=int, default=int(env("OSPREY_QUEUE_SIZE", "64")),
                   help="answers waiting for a place before new ones are refused")  # fmt: skip
    p.add_argument("--no-batching", action="store_true", default=env_flag("OSPREY_NO_BATCHING"),
                   help="answer one request at a time (no continuous batching)")  # fmt: skip
    p.add_argument("--no-isolation", action="store_true", default=env_flag("OSPREY_NO_ISOLATION"),
                   help="send no cross-origin isolation headers (the page's decoder then runs on "
                        "one thread; env OSPREY_NO_ISOLATION)")  # fmt: skip
    _capacity_options(p)
    p.set_defaults(quantize=env("OSPREY_QUANTIZE", "auto"))
    args = p.parse_args(argv)
    try:
        args.sam = resolve_choice(args.sam, args.sam_model_type)  # "auto" is decided in _fit
    except ValueError as exc:
        p.error(str(exc))
    if args.compile and args.quantize in ("8bit", "4bit"):
        p.error("--compile does not combine with --quantize (bitsandbytes layers do not compile)")
    return args


def _capacity_options(p: argparse.ArgumentParser) -> None:
    """How the server shares itself: per visitor, in memory, and when it stops."""
    env = os.environ.get
    g = p.add_argument_group("sharing the server")
    g.add_argument("--per-visitor", type=positive_int,
                   default=int(env("OSPREY_PER_VISITOR", str(PER_VISITOR))),
                   help="answers (and new images) one visitor may have waiting or running; "
                   "beyond: 'you already have N requests waiting' (env OSPREY_PER_VISITOR)")  # fmt: skip
    g.add_argument("--trust-proxy", action="store_true", default=env_flag("OSPREY_TRUST_PROXY"),
                   help="behind a proxy (a Space): a client's address is the last entry of "
                   "X-Forwarded-For (env OSPREY_TRUST_PROXY)")  # fmt: skip
    g.add_argument("--cache-mib", type=positive_int, default=_int_env("OSPREY_CACHE_MIB"),
                   help="memory for the caches (SAM embeddings, image features, prompt "
                   "prefixes); default: a share of what the models leave (env OSPREY_CACHE_MIB)")  # fmt: skip
    g.add_argument("--session-mib", type=positive_int, default=_int_env("OSPREY_SESSION_MIB"),
                   help="memory for the sessions' uploads, the rest on disk; default: a share "
                   "of the memory left (env OSPREY_SESSION_MIB)")  # fmt: skip
    g.add_argument("--drain-seconds", type=float,
                   default=float(env("OSPREY_DRAIN_SECONDS", str(DRAIN_SECONDS))),
                   help="on SIGTERM / Ctrl-C, how long running answers may finish before the "
                   "server stops (env OSPREY_DRAIN_SECONDS)")  # fmt: skip


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def main(argv: list[str] | None = None, examples_dir: Path | None = None) -> int:
    """Start the demo (blocks while it serves). ``examples_dir``: the photos offered on the page
    (default: the checkout's ``examples/``)."""
    from osprey.core.memory import limit_malloc_arenas

    args = parse_args(argv)
    check_options(args)
    limit_malloc_arenas()  # freed photos go back to the system (osprey/core/memory.py)
    service = build_service(args)
    examples = None if examples_dir is None else sorted(map(str, Path(examples_dir).glob("*.jpg")))
    demo = build_demo(
        service, cache_ttl=args.cache_ttl, examples=examples, trust_proxy=args.trust_proxy
    )
    demo.queue(max_size=4 * args.queue_size)  # each event's lane limits how many run at once
    launch = {"share": args.share, "max_file_size": args.max_file_size}
    if args.host:
        launch["server_name"] = args.host
    if args.port:
        launch["server_port"] = args.port
    policy = Policy(per_visitor=args.per_visitor, trust_proxy=args.trust_proxy)
    serving = serve(demo, launch, isolate=not args.no_isolation, policy=policy)
    cut = wait_and_drain(serving, args.drain_seconds)
    stop_service(service)
    print(f"Stopped ({cut} unfinished request(s) cut)." if cut else "Stopped.", file=sys.stderr)
    return 0
