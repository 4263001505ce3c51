"""Generation: spliced prompts in, tokens out.

A :class:`Generator` owns everything about decoding one model: the lock that serialises its device
work, the prefix cache (a prompt prefills only what follows the longest prefix already computed on
its image: a later question on an image prefills its own words, a chat's next turn its own turn),
streaming and stopping, the optional static-cache decoder (``osprey/inference/static_decode.py``), and batched
regions over one shared prompt prefix (``osprey/inference/shared_prefix_batch.py``). It knows nothing about images
or prompt text: the :class:`~osprey.inference.facade.Osprey` facade hands it token ids, the image's
features and the region masks.

Default generation settings live here (:class:`Generation`), nowhere else.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from osprey.core import constants as C
from osprey.core.devices import free_memory, rng_devices
from osprey.inference import prompt_format as conv
from osprey.inference.prefix_cache import PrefixCache, mask_digest, signature
from osprey.inference.shared_prefix_batch import SharedPrefix, decode_rows, row_bytes
from osprey.inference.static_decode import TOP_K, StaticDecoder, token_chooser
from osprey.model.osprey import ImageFeatures, OspreyModel

# describe(): rows per batched generate when ``batch_size="auto"`` are limited by this share of
# the free device memory (each row's own KV, embeddings and attention scores), and this cap.
BATCH_MEMORY_SHARE = 0.5
MAX_BATCH_ROWS = 64
# The prefix cache keeps at most this many bytes of keys and values (a 7B prompt prefix of 1.1k
# tokens takes 0.55 GiB in bf16, so about four of them).
DEFAULT_KV_CACHE_BYTES = 2 * 2**30


# ---------------------------------------------------------------------------------------------
# settings and results


@dataclass
class Generation:
    """Sampling settings. Greedy by default (deterministic); the paper used T=0.2, top_p=0.6."""

    max_new_tokens: int = C.DEFAULT_MAX_NEW_TOKENS
    do_sample: bool = False
    temperature: float = 0.2
    top_p: float = 0.6
    seed: int | None = None

    @classmethod
    def paper(cls, seed: int = 0, max_new_tokens: int = C.PAPER_MAX_NEW_TOKENS) -> Generation:
        return cls(
            max_new_tokens=max_new_tokens, do_sample=True, temperature=0.2, top_p=0.6, seed=seed
        )


@dataclass
class Answer:
    text: str  # post-processed
    raw: str  # decoded new tokens, special tokens skipped
    prompt_tokens: int
    new_tokens: int
    dropped_turns: int = 0  # oldest chat turns left out to fit the context


class _StopOnEvent:
    """transformers StoppingCriteria protocol: stop when the event is set (the app's stop button)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs) -> torch.Tensor:
        return torch.full(
            (input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device
        )


# ---------------------------------------------------------------------------------------------
# the generator


class Generator:
    """Decodes answers for one model; thread-safe (one lock around all device work).

    ``kv_cache_size``: prefix-cache entries (0 disables prefix reuse: the plain path);
    ``kv_cache_bytes``: and at most that many bytes of keys and values.
    ``batch_size``: regions per batched decode in :meth:`generate_rows`, or ``"auto"`` (as many as
    :data:`BATCH_MEMORY_SHARE` of the free memory holds, at most :data:`MAX_BATCH_ROWS`).
    """

    def __init__(
        self,
        model: OspreyModel,
        tokenizer,
        *,
        kv_cache_size: int = 4,
        kv_cache_bytes: int | None = DEFAULT_KV_CACHE_BYTES,
        batch_size: int | str = "auto",
        lock: threading.RLock | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.lock = lock or threading.RLock()
        self.prefix = PrefixCache(kv_cache_size, kv_cache_bytes)
        self.batch_size = batch_size
        self.last_batch_rows = 0  # rows per batch of the last batched decode (stats)
        self.decoder: StaticDecoder | None = None  # see enable_static_decoding()
        self.engine = None  # osprey.inference.batching_engine.BatchEngine, see enable_batching()

    @property
    def max_length(self) -> int:
        return self.model.config.model_max_length

    def enable_static_decoding(
        self, *, compile: bool = True, warmup: bool = True, **compile_kwargs
    ) -> None:
        """Decode single answers over a static KV cache with a compiled one-token step (see
        :class:`osprey.inference.static_decode.StaticDecoder`); ``warmup`` compiles now rather than on the first
        question. Not for bitsandbytes-quantized models."""
        if getattr(self.model.llm, "osprey_quantized", None):
            raise ValueError("static decoding does not support bitsandbytes-quantized weights")
        with self.lock:
            if self.decoder is not None:
                self.decoder.close()
            self.decoder = StaticDecoder(
                self.model.llm, self.max_length, compile=compile, **compile_kwargs
            )
            if warmup:
                self.decoder.warmup()

    def enable_batching(self, **engine_kwargs) -> None:
        """Decode greedy answers of every caller together (continuous batching, see
        ``osprey/inference/batching_engine.py``): requests join and leave one running batch at step boundaries.
        Sampled answers and the static decoder keep the per-request path (the engine pauses for
        them). ``engine_kwargs``: ``max_active``, ``max_waiting``, ``kv_budget``, ``page_size``."""
        from osprey.inference.batching_engine import BatchEngine

        with self.lock:
            self.disable_batching()
            self.engine = BatchEngine(self.model, self.tokenizer, **engine_kwargs)

    def disable_batching(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    def batching(self, gen: Generation) -> bool:
        """Whether ``gen`` goes through the batching engine (greedy answers, engine on, no static
        decoder)."""
        return self.engine is not None and not gen.do_sample and self.decoder is None

    @contextlib.contextmanager
    def context(self, seed: int | None = None) -> Iterator[None]:
        """Device work of one request on the LLM itself: the lock (and the batching engine
        paused, if any), no autograd, and the seed (if any) applied to a forked RNG so that other
        requests' randomness is untouched."""
        paused = self.engine.paused() if self.engine is not None else contextlib.nullcontext()
        with (
            self.lock,
            paused,
            torch.inference_mode(),
            torch.random.fork_rng(devices=rng_devices(self.model.device)),
        ):
            if seed is not None:
                torch.manual_seed(seed)
            yield

    def decode_text(self, new_ids: list[int]) -> str:
        return self.tokenizer.decode(new_ids, skip_special_tokens=True).strip()

    # -- one answer ----------------------------------------------------------------------------

    def generate(
        self,
        key: str,
        feats: ImageFeatures,
        masks: torch.Tensor,
        ids: list[int],
        gen: Generation,
        streamer=None,
        stop: threading.Event | None = None,
    ) -> list[int]:
        """New token ids after the prompt ``ids`` (image ``key`` with features ``feats``, region
        ``masks`` (Q, H, W) bound in order), prefilling only what the prefix cache lacks."""
        from transformers import DynamicCache, StoppingCriteriaList

        if self.batching(gen):
            budget = self.budget(gen, len(ids))
            return self.engine.answer(key, feats, masks, ids, budget, streamer, stop)
        model = self.model
        budget = self.budget(gen, len(ids))
        sig = self._signature(ids, key, masks)
        input_ids = torch.tensor([ids], device=model.device)
        with self.context(gen.seed):
            cache, reused = self.prefix.take(key, sig)
            cache = cache if cache is not None else DynamicCache(config=model.llm.config)
            embeds = model.prepare_inputs(input_ids, [feats], [masks])
            self.prefix.reused_tokens += reused
            self.prefix.prefilled_tokens += len(ids) - reused
            if self.decoder is not None:
                new = self._decode_static(cache, embeds[:, reused:], budget, gen, streamer, stop)
                if self.prefix.max_entries:
                    cache = self.decoder.export(len(ids) + len(new) - 1)
            else:
                criteria = StoppingCriteriaList([_StopOnEvent(stop)]) if stop is not None else None
                out = model.llm.generate(
                    inputs_embeds=embeds,
                    attention_mask=torch.ones_like(input_ids),
                    cache=cache,
                    generation_config=self._config(gen, budget),
                    streamer=streamer,
                    stopping_criteria=criteria,
                )
                new = out[0].tolist()
            self.prefix.put(key, sig + new[:-1], cache)  # the last token was never fed back
        return new

    def _decode_static(
        self, cache, embeds: torch.Tensor, budget: int, gen: Generation, streamer, stop
    ) -> list[int]:
        """Prefill ``embeds`` (1, T, D) after the ``DynamicCache`` ``cache``, then decode on the
        static decoder, choosing tokens exactly as ``generate`` does (same processors, same RNG
        draws)."""
        out = self.model.llm(inputs_embeds=embeds, cache=cache, use_cache=True, logits_to_keep=1)
        first = out.logits[:, -1]
        start = self.decoder.load(cache)
        choose = token_chooser(gen.do_sample, gen.temperature, gen.top_p)
        eos = self.tokenizer.eos_token_id

        def on_token(token: int) -> bool:
            if streamer is not None:
                streamer.put(torch.tensor([token]))
            return token == eos or (stop is not None and stop.is_set())

        if streamer is not None:
            streamer.put(torch.empty(1, 0, dtype=torch.long))  # the (empty) prompt, as generate
        try:
            return self.decoder.decode(first, start, budget, choose, on_token)
        finally:
            if streamer is not None:
                streamer.end()

    # -- many regions, one prompt ----------------------------------------------------------------

    def generate_rows(
        self, key: str, feats: ImageFeatures, masks: torch.Tensor, ids: list[int], gen: Generation
    ) -> list[list[int]]:
        """One prompt, many regions: each row is ``ids`` with its own region (``masks[i]``). The
        prefix before the first region is prefilled once (or reused from the prefix cache) and
        kept once: the rows attend to it through shared-prefix attention, their own caches hold
        only the region's tokens and the answer. Returns the new ids of each region."""
        if self.batching(gen):
            return self.engine.answer_rows(key, feats, masks, ids, self.budget(gen, len(ids)))
        model, cfg = self.model, self.model.config
        first = ids.index(cfg.mask_token_id)
        budget = self.budget(gen, len(ids))
        choose = token_chooser(gen.do_sample, gen.temperature, gen.top_p)
        results: list[list[int]] = []
        with self.context(gen.seed), cached_prefix(self, key, feats, ids[:first]) as shared:
            elem = model.llm.get_input_embeddings().weight.element_size()
            step = self.rows_per_batch(
                row_bytes(model.llm.config, elem, first, len(ids) - first, budget)
            )
            self.last_batch_rows = min(step, masks.shape[0])
            for start in range(0, masks.shape[0], step):
                chunk = masks[start : start + step]
                rows = chunk.shape[0]
                input_ids = torch.tensor([ids] * rows, device=model.device)
                singles = [chunk[i : i + 1] for i in range(rows)]  # (1, H, W) each, lazily
                embeds = model.prepare_inputs(input_ids, [feats] * rows, singles)
                results += decode_rows(
                    model.llm, shared, embeds[:, first:], budget, choose,
                    self.tokenizer.eos_token_id,
                )  # fmt: skip
                self.prefix.prefilled_tokens += rows * (len(ids) - first)
        return results

    def rows_per_batch(self, row: int) -> int:
        """Regions decoded together: ``batch_size``, or with ``"auto"`` as many rows of ``row``
        bytes as ``BATCH_MEMORY_SHARE`` of the free memory holds (at most ``MAX_BATCH_ROWS``)."""
        if self.batch_size != "auto":
            return max(1, int(self.batch_size))
        free = free_memory(self.model.device)
        return max(1, min(MAX_BATCH_ROWS, int(BATCH_MEMORY_SHARE * free // row)))

    # -- helpers -------------------------------------------------------------------------------

    def _config(self, gen: Generation, budget: int):
        from transformers import GenerationConfig

        return GenerationConfig(
            max_new_tokens=budget,
            do_sample=gen.do_sample,
            temperature=gen.temperature if gen.do_sample else None,
            top_p=gen.top_p if gen.do_sample else None,
            top_k=TOP_K if gen.do_sample else None,
            num_beams=1,
            eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
            bos_token_id=self.tokenizer.bos_token_id,
        )

    def budget(self, gen: Generation, prompt_len: int) -> int:
        """New tokens ``gen`` may add after a prompt of ``prompt_len`` tokens (ContextLengthError
        when none fits)."""
        budget = min(gen.max_new_tokens, self.max_length - prompt_len)
        if budget <= 0:
            raise conv.ContextLengthError(prompt_len + 1, self.max_length)
        return budget

    def _signature(self, ids: list[int], key: str, masks: torch.Tensor) -> list:
        cfg = self.model.config
        return signature(
            ids, key, [mask_digest(m) for m in masks], cfg.mask_token_id, cfg.pos_token_id
        )


# ---------------------------------------------------------------------------------------------
# one prompt prefix, shared by rows


@contextlib.contextmanager
def cached_prefix(
    generator: Generator, key: str, feats: ImageFeatures, ids: list[int]
) -> Iterator[SharedPrefix]:
    """The KV of the prompt prefix ``ids`` (no region placeholder in it) on image ``key``, taken
    from ``generator``'s prefix cache (prefilling only what it lacks) and stored back on exit, as
    one batch-1 :class:`SharedPrefix` for rows to attend to (describe batches, vocabulary
    scoring). Use under :meth:`Generator.context`."""
    from transformers import DynamicCache

    model, cfg, cache = generator.model, generator.model.config, generator.prefix
    sig = signature(ids, key, [], cfg.mask_token_id, cfg.pos_token_id)
    base, reused = cache.take(key, [*sig, None], limit=len(ids))
    base = base if base is not None else DynamicCache(config=model.llm.config)
    if reused < len(ids):
        prefix_ids = torch.tensor([ids], device=model.device)
        no_regions = torch.zeros(0, 1, 1, dtype=torch.bool)
        embeds = model.prepare_inputs(prefix_ids, [feats], [no_regions])
        model.llm(inputs_embeds=embeds[:, reused:], cache=base, use_cache=True)
    cache.reused_tokens += reused
    cache.prefilled_tokens += len(ids) - reused
    yield SharedPrefix.from_cache(base)
    cache.put(key, sig, base)


# ---------------------------------------------------------------------------------------------
# streaming


@dataclass(frozen=True)
class Waiting:
    """Streamed while a request waits for a place in the batching engine: its place in line."""

    position: int


def _streamer(tokenizer):
    """transformers' TextIteratorStreamer that can also carry :class:`Waiting` notes."""
    from transformers import TextIteratorStreamer

    class Streamer(TextIteratorStreamer):
        def waiting(self, position: int) -> None:
            self.text_queue.put(Waiting(position), timeout=self.timeout)

    return Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)


def stream(
    tokenizer,
    fn: Callable[..., Answer],
    *args,
    on_answer: Callable[[Answer], None] | None = None,
    report_waiting: bool = False,
    interval: float = 0.0,
    **kwargs,
) -> Iterator[str | Waiting]:
    """Run ``fn(*args, streamer=..., **kwargs)`` in a thread and yield the decoded text as it
    grows; the last value is the post-processed answer, whose :class:`Answer` goes to
    ``on_answer``. With ``report_waiting``, :class:`Waiting` notes come first while the request
    waits for a place in the batching engine. With ``interval`` > 0 the text is yielded at most
    once per ``interval`` seconds (the first words at once, then what arrived meanwhile in one
    piece): fewer, larger updates for a server streaming many answers. Exceptions are re-raised
    here."""
    streamer = _streamer(tokenizer)
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["answer"] = fn(*args, streamer=streamer, **kwargs)
        except BaseException as exc:  # surfaced in the consumer below
            result["error"] = exc
            streamer.end()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    text = ""
    for piece in _coalesced(streamer, interval):
        if isinstance(piece, Waiting):
            if report_waiting:
                yield piece
            continue
        text += piece
        yield text
    thread.join()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    if on_answer is not None:
        on_answer(result["answer"])  # type: ignore[arg-type]
    yield result["answer"].text  # type: ignore[union-attr]


def _coalesced(streamer, interval: float) -> Iterator[str | Waiting]:
    """The streamer's pieces, text joined so that at most one text piece comes per ``interval``
    seconds (none held back longer than that; :class:`Waiting` notes pass at once)."""
    if interval <= 0:
        yield from streamer
        return
    held, due = "", 0.0  # text not yet yielded; when the next text may go
    while True:
        wait = streamer.timeout if not held else max(0.0, due - time.monotonic())
        try:
            piece = streamer.text_queue.get(timeout=wait)
        except queue.Empty:
            if not held:
                raise
            piece = ""  # the interval is over: what was held goes now
        if piece is streamer.stop_signal:
            if held:
                yield held
            return
        if isinstance(piece, Waiting):
            yield piece
            continue
        held += piece
        if held and time.monotonic() >= due:
            yield held
            held, due = "", time.monotonic() + interval
