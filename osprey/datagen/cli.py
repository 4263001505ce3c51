"""``python -m osprey.datagen <task> ...``: build Osprey-724K-style data from COCO-format files.

Every task writes an append-only work file while it runs (``<out>.work.jsonl``, one line per
image and record kind; a restart skips what it holds) and, at the end, ``--out``: one JSON list in
the published layout. Then it prints counts, rejections by reason, tokens and estimated cost.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from osprey.datagen.records import OUTPUT_FILES, TASKS
from osprey.datagen.runner import (
    ChatSettings,
    JsonlStore,
    RunStats,
    WorkItem,
    export,
    format_summary,
    run,
)

_DESCRIPTIONS = {
    "description": "detailed description of every region (LLM; osprey_detail_description.json)",
    "conversation": "multi-turn conversations about the regions (LLM; osprey_conversation.json)",
    "short-form": "one-word or one-phrase QA about the regions (LLM; osprey_short_form.json)",
    "part-level": "part categories (annotations) and attributes (LLM) from PACO-style files",
    "positive-negative": "yes/no category questions with mined negatives (no LLM; LVIS)",
}

# ---------------------------------------------------------------------------------------------
# arguments


def _common(task: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--instances", type=Path, required=True, help="COCO-format instances JSON")
    p.add_argument("--images", type=Path, help="image folder: check each image exists, sizes match")
    p.add_argument(
        "--out",
        type=Path,
        default=Path(OUTPUT_FILES[task]),
        help=f"final JSON list (default: ./{OUTPUT_FILES[task]})",
    )
    p.add_argument("--work", type=Path, help="resumable JSONL (default: <out>.work.jsonl)")
    p.add_argument("--limit", type=int, help="at most this many images (a seeded sample)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--concurrency", type=int, default=4, help="parallel workers (default 4)")
    p.add_argument("--retry-rejected", action="store_true", help="redo keys rejected earlier")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def _llm() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("LLM (any OpenAI-compatible chat endpoint)")
    g.add_argument("--base-url", default="https://api.openai.com/v1")
    g.add_argument("--model", default="gpt-4", help="default gpt-4, as in the paper")
    g.add_argument("--api-key", help="default: $OPENAI_API_KEY")
    g.add_argument("--rpm", type=float, help="client-side limit, requests per minute")
    g.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    g.add_argument("--max-retries", type=int, default=5, help="retries with back-off per request")
    g.add_argument("--temperature", type=float, default=1.0, help="default 1.0 (the API default)")
    g.add_argument("--max-tokens", type=int, default=2048, help="reply length limit")
    g.add_argument("--price-prompt", type=float, default=0.03, help="$ per 1K prompt tokens")
    g.add_argument("--price-completion", type=float, default=0.06, help="$ per 1K reply tokens")
    g.add_argument("--print-prompt", action="store_true", help="print the first request and stop")
    return p


def _object_inputs() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("text about the images (all optional)")
    g.add_argument("--captions", type=Path, help="COCO captions JSON")
    g.add_argument(
        "--refs",
        type=Path,
        nargs="+",
        default=[],
        help="referring expressions (RefCOCO/+/g); regions = referred objects",
    )
    g.add_argument("--descriptions", type=Path, help="LLaVA-style detailed descriptions JSON")
    g.add_argument("--max-regions", type=int, default=10, help="regions per image (largest)")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m osprey.datagen",
        description="Build Osprey-724K-style instruction data from COCO-format annotations.",
    )
    sub = parser.add_subparsers(dest="task", required=True, metavar="task")
    for task in TASKS:
        parents = [_common(task)]
        if task != "positive-negative":
            parents.append(_llm())
        if task in ("description", "conversation", "short-form"):
            parents.append(_object_inputs())
        p = sub.add_parser(
            task, parents=parents, help=_DESCRIPTIONS[task], description=_DESCRIPTIONS[task]
        )
        _task_options(task, p)
    return parser


def _task_options(task: str, p: argparse.ArgumentParser) -> None:
    if task == "part-level":
        p.add_argument(
            "--qa",
            choices=("categories", "attributes", "both"),
            default="both",
            help="which records to build (attributes need the LLM)",
        )
        p.add_argument("--max-regions", type=int, default=10, help="objects and parts per image")
    if task == "positive-negative":
        p.add_argument("--max-regions", type=int, default=5, help="questions per image")
        p.add_argument(
            "--minilm", help="sentence model folder or Hub id (default: all-MiniLM-L6-v2)"
        )
        p.add_argument("--top-k", type=int, default=8, help="similar names to draw negatives from")
        p.add_argument(
            "--spatial-prob",
            type=float,
            default=0.5,
            help="chance a negative is the nearest other class in the image",
        )


# ---------------------------------------------------------------------------------------------
# tasks


def _api(args: argparse.Namespace):
    from osprey.core.openai_client import ChatAPI  # deferred: imports openai

    return ChatAPI(
        args.base_url,
        args.model,
        api_key=args.api_key or os.environ.get("OPENAI_API_KEY"),
        timeout=args.timeout,
        max_retries=args.max_retries,
        requests_per_minute=args.rpm,
    )


def _object_items(args: argparse.Namespace, skipped: Counter) -> Iterable[WorkItem]:
    from osprey.datagen import sources
    from osprey.datagen.objectlevel import ObjectSources, object_items

    texts = ObjectSources(
        captions=sources.load_captions(args.captions) if args.captions else {},
        descriptions=sources.load_descriptions(args.descriptions) if args.descriptions else {},
        refs=sources.load_refs(args.refs),
    )
    if not (texts.captions or texts.descriptions or texts.refs):
        print(
            "note: no --captions, --descriptions or --refs: the LLM sees categories and boxes only",
            file=sys.stderr,
        )
    data = sources.load_instances(args.instances)
    return object_items(
        args.task,
        data,
        texts,
        max_regions=args.max_regions,
        limit=args.limit,
        seed=args.seed,
        skipped=skipped,
    )


def _part_items(args: argparse.Namespace, skipped: Counter) -> Iterable[WorkItem]:
    from osprey.datagen.partlevel import PART_KINDS, part_items
    from osprey.datagen.sources import load_instances

    kinds = PART_KINDS if args.qa == "both" else (args.qa,)
    return part_items(
        load_instances(args.instances),
        kinds=kinds,
        max_regions=args.max_regions,
        limit=args.limit,
        seed=args.seed,
        skipped=skipped,
    )


def _posneg_items(args: argparse.Namespace, skipped: Counter) -> Iterable[WorkItem]:
    from osprey.datagen.negatives import SimilarNames, load_sentence_model
    from osprey.datagen.posneg import posneg_items
    from osprey.datagen.sources import load_instances

    data = load_instances(args.instances)
    names = sorted(set(data.categories.values()))
    sampler = SimilarNames.from_model(names, load_sentence_model(args.minilm), k=args.top_k)
    return posneg_items(
        data,
        sampler,
        max_regions=args.max_regions,
        limit=args.limit,
        seed=args.seed,
        spatial_prob=args.spatial_prob,
        skipped=skipped,
    )


def _progress(task: str):
    def report(stats: RunStats) -> None:
        done = stats.accepted_new + sum(stats.rejected.values()) + sum(stats.skipped.values())
        if done % 25 == 0:
            print(f"{task}: {done} processed, {stats.accepted_new} accepted", file=sys.stderr)

    return report


def _print_first(items: Iterable[WorkItem]) -> int:
    for item in items:
        if item.messages is not None:
            for message in item.messages:
                print(f"--- {message['role']}\n{message['content']}")
            return 0
    print("no item needs an LLM request", file=sys.stderr)
    return 1


def _execute(args: argparse.Namespace, items: Iterable[WorkItem], skipped: Counter) -> int:
    needs_llm = args.task != "positive-negative" and getattr(args, "qa", "") != "categories"
    if needs_llm and args.print_prompt:
        return _print_first(items)
    store = JsonlStore(args.work or args.out.with_name(args.out.stem + ".work.jsonl"), args.task)
    stats, order = run(
        items,
        args.task,
        store,
        _api(args) if needs_llm else None,
        chat=ChatSettings(args.temperature, args.max_tokens, args.seed) if needs_llm else None,
        concurrency=args.concurrency,
        image_root=args.images,
        retry_rejected=args.retry_rejected,
        progress=None if args.quiet else _progress(args.task),
    )
    stats.skipped.update(skipped)
    written = export(store, order, args.out)
    prices = (args.price_prompt, args.price_completion) if needs_llm else (0.0, 0.0)
    print(format_summary(stats, prices))
    print(f"wrote {written} records to {args.out} (work file: {store.path})")
    return 0


_ITEMS = {
    "description": _object_items,
    "conversation": _object_items,
    "short-form": _object_items,
    "part-level": _part_items,
    "positive-negative": _posneg_items,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    skipped: Counter = Counter()
    return _execute(args, _ITEMS[args.task](args, skipped), skipped)
