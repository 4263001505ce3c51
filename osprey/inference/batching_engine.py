"""Continuous batching for Osprey: answers of every session decode together.

The engine is transformers' own continuous-batching manager (paged KV cache, requests joining and
leaving the running batch at every step, prefix caching by content-hashed blocks, streaming,
cancellation). It takes token ids only, while Osprey's prompts hold embeddings spliced from image
and region features. The bridge is a table of *virtual tokens*: ids at and above the vocabulary
size that the LLM's embedding layer (:class:`VirtualEmbedding`) reads from a feature table
instead of its weight matrix. An image's 1024 tokens get 1024 virtual ids, a region's ``<mask>``
and ``<pos>`` two more, so a spliced prompt becomes a plain list of ids: the same image gives
the same ids, and requests on it (other questions, other sessions) share the KV blocks of its
prefix. A virtual id is never given to other content: when a table row is reused, the ids move
on by a generation (``id = vocab + generation * rows + row``), so a cached block can never meet
the wrong features.

Admission control is in front of the engine: at most ``max_active`` requests run, the next
``max_waiting`` wait in line (their position is reported), and beyond that a request is refused
with :class:`Busy`.

Device safety: the engine's loop runs the LLM on its own thread. The vision tower, projector and
mask extractor run on request threads meanwhile: they share no state with the LLM, and table rows
are written before a request's ids are submitted (on CUDA the writing stream is synchronised
first, as the engine reads on its own stream). Anything else that runs the LLM directly (logits,
sampled answers, scoring) pauses the engine loop first (:meth:`BatchEngine.paused`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from osprey.core import constants as C
from osprey.core.errors import OspreyError
from osprey.core.priority import ENGINE_NICE, lower_priority

# Default capacity: requests decoding at once, and requests waiting for a place.
MAX_ACTIVE = 32
MAX_WAITING = 64
REGIONS_PER_REQUEST = 64  # table rows held for regions: 2 per region, this many regions per request


class Busy(OspreyError, RuntimeError):
    """The engine's queue is full: the user should try again shortly."""


# ---------------------------------------------------------------------------------------------
# virtual tokens


class VirtualEmbedding(nn.Embedding):
    """The LLM's token embedding (the same weight parameter, so state dicts are unchanged) that
    reads ids >= ``num_embeddings`` from ``table`` (row ``(id - vocab) % rows``). Branch-free, so
    it can be captured in a CUDA graph."""

    def __init__(self, base: nn.Embedding, rows: int):
        w = base.weight
        super().__init__(w.shape[0], w.shape[1], _weight=w, device=w.device, dtype=w.dtype)
        self.padding_idx = base.padding_idx
        self.register_buffer("table", torch.zeros(rows, w.shape[1], dtype=w.dtype, device=w.device),
                             persistent=False)  # fmt: skip

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        vocab = self.num_embeddings
        virtual = ids >= vocab
        rows = self.table[(ids - vocab).clamp(min=0) % self.table.shape[0]]
        return torch.where(virtual[..., None], rows, super().forward(ids.clamp(max=vocab - 1)))


@dataclass
class _Slot:
    row: int  # first table row
    generation: int = 0
    users: int = 0


class FeatureTable:
    """Table rows for image tokens (blocks of ``image_tokens`` rows) and region tokens (pairs of
    rows), keyed by content: the image key, and (image key, mask digest). Rows in use are leased;
    idle ones stay (their ids still match cached KV blocks) until their place is needed."""

    def __init__(
        self, embedding: VirtualEmbedding, image_slots: int, region_slots: int, image_tokens: int
    ):
        self.embedding = embedding
        self.vocab = embedding.num_embeddings
        self.rows = embedding.table.shape[0]
        self.image_tokens = image_tokens
        self._images = _SlotPool(image_slots, image_tokens, 0)
        self._regions = _SlotPool(region_slots, 2, image_slots * image_tokens)
        self._lock = threading.Lock()

    def lease(
        self,
        image_key: str,
        image_rows: torch.Tensor,
        regions: Sequence[tuple[str, torch.Tensor, torch.Tensor]],
    ) -> Lease:
        """Rows for one request: the image's ``image_rows`` (N, D) and each region's (digest,
        mask row (D,), pos row (D,)); returns the lease with the virtual ids. Raises
        :class:`Busy` when every row is in use."""
        with self._lock:
            keys = [("image", image_key)] + [("region", image_key, d) for d, _, _ in regions]
            slots, fresh = [], []
            try:
                for key in keys:
                    pool = self._images if key[0] == "image" else self._regions
                    slot, new = pool.acquire(key)
                    slots.append((pool, key, slot))
                    fresh.append(new)
            except Busy:
                for pool, key, _ in slots:
                    pool.release(key)
                raise
        table = self.embedding.table
        with torch.no_grad():
            if fresh[0]:
                table[slots[0][2].row : slots[0][2].row + self.image_tokens] = image_rows.to(
                    table.dtype
                )
            for (_, _, slot), new, (_, mask_row, pos_row) in zip(slots[1:], fresh[1:], regions):
                if new:
                    table[slot.row] = mask_row.to(table.dtype)
                    table[slot.row + 1] = pos_row.to(table.dtype)
        if table.is_cuda:
            torch.cuda.current_stream(table.device).synchronize()  # the engine reads on its stream
        ids = [self._id(slot, 0) for _, _, slot in slots]
        image_ids = [ids[0] + i for i in range(self.image_tokens)]
        return Lease(self, [(p, k) for p, k, _ in slots], image_ids, [(i, i + 1) for i in ids[1:]])

    def _images_count(self) -> int:
        return self._images.count

    def _id(self, slot: _Slot, offset: int) -> int:
        return self.vocab + slot.generation * self.rows + slot.row + offset

    def release(self, held: Sequence[tuple[_SlotPool, tuple]]) -> None:
        with self._lock:
            for pool, key in held:
                pool.release(key)


class _SlotPool:
    """Fixed-size slots of ``width`` rows from ``first_row``; idle ones evicted least recently
    used first, their generation moving on so their old ids are never reused."""

    def __init__(self, count: int, width: int, first_row: int):
        self.count = count
        self._free = [_Slot(first_row + i * width) for i in range(count)]
        self._used: dict[tuple, _Slot] = {}
        self._idle: OrderedDict[tuple, _Slot] = OrderedDict()

    def acquire(self, key: tuple) -> tuple[_Slot, bool]:
        if key in self._used:
            slot = self._used[key]
            slot.users += 1
            return slot, False
        if key in self._idle:
            slot = self._idle.pop(key)
            fresh = False
        elif self._free:
            slot, fresh = self._free.pop(), True
        elif self._idle:
            _, slot = self._idle.popitem(last=False)
            slot.generation += 1
            fresh = True
        else:
            raise Busy("every feature slot is in use")
        slot.users = 1
        self._used[key] = slot
        return slot, fresh

    def release(self, key: tuple) -> None:
        slot = self._used[key]
        slot.users -= 1
        if slot.users == 0:
            del self._used[key]
            self._idle[key] = slot


@dataclass
class Lease:
    table: FeatureTable
    held: list
    image_ids: list[int]
    region_ids: list[tuple[int, int]]
    released: bool = False

    def virtual_ids(self, ids: Sequence[int], mask_id: int, pos_id: int) -> list[int]:
        """A prompt's ids with the image placeholder and ``<mask>``/``<pos>`` made virtual."""
        out, image, region = [], iter(self.image_ids), iter(self.region_ids)
        pos_next = None
        for tok in ids:
            if tok == C.IMAGE_TOKEN_INDEX:
                out.append(next(image))
            elif tok == mask_id:
                mask_virtual, pos_next = next(region)
                out.append(mask_virtual)
            elif tok == pos_id:
                out.append(pos_next)
            else:
                out.append(tok)
        return out

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.table.release(self.held)


# ---------------------------------------------------------------------------------------------
# requests

_CANCELLED = object()  # put on a request's queue by cancel(): the engine sends nothing more


@dataclass
class Request:
    """One answer being generated: iterate it for lists of new token ids (a chunk per step)."""

    engine: BatchEngine
    id: str
    lease: Lease
    outputs: queue.Queue = field(default_factory=queue.Queue)
    tokens: list[int] = field(default_factory=list)
    done: bool = False

    def __iter__(self) -> Iterator[list[int]]:
        try:
            while not self.done:
                out = self.outputs.get()
                if out is _CANCELLED:
                    return
                if out.error:
                    raise RuntimeError(f"generation failed: {out.error}")
                new = out.generated_tokens[len(self.tokens) :]
                self.tokens += new
                self.done = out.is_finished()
                if new:
                    yield new
        finally:
            if not self.done:  # abandoned (or cancelled): the engine must not go on for nobody
                self.engine.manager.cancel_request(self.id)
                self.done = True
            self.engine._finish(self)

    def cancel(self) -> None:
        """End this request only (Stop, or a client that went away): its iteration ends."""
        if not self.done:
            self.outputs.put(_CANCELLED)


class Admission:
    """First come, first served: rows run while at most ``max_active`` are running (a group
    larger than that runs alone), ``max_waiting`` groups wait in line, and beyond that a request
    is refused with :class:`Busy`."""

    def __init__(self, max_active: int, max_waiting: int):
        self.max_active, self.max_waiting = max_active, max_waiting
        self.active = 0
        self._line: list[object] = []
        self._cv = threading.Condition()

    def enter(self, rows: int = 1) -> Iterator[int]:
        """Wait for a place for ``rows`` requests, yielding the position in line (1 = next) while
        waiting; once it returns the rows hold their places until :meth:`leave`."""
        ticket = object()
        with self._cv:
            if len(self._line) >= self.max_waiting:
                raise Busy(
                    "The server is busy answering other people; please try again in a minute."
                )
            self._line.append(ticket)
        try:
            while True:
                with self._cv:
                    first = self._line[0] is ticket
                    if first and (self.active == 0 or self.active + rows <= self.max_active):
                        self._line.remove(ticket)
                        self.active += rows
                        self._cv.notify_all()
                        return
                    position = self._line.index(ticket) + 1
                yield position
                with self._cv:
                    self._cv.wait(timeout=0.5)
        finally:
            with self._cv:
                if ticket in self._line:  # abandoned while waiting
                    self._line.remove(ticket)
                    self._cv.notify_all()

    def wait(self, rows: int = 1) -> None:
        """:meth:`enter` without reporting the position."""
        for _ in self.enter(rows):
            pass

    def leave(self, rows: int = 1) -> None:
        with self._cv:
            self.active -= rows
            self._cv.notify_all()

    @property
    def waiting(self) -> int:
        with self._cv:
            return len(self._line)


# ---------------------------------------------------------------------------------------------
# the engine


def kv_bytes_per_token(config, elem: int) -> int:
    """Bytes of keys and values one token takes in every layer."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = config.num_key_value_heads or config.num_attention_heads
    return 2 * config.num_hidden_layers * kv_heads * head_dim * elem


def default_kv_budget(device: torch.device) -> int:
    """Bytes for the engine's KV cache: half the free GPU memory, or on the CPU a quarter of the
    available memory and at most 4 GiB."""
    from osprey.core.devices import free_memory

    free = free_memory(device)
    return int(free * 0.5) if device.type == "cuda" else int(min(free * 0.25, 4 * 2**30))


# Prompt tokens one engine step prefills at most (longer prompts are prefilled in chunks, each
# step also decoding the running answers): this bounds the step's attention mask, which the
# engine allocates for the largest step against the whole cache.
PREFILL_CHUNK = 512


def cache_blocks(
    config, elem: int, max_length: int, max_active: int, page_size: int, budget: int
) -> tuple[int, int]:
    """(KV cache blocks, tokens per step) for the engine: as many blocks as ``budget`` bytes hold
    (each block's keys and values, and its columns of the step's attention mask), but no more
    than ``max_active`` answers at the full context use, and at least 16."""
    batch_tokens = min(PREFILL_CHUNK, max_length)
    per_block = page_size * (kv_bytes_per_token(config, elem) + batch_tokens * elem)
    useful = max_active * -(-max_length // page_size)
    return max(16, min(useful, budget // per_block)), batch_tokens


_LIVE: weakref.WeakSet[BatchEngine] = weakref.WeakSet()
_HOOKED = False


def _close_live_engines() -> None:
    """Stop every running engine's loop. transformers starts that loop as a non-daemon thread,
    and the interpreter joins such threads before ``atexit`` runs: without this hook a process
    that never called :meth:`BatchEngine.close` (Ctrl-C on the app, a script, a test session)
    would wait for the loop forever instead of exiting."""
    for engine in list(_LIVE):
        engine.close()


def _track(engine: BatchEngine) -> None:
    """Remember a running engine; the first one registers the shutdown hook, which runs *before*
    non-daemon threads are joined (the hook concurrent.futures uses; plain atexit is too late)."""
    global _HOOKED
    if not _HOOKED:
        getattr(threading, "_register_atexit", lambda f: None)(_close_live_engines)
        _HOOKED = True
    _LIVE.add(engine)


class BatchEngine:
    """Continuous batching over one Osprey model (see the module docstring). Greedy decoding;
    each request has its own prompt, image, regions and ``max_new_tokens``."""

    def __init__(
        self, model, tokenizer, *, max_active: int = MAX_ACTIVE, max_waiting: int = MAX_WAITING,
        kv_budget: int | None = None, page_size: int = 128,
    ):  # fmt: skip
        from transformers import ContinuousBatchingConfig, GenerationConfig

        self.model, self.tokenizer = model, tokenizer
        llm = model.llm
        self._original_embedding = llm.get_input_embeddings()
        image_slots, region_slots = max_active + 8, max_active * REGIONS_PER_REQUEST
        n = model.num_image_tokens
        self.embedding = VirtualEmbedding(
            self._original_embedding, image_slots * n + 2 * region_slots
        )
        llm.set_input_embeddings(self.embedding)
        self.table = FeatureTable(self.embedding, image_slots, region_slots, n)
        self.admission = Admission(max_active, max_waiting)
        self.num_blocks, batch_tokens = cache_blocks(
            llm.config, self.embedding.weight.element_size(), model.config.model_max_length,
            max_active, page_size, kv_budget or default_kv_budget(model.device),
        )  # fmt: skip
        cb = ContinuousBatchingConfig(
            num_blocks=self.num_blocks, page_size=page_size, allow_block_sharing=True,
            max_batch_tokens=batch_tokens, max_requests_per_batch=max_active,
            use_cuda_graph=None if model.device.type == "cuda" else False,
        )  # fmt: skip
        gen = GenerationConfig(
            do_sample=False, max_new_tokens=C.DEFAULT_MAX_NEW_TOKENS,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
        self.manager = llm.init_continuous_batching(gen, cb)
        with torch.inference_mode():
            self.manager.start()  # its loop thread keeps the caller's inference mode
        if model.device.type == "cpu":
            # its loop (and the torch workers it starts) yields the cores to clicks
            lower_priority(getattr(self.manager, "_generation_thread", None), ENGINE_NICE)
        self._requests: dict[str, Request] = {}
        self._ids = itertools.count()
        self._running = True
        self._dispatcher = threading.Thread(
            target=self._dispatch, name="osprey-engine-outputs", daemon=True
        )
        self._dispatcher.start()
        _track(self)

    def submit(
        self, image_key: str, feats, masks: torch.Tensor, ids: list[int], max_new_tokens: int
    ) -> Request:
        """Queue one answer after the prompt ``ids`` (with image placeholders and ``<mask><pos>``
        pairs bound in order to ``masks`` (Q, H, W)). The caller holds an admission place."""
        from osprey.inference.prefix_cache import mask_digest

        cfg = self.model.config
        with torch.inference_mode():
            mask_tok, pos_tok = self.model.region_tokens(feats.levels, [masks])
        regions = [(mask_digest(m), mask_tok[i], pos_tok[i]) for i, m in enumerate(masks)]
        lease = self.table.lease(image_key, feats.tokens, regions)
        request = Request(self, f"osprey-{next(self._ids)}", lease)
        self._requests[request.id] = request
        self.manager.add_request(
            lease.virtual_ids(ids, cfg.mask_token_id, cfg.pos_token_id), request_id=request.id,
            max_new_tokens=max_new_tokens, streaming=True, eos_token_id=self.tokenizer.eos_token_id,
        )  # fmt: skip
        return request

    def answer(
        self, image_key: str, feats, masks: torch.Tensor, ids: list[int], max_new_tokens: int,
        streamer=None, stop: threading.Event | None = None,
    ) -> list[int]:  # fmt: skip
        """One answer (new token ids): wait for a place (reporting the position to
        ``streamer.waiting`` if it has one), join the running batch, stream the tokens to
        ``streamer`` (transformers' streamer protocol) until the end, ``max_new_tokens`` or
        ``stop``."""
        report = getattr(streamer, "waiting", None)
        for position in self.admission.enter():
            if report is not None:
                report(position)
        try:
            request = self.submit(image_key, feats, masks, ids, max_new_tokens)
        except BaseException:
            self.admission.leave()
            raise
        if streamer is not None:
            streamer.put(torch.empty(1, 0, dtype=torch.long))  # the (empty) prompt, as generate
        new: list[int] = []
        try:
            for chunk in request:
                new += chunk
                if streamer is not None:
                    streamer.put(torch.tensor(chunk))
                if stop is not None and stop.is_set():
                    request.cancel()
        finally:
            self.admission.leave()
            if streamer is not None:
                streamer.end()
        return new

    def answer_rows(
        self, image_key: str, feats, masks: torch.Tensor, ids: list[int], max_new_tokens: int
    ) -> list[list[int]]:
        """One answer per region of ``masks`` (each row binds its region to the prompt's one
        ``<mask><pos>``): one group of requests, admitted together, decoded in the same batch."""
        rows = [masks[i : i + 1] for i in range(len(masks))]  # (1, H, W) each, decoded when used
        return self.answer_many([(image_key, feats, m, ids, max_new_tokens) for m in rows])

    def answer_many(self, jobs: Sequence[tuple]) -> list[list[int]]:
        """Answers of several prompts, ``(image_key, feats, masks, ids, max_new_tokens)`` each
        (any images), admitted together as one group and decoded in the same batch."""
        rows = len(jobs)
        self.admission.wait(rows)
        requests: list[Request] = []
        try:
            requests = [self.submit(*job) for job in jobs]
            return [[t for chunk in request for t in chunk] for request in requests]
        except BaseException:
            for request in requests:  # none keeps running (or holding its lease) for nobody
                request.cancel()
                list(request)
            raise
        finally:
            self.admission.leave(rows)

    def _dispatch(self) -> None:
        """Route the engine's outputs to their requests (one reader: no re-queueing)."""
        while self._running:
            out = self.manager.get_result(timeout=0.1)
            if out is None:
                continue
            request = self._requests.get(out.request_id)
            if request is not None:
                request.outputs.put(out)

    def _finish(self, request: Request) -> None:
        if self._requests.pop(request.id, None) is not None:
            request.lease.release()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hold the engine's loop (its requests wait, keeping their cache) while the caller uses
        the LLM directly."""
        if not self.manager.is_running():
            yield
            return
        with self.manager.pause():
            yield

    def close(self) -> None:
        """Stop the loop and give the LLM its own embedding back (idempotent)."""
        _LIVE.discard(self)
        if not self._running:
            return
        self._running = False
        quiet = logging.getLogger("ContinuousBatchingLogger")  # "not initialized" if never used
        level, quiet.level = quiet.level, logging.ERROR
        try:
            self.manager.stop(block=True, timeout=30, hard_stop=True)
        finally:
            quiet.level = level
        self.model.llm.set_input_embeddings(self._original_embedding)
