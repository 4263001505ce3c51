"""``python app.py``: the demo's command line (each option also an environment variable, for
Spaces) and its start-up: check the options, build the service, build the page, serve."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from osprey.app.demo import CACHE_TTL_S, build_demo
from osprey.app.serving import serve
from osprey.app.startup import build_service, build_video, check_options
from osprey.core.options import env_flag, generation_options, model_options, video_options
from sam_bridge.names import resolve_choice


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(
        description="Osprey point-and-describe demo (osprey-open)",
        parents=[model_options(), generation_options(), video_options()],
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
    p.set_defaults(quantize=env("OSPREY_QUANTIZE", "auto"))
    args = p.parse_args(argv)
    try:
        args.sam = resolve_choice(args.sam, args.sam_model_type)  # "auto" is decided in _fit
    except ValueError as exc:
        p.error(str(exc))
    if args.compile and args.quantize in ("8bit", "4bit"):
        p.error("--compile does not combine with --quantize (bitsandbytes layers do not compile)")
    return args


def main(argv: list[str] | None = None, examples_dir: Path | None = None) -> int:
    """Start the demo (blocks while it serves). ``examples_dir``: the photos offered on the page
    (default: the checkout's ``examples/``)."""
    from osprey.core.memory import limit_malloc_arenas

    args = parse_args(argv)
    check_options(args)
    limit_malloc_arenas()  # freed photos go back to the system (osprey/core/memory.py)
    service = build_service(args)
    examples = None if examples_dir is None else sorted(map(str, Path(examples_dir).glob("*.jpg")))
    video = build_video(args, service)
    demo = build_demo(service, cache_ttl=args.cache_ttl, examples=examples, video=video)
    demo.queue(max_size=4 * args.queue_size)  # each event's lane limits how many run at once
    launch = {"share": args.share, "max_file_size": args.max_file_size}
    if args.host:
        launch["server_name"] = args.host
    if args.port:
        launch["server_port"] = args.port
    serve(demo, launch, isolate=not args.no_isolation)
    return 0
