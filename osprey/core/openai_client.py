"""A small client for OpenAI-compatible chat APIs (OpenAI, vLLM, llama.cpp's server, ...).

Used by the LLM judge of the evaluation harness and by the data-generation pipeline. The official
``openai`` package does the HTTP work, retries 429/5xx answers with exponential back-off and honours
``Retry-After``; this module adds a client-side rate limit, token accounting and a thread-pool map.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ChatReply:
    text: str
    prompt_tokens: int
    completion_tokens: int


class _RateLimiter:
    """At most ``per_minute`` calls per rolling minute, spaced evenly; thread-safe."""

    def __init__(self, per_minute: float | None):
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


class ChatAPI:
    """A chat-completions endpoint.

    Args:
        base_url: e.g. ``https://api.openai.com/v1`` or ``http://127.0.0.1:8080/v1``.
        model: the model name the server expects.
        api_key: the key; defaults to ``$OPENAI_API_KEY``, or a placeholder for local servers.
        timeout: seconds per request.
        max_retries: retries on connection errors, 408/409/429 and 5xx answers (with back-off).
        requests_per_minute: optional client-side rate limit shared by all threads.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 5,
        requests_per_minute: float | None = None,
    ):
        import openai  # deferred: only the judge and datagen need it

        self.model = model
        self.base_url = base_url
        self._client = openai.OpenAI(
            base_url=base_url,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "not-needed",
            timeout=timeout,
            max_retries=max_retries,
        )
        self._limiter = _RateLimiter(requests_per_minute)
        self._lock = threading.Lock()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.requests = 0

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        temperature: float = 0.2,
        max_tokens: int = 1024,
        seed: int | None = None,
        **extra: Any,
    ) -> ChatReply:
        """Send one chat request and return the first choice's text with its token counts."""
        self._limiter.wait()
        resp = self._client.chat.completions.create(
            model=self.model,
            messages=messages,
            temperature=temperature,
            max_tokens=max_tokens,
            **({"seed": seed} if seed is not None else {}),
            **extra,
        )
        text = resp.choices[0].message.content or ""
        usage = resp.usage
        reply = ChatReply(
            text=text,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        )
        with self._lock:
            self.requests += 1
            self.prompt_tokens += reply.prompt_tokens
            self.completion_tokens += reply.completion_tokens
        return reply


def map_concurrent(
    fn: Callable[[T], R], items: Iterable[T], concurrency: int = 4
) -> Iterator[tuple[T, R | BaseException]]:
    """Apply ``fn`` to ``items`` on ``concurrency`` threads; yield ``(item, result or exception)``
    in completion order. At most ``2 * concurrency`` items are in flight, so a long iterable is
    consumed lazily and an interrupted run loses at most that many results."""
    concurrency = max(1, int(concurrency))
    it = iter(items)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        pending: dict[Future, T] = {}

        def refill() -> None:
            while len(pending) < 2 * concurrency:
                try:
                    item = next(it)
                except StopIteration:
                    return
                pending[pool.submit(fn, item)] = item

        refill()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                item = pending.pop(fut)
                exc = fut.exception()
                yield item, (exc if exc is not None else fut.result())
            refill()
