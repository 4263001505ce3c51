"""From options to a running service: the models the options name, fitted to the machine
(:mod:`osprey.inference.hardware_fit`), loaded and placed, the batching engine started; and
everything the options can get wrong, found before any of that."""

from __future__ import annotations

import argparse
import sys

from osprey.app.budgets import Budgets, plan_budgets
from osprey.app.session_images import SessionImages
from osprey.app.zerogpu import zero_gpu
from sam_bridge.names import tiny_family

# The tiny SAM is untrained: at SAM's thresholds (0.88 / 0.95) "segment everything" keeps nothing.
TINY_EVERYTHING = {"points_per_side": 8, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


def build_service(args: argparse.Namespace):
    from osprey.app.service import RegionChat
    from osprey.core.options import checkpoints_dir, model_name
    from osprey.inference.facade import Osprey
    from sam_bridge import SamBridge

    compile_ = args.compile and not zero_gpu("--compile is ignored")
    if args.tiny:
        sam = SamBridge.tiny(family=tiny_family(args.sam))  # --tiny alone: the tiny SAM 1
        osp, extra = Osprey.tiny(), {"everything": TINY_EVERYTHING}
        extra["max_new_tokens"] = min(args.max_new_tokens, 48)
        kv_budget = 256 * 2**20
    else:
        fit = _fit(args)
        compile_ = compile_ and fit.quantize is None
        ckpt = checkpoints_dir(args)
        sam = SamBridge.from_pretrained(
            fit.sam_model_type, args.sam_checkpoint, ckpt, device=args.device,
            download=not args.offline,
        )  # fmt: skip
        osp = Osprey.from_pretrained(
            model_name(args), device=args.device, dtype=args.dtype, checkpoints_dir=ckpt,
            clip_path=args.clip, download=not args.offline, quantize=fit.quantize,
            compile=compile_,
        )  # fmt: skip
        extra = {"max_new_tokens": args.max_new_tokens}
        kv_budget = _kv_budget(fit, osp)
    if compile_ and args.tiny:
        osp.enable_static_decoding()
    if not (args.no_batching or compile_ or zero_gpu("answers are generated per request")):
        osp.generator.enable_batching(
            max_active=args.max_active, max_waiting=args.queue_size, kv_budget=kv_budget
        )
    budgets = _budgets(args, None if args.tiny else fit, kv_budget)
    apply_budgets(osp, sam, budgets)
    print(budgets.describe(), file=sys.stderr)
    return RegionChat(osp, sam, images=SessionImages(budgets.sessions), **extra)


def _budgets(args: argparse.Namespace, fit, kv_budget: int) -> Budgets:
    """The caches' and sessions' budgets from what the models leave (the tiny ones: a generous
    estimate of their peak), or as ``--cache-mib`` / ``--session-mib`` set them."""
    from osprey.inference.hardware_fit import GIB, MARGIN_GIB, TINY_PEAK_GIB, available_gib

    host = (available_gib("cpu") - MARGIN_GIB) * GIB
    if fit is None:  # --tiny, on the CPU
        left = host - TINY_PEAK_GIB * GIB - kv_budget
    else:
        left = (fit.available_gib - fit.peak_gib - MARGIN_GIB) * GIB - kv_budget
        host = host - (fit.peak_gib * GIB if fit.device == "cpu" else 0)
    return plan_budgets(max(0, int(left)), max(0, int(host)), args.cache_mib, args.session_mib)


def apply_budgets(osp, sam, budgets: Budgets) -> None:
    """Bound the models' caches by ``budgets`` (bytes; each keeps at least its newest entry)."""
    sam.resize_cache(budgets.sam)
    osp.images.cache.max_bytes = budgets.features
    osp.generator.prefix.max_bytes = budgets.prefix


def stop_service(service) -> None:
    """The server is stopping: end every answer still streaming, close the batching engine,
    delete the sessions' files."""
    service.stop_all()
    engine = service.osprey.generator.engine
    if engine is not None:
        engine.close()
    service.images.close()


def _fit(args: argparse.Namespace):
    """The LLM's form and SAM's size for this machine (osprey.inference.hardware_fit), printed once."""
    from osprey.core.devices import resolve_device
    from osprey.inference.hardware_fit import plan

    fit = plan(resolve_device(args.device).type, args.quantize, args.sam)
    print(fit.describe(), file=sys.stderr)
    return fit


def _kv_budget(fit, osp) -> int:
    from osprey.inference.batching_engine import default_kv_budget
    from osprey.inference.hardware_fit import kv_budget_bytes

    return kv_budget_bytes(fit, default_kv_budget(osp.model.device))


def check_options(args: argparse.Namespace) -> None:
    """Everything the options can get wrong, found before any download or model load: the
    model's name, the device, the dtype; offline, every missing file at once."""
    from osprey.core.devices import parse_dtype, resolve_device
    from osprey.core.errors import CheckpointNotFound
    from osprey.core.options import checkpoints_dir, model_name
    from osprey.inference.hub import DEFAULT_CHECKPOINTS, check_model_name, missing_downloads
    from sam_bridge.loading import missing_files

    if args.tiny:
        return
    check_model_name(model_name(args))
    resolve_device(args.device)
    parse_dtype(args.dtype)
    if not args.offline:
        return
    ckpt = checkpoints_dir(args) or DEFAULT_CHECKPOINTS
    missing = missing_downloads(model_name(args), ckpt)
    missing += missing_files(_planned_sam(args), args.sam_checkpoint, ckpt)
    if missing:
        lines = "\n".join(f"  {what}: {fetch}" for what, fetch in missing)
        raise CheckpointNotFound(f"offline, and these weights are missing (fetch them where the "
                                 f"network is reachable):\n{lines}")  # fmt: skip


def _planned_sam(args: argparse.Namespace) -> str:
    """The SAM ``--sam`` names, ``auto`` decided as :func:`_fit` will (quietly)."""
    if args.sam != "auto":
        return args.sam
    from osprey.core.devices import resolve_device
    from osprey.core.errors import UsageError
    from osprey.inference.hardware_fit import plan
    from sam_bridge.names import auto_choice

    device = resolve_device(args.device).type
    try:
        return plan(device, args.quantize, "auto").sam_model_type
    except UsageError:  # nothing fits: said when the models load; the files are what we check
        return auto_choice(device)
