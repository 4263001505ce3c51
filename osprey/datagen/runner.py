"""Run work items to records: resumable, concurrent, counted.

Each image (or image and record kind) is a :class:`WorkItem` with a stable key. Results go to an
append-only JSONL file as they arrive, one line per key: the accepted record, or the rejection
reason with the raw reply. A restart reads the file and skips every key it holds (rejected keys
too, unless ``retry_rejected``); requests that failed after the client's retries are not written,
so the next run tries them again. :func:`export` writes the accepted records as one JSON list in
the published layout, in the items' order.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from osprey.core.openai_client import ChatAPI, map_concurrent
from osprey.datagen.records import RecordError, assemble_record, check_header, validate_record

# ---------------------------------------------------------------------------------------------
# data


# The server refused this very request (bad request, too large, unprocessable): asking again
# will not help, so it is recorded as a rejection instead of being retried on every run.
_REQUEST_REJECTED = (400, 413, 422)


class RequestFailed(Exception):
    """An LLM request failed after the client's retries (rate limits, 5xx, timeouts, network);
    the item is not recorded, so the next run asks again."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind


@dataclass(frozen=True)
class WorkItem:
    """One request (or one local build) producing one record.

    ``skeleton`` holds id, file_name, height, width and annotation; ``build`` turns the reply
    text (None when ``messages`` is None: no LLM involved) into the record's body, e.g.
    ``{"conversations": [...]}``, raising :class:`RecordError` to reject it.
    """

    key: str
    skeleton: dict[str, Any]
    messages: list[dict[str, str]] | None
    build: Callable[[str | None], dict[str, Any]]


@dataclass
class Outcome:
    key: str
    status: str  # "ok", "rejected" (written to the JSONL) or "skipped" (bad input, not written)
    record: dict[str, Any] | None = None
    reason: str | None = None
    detail: str | None = None
    reply: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class ChatSettings:
    temperature: float = 1.0
    max_tokens: int = 2048
    seed: int | None = None


@dataclass
class RunStats:
    task: str
    accepted_new: int = 0
    accepted_before: int = 0
    kinds: Counter = field(default_factory=Counter)  # accepted records per key suffix
    rejected: Counter = field(default_factory=Counter)  # this run, by reason
    rejected_before: int = 0
    skipped: Counter = field(default_factory=Counter)  # inputs dropped before any request
    api_errors: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_tokens_all: int = 0
    completion_tokens_all: int = 0


# ---------------------------------------------------------------------------------------------
# the JSONL store


def _repair_tail(path: Path) -> None:
    """Drop a partial last line left by a crash, so appends start on a fresh line."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


class JsonlStore:
    """Append-only results of one task, keyed by work item."""

    def __init__(self, path: str | Path, task: str):
        self.path = Path(path)
        self.task = task
        self.lines: dict[str, dict[str, Any]] = {}
        self.tokens = [0, 0]  # prompt, completion: every line ever written, retried ones too
        if self.path.exists():
            _repair_tail(self.path)
            for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    self._load(json.loads(line), number)

    def _load(self, entry: dict[str, Any], number: int) -> None:
        if entry.get("task") != self.task:
            raise ValueError(
                f"{self.path}:{number} holds task {entry.get('task')!r}, not {self.task!r}; "
                "use another work file"
            )
        self._add(entry)

    def _add(self, entry: dict[str, Any]) -> None:
        self.lines[entry["key"]] = entry
        prompt, completion = entry.get("usage", [0, 0])
        self.tokens = [self.tokens[0] + prompt, self.tokens[1] + completion]

    def done(self, retry_rejected: bool = False) -> set[str]:
        return {k for k, e in self.lines.items() if e["status"] == "ok" or not retry_rejected}

    def append(self, outcome: Outcome) -> None:
        entry = {"key": outcome.key, "task": self.task, "status": outcome.status}
        if outcome.status == "ok":
            entry["record"] = outcome.record
        else:
            entry |= {"reason": outcome.reason, "detail": outcome.detail, "reply": outcome.reply}
        entry["usage"] = [outcome.prompt_tokens, outcome.completion_tokens]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One line per open/close: a killed run loses at most a torn last line (repaired on load).
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._add(entry)


# ---------------------------------------------------------------------------------------------
# one item


def process(
    item: WorkItem,
    task: str,
    api: ChatAPI | None,
    chat: ChatSettings,
    image_root: Path | None = None,
) -> Outcome:
    """Check the inputs, ask (if the item needs it), parse, assemble and validate one record.

    Raises :class:`RequestFailed` when the request failed after the client's own retries."""
    try:
        check_header(item.skeleton, task, image_root)
    except RecordError as exc:
        return Outcome(item.key, "skipped", reason=exc.reason, detail=str(exc))
    text, usage = None, {"prompt_tokens": 0, "completion_tokens": 0}
    if item.messages is not None:
        if api is None:
            raise ValueError(f"{item.key} needs an LLM but no API is configured")
        try:
            reply = api.chat(
                item.messages,
                temperature=chat.temperature,
                max_tokens=chat.max_tokens,
                seed=chat.seed,
            )
        except Exception as exc:  # what is left after the client's own retries
            if getattr(exc, "status_code", None) in _REQUEST_REJECTED:
                return Outcome(item.key, "rejected", reason="request_rejected", detail=str(exc))
            raise RequestFailed(type(exc).__name__) from exc
        text = reply.text
        usage = {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens}
    try:
        record = assemble_record(item.skeleton, item.build(text))
        validate_record(record, task)
    except RecordError as exc:
        return Outcome(
            item.key, "rejected", reason=exc.reason, detail=str(exc), reply=text, **usage
        )
    return Outcome(item.key, "ok", record=record, **usage)


# ---------------------------------------------------------------------------------------------
# a run


def _pending(items: Iterable[WorkItem], done: set[str], order: list[str]) -> Iterator[WorkItem]:
    for item in items:
        order.append(item.key)
        if item.key not in done:
            yield item


def _count_before(store: JsonlStore, stats: RunStats, done: set[str]) -> None:
    for key, entry in store.lines.items():
        if entry["status"] == "ok":
            stats.accepted_before += 1
            stats.kinds[_kind(key)] += 1
        elif key in done:
            stats.rejected_before += 1


def _kind(key: str) -> str:
    return key.split(":", 1)[1] if ":" in key else "records"


def _tally(stats: RunStats, outcome: Outcome) -> None:
    stats.prompt_tokens += outcome.prompt_tokens
    stats.completion_tokens += outcome.completion_tokens
    if outcome.status == "ok":
        stats.accepted_new += 1
        stats.kinds[_kind(outcome.key)] += 1
    elif outcome.status == "rejected":
        stats.rejected[outcome.reason] += 1
    else:
        stats.skipped[outcome.reason] += 1


def run(
    items: Iterable[WorkItem],
    task: str,
    store: JsonlStore,
    api: ChatAPI | None = None,
    *,
    chat: ChatSettings | None = None,
    concurrency: int = 4,
    image_root: Path | None = None,
    retry_rejected: bool = False,
    progress: Callable[[RunStats], None] | None = None,
) -> tuple[RunStats, list[str]]:
    """Process every item whose key the store does not hold yet; returns the stats and the keys
    of all items in order (for :func:`export`)."""
    chat = chat or ChatSettings()
    stats, order = RunStats(task), []
    done = store.done(retry_rejected)
    _count_before(store, stats, done)

    def work(item: WorkItem) -> Outcome:
        return process(item, task, api, chat, image_root)

    for _item, result in map_concurrent(work, _pending(items, done, order), concurrency):
        if isinstance(result, RequestFailed):
            stats.api_errors[result.kind] += 1
            continue
        if isinstance(result, BaseException):
            raise result  # a bug, not a failed request: fail loudly
        if result.status != "skipped":
            store.append(result)
        _tally(stats, result)
        if progress is not None:
            progress(stats)
    stats.prompt_tokens_all, stats.completion_tokens_all = store.tokens
    return stats, order


def export(store: JsonlStore, order: list[str], out: str | Path) -> int:
    """Write the accepted records as one JSON list (items' order first, then any other accepted
    keys of the store in file order); returns the number written."""
    rank = {key: i for i, key in enumerate(order)}
    keys = [k for k, e in store.lines.items() if e["status"] == "ok"]
    keys.sort(key=lambda k: rank.get(k, len(rank)))  # stable: unknown keys keep file order
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump([store.lines[k]["record"] for k in keys], f, ensure_ascii=False)
    tmp.replace(out)
    return len(keys)


# ---------------------------------------------------------------------------------------------
# summary


def _counts(counter: Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "none"


def cost(prompt_tokens: int, completion_tokens: int, prices: tuple[float, float]) -> float:
    """Estimated cost with ``prices`` = (per 1K prompt tokens, per 1K completion tokens)."""
    return prompt_tokens / 1000 * prices[0] + completion_tokens / 1000 * prices[1]


def format_summary(stats: RunStats, prices: tuple[float, float]) -> str:
    """A few lines for the end of a run: counts, rejections by reason, tokens and cost."""
    total = stats.accepted_new + stats.accepted_before
    now, all_ = (
        (stats.prompt_tokens, stats.completion_tokens),
        (stats.prompt_tokens_all, stats.completion_tokens_all),
    )
    lines = [
        f"{stats.task}: {total} records ({stats.accepted_new} new, "
        f"{stats.accepted_before} from earlier runs)",
        f"  rejected replies: {_counts(stats.rejected)}"
        + (f" (+{stats.rejected_before} from earlier runs)" if stats.rejected_before else ""),
        f"  skipped inputs: {_counts(stats.skipped)}",
    ]
    if set(stats.kinds) - {"records"}:
        lines.insert(1, f"  records by kind: {_counts(stats.kinds)}")
    if stats.api_errors:
        lines.append(
            f"  failed requests: {_counts(stats.api_errors)} (not recorded; the next run retries)"
        )
    if not any(all_):
        return "\n".join(lines)  # no LLM involved
    for label, (p, c) in (("this run", now), ("all runs", all_)):
        lines.append(
            f"  tokens {label}: {p:,} prompt + {c:,} completion, "
            f"estimated ${cost(p, c, prices):,.2f}"
        )
    return "\n".join(lines)
