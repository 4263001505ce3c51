"""The inference API: set the image once, ask many questions about its regions.

    >>> from osprey import Osprey
    >>> osp = Osprey.from_pretrained("osprey-7b")          # or Osprey.tiny() offline
    >>> osp.describe(image, [mask], task="short")           # one answer per region
    >>> osp.ask(image, [m1, m2], "What is region1 holding?").text

Image features (ConvNeXt stage maps and projected image tokens) are computed once per image and
kept in a bounded LRU cache keyed by the image's content, so every further region or question on
the same image costs only the mask extractor and the LLM. Device work is serialised by one lock:
one instance can serve many threads (the app's users).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from osprey import conversation as conv
from osprey.decode import TOP_K, StaticDecoder, free_memory, token_chooser
from osprey.model.osprey import ImageFeatures, OspreyModel
from osprey.prefix_cache import PrefixCache, mask_digest, signature
from osprey.processor import RegionError, prepare_masks, preprocess_image
from osprey.shared_prefix import SharedPrefix, decode_rows, row_bytes
from sam_bridge.cache import LRUCache
from sam_bridge.images import ImageLike, image_key, to_rgb

# Room kept for the answer when old chat turns are dropped to fit the context.
ANSWER_RESERVE = 128
# describe(): rows per batched generate when ``batch_size="auto"`` are limited by this share of
# the free device memory (each row's own KV, embeddings and attention scores), and this cap.
BATCH_MEMORY_SHARE = 0.5
MAX_BATCH_ROWS = 64


# ---------------------------------------------------------------------------------------------
# devices


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"``: CUDA, else MPS, else CPU."""
    if device not in (None, "auto"):
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


_DTYPES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
}


def resolve_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """``None``/``"auto"``: bf16 on CUDA (fp16 where bf16 is unsupported), fp16 on MPS, fp32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in (None, "auto"):
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}")
        return _DTYPES[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


# ---------------------------------------------------------------------------------------------
# results


@dataclass
class Answer:
    text: str  # post-processed
    raw: str  # decoded new tokens, special tokens skipped
    prompt_tokens: int
    new_tokens: int
    dropped_turns: int = 0  # oldest chat turns left out to fit the context


@dataclass
class Generation:
    """Sampling settings. Greedy by default (deterministic); the paper used T=0.2, top_p=0.6."""

    max_new_tokens: int = 512
    do_sample: bool = False
    temperature: float = 0.2
    top_p: float = 0.6
    seed: int | None = None

    @classmethod
    def paper(cls, seed: int = 0, max_new_tokens: int = 1024) -> Generation:
        return cls(
            max_new_tokens=max_new_tokens, do_sample=True, temperature=0.2, top_p=0.6, seed=seed
        )


class _StopOnEvent:
    """transformers StoppingCriteria protocol: stop when the event is set (the app's stop button)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs) -> torch.Tensor:
        return torch.full(
            (input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device
        )


# ---------------------------------------------------------------------------------------------
# the pipeline


class Osprey:
    """Region understanding on images: describe regions, answer questions, chat."""

    def __init__(
        self,
        model: OspreyModel,
        tokenizer,
        *,
        name: str = "",
        cache_size: int = 8,
        kv_cache_size: int = 4,
        batch_size: int | str = "auto",
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.features: LRUCache[ImageFeatures] = LRUCache(
            max(1, cache_size)
        )  # image key -> features
        self._features_lock = threading.Lock()
        self.prefix = PrefixCache(kv_cache_size)  # 0 disables prefix reuse (the plain path)
        self.batch_size = batch_size  # regions per batched generate in describe(), or "auto"
        self.last_batch_rows = 0  # rows per batch of the last batched describe (stats)
        self.decoder: StaticDecoder | None = None  # see enable_static_decoding()
        self.lock = threading.RLock()
        self.vision_calls = 0  # number of vision-tower passes (cache misses), for tests and stats

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path = "osprey-7b",
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        checkpoints_dir: str | Path | None = None,
        clip_path: str | Path | None = None,
        download: bool = True,
        cache_size: int = 8,
        attn_implementation: str = "sdpa",
        quantize: str | None = None,
        compile: bool = False,
    ) -> Osprey:
        """Load a registry model (downloaded into ``checkpoints_dir`` on first use) or a checkpoint
        directory in either format. ``tiny-random`` builds the tiny model in-process.
        ``quantize``: ``"8bit"`` or ``"4bit"`` LLM weights (bitsandbytes) for small GPUs.
        ``compile``: decode over a static KV cache with a compiled step (see
        :meth:`enable_static_decoding`; compiled at load time)."""
        from osprey import hub
        from osprey.checkpoint import checkpoint_kind, load_osprey

        if compile and quantize:
            raise ValueError("compile (static decoding) does not combine with quantize")
        if str(name_or_path) == "tiny-random":
            osp = cls.tiny(device=device, dtype=dtype, cache_size=cache_size, quantize=quantize)
            if compile:
                osp.enable_static_decoding()
            return osp
        dev = resolve_device(device)
        # A 7B model in fp32 needs 28 GB: on the CPU, "auto" means bf16 (the tiny model keeps fp32).
        dt = (
            torch.bfloat16
            if dev.type == "cpu" and dtype in (None, "auto")
            else resolve_dtype(dev, dtype)
        )
        ckpt_dir = Path(checkpoints_dir) if checkpoints_dir else hub.DEFAULT_CHECKPOINTS
        path = hub.resolve_model_dir(name_or_path, ckpt_dir, download=download)
        if clip_path is None and checkpoint_kind(path) == "original" and not _embeds_tower(path):
            clip_path = hub.find_clip(ckpt_dir, download=download)
        load_device = "cpu" if quantize else dev  # quantized layers move to the device one by one
        model, tokenizer = load_osprey(
            path,
            device=load_device,
            dtype=dt,
            clip_path=clip_path,
            attn_implementation=attn_implementation,
        )
        _place(model, dev, dt, quantize)
        osp = cls(model, tokenizer, name=str(name_or_path), cache_size=cache_size)
        if compile:
            osp.enable_static_decoding()
        return osp

    @classmethod
    def tiny(
        cls,
        seed: int = 0,
        *,
        device=None,
        dtype=None,
        cache_size: int = 8,
        quantize: str | None = None,
    ) -> Osprey:
        """The tiny random-weight model (answers are meaningless), CPU fp32 unless told otherwise."""
        from osprey.tiny import build_tiny

        model, tokenizer = build_tiny(seed)
        dev = torch.device(device) if device not in (None, "auto") else torch.device("cpu")
        _place(model, dev, resolve_dtype(dev, dtype) if dtype else torch.float32, quantize)
        return cls(model, tokenizer, name="tiny-random", cache_size=cache_size)

    def enable_static_decoding(
        self, *, compile: bool = True, warmup: bool = True, **compile_kwargs
    ) -> None:
        """Decode single answers over a static KV cache (``model_max_length`` positions, allocated
        once: 1 GiB for the 7B model in bf16) with a ``torch.compile``d one-token step, a CUDA
        graph on GPUs. Tokens are the same as the plain path's under greedy decoding and seeded
        sampling (up to float rounding). ``warmup`` compiles now rather than on the first
        question. Batched describe keeps the plain decoding. Not for ZeroGPU Spaces (the GPU is
        not held between requests) nor bitsandbytes-quantized models."""
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

    @property
    def untrained(self) -> bool:
        return self.model.config.untrained

    @property
    def max_length(self) -> int:
        return self.model.config.model_max_length

    # -- image side --------------------------------------------------------------------------

    def encode_image(self, image: ImageLike) -> tuple[np.ndarray, ImageFeatures]:
        """RGB array and its features, from the cache when this image was seen before."""
        rgb, _, feats = self._image(image)
        return rgb, feats

    def _image(self, image: ImageLike) -> tuple[np.ndarray, str, ImageFeatures]:
        rgb = to_rgb(image)
        key = image_key(rgb)
        with self._features_lock:
            feats = self.features.get(key)
        if feats is None:
            pixels = preprocess_image(rgb, self.model.config.vision.image_size)[None]
            with self.lock, torch.inference_mode():
                feats = self.model.encode_images(pixels)[0]
                self.vision_calls += 1
            with self._features_lock:
                self.features.put(key, feats)
        return rgb, key, feats

    # -- prompts -----------------------------------------------------------------------------

    def _encode_turns(self, turns: Sequence[conv.Turn], n_masks: int, limit: int) -> list[int]:
        cfg = self.model.config
        enc = conv.encode(
            self.tokenizer,
            turns,
            num_image_tokens=self.model.num_image_tokens,
            mask_token_id=cfg.mask_token_id,
            pos_token_id=cfg.pos_token_id,
            template=cfg.template,
            max_length=limit,
        )
        if enc.num_regions != n_masks:
            raise RegionError(
                f"the prompt refers to {enc.num_regions} region(s) but {n_masks} mask(s) were given"
            )
        return enc.input_ids

    def _fit_chat(
        self, history: Sequence[tuple[str, str]], question: str, n_masks: int
    ) -> tuple[list[int], int]:
        """Token ids of the chat, dropping the oldest turns until it fits the context."""
        history = list(history)
        for dropped in range(len(history) + 1):
            turns = conv.chat_turns(history[dropped:], question, n_masks)
            try:
                return self._encode_turns(turns, n_masks, self.max_length - ANSWER_RESERVE), dropped
            except conv.ContextLengthError:
                if dropped == len(history):
                    raise
        raise AssertionError("unreachable")

    # -- generation --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _generating(self, gen: Generation) -> Iterator[None]:
        """Device work of one request: the model's lock, no autograd, and the seed (if any) applied
        to a forked RNG so that other requests' randomness is untouched."""
        with (
            self.lock,
            torch.inference_mode(),
            torch.random.fork_rng(devices=_rng_devices(self.model.device)),
        ):
            if gen.seed is not None:
                torch.manual_seed(gen.seed)
            yield

    def _generation_config(self, gen: Generation, budget: int):
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

    def _budget(self, gen: Generation, prompt_len: int) -> int:
        budget = min(gen.max_new_tokens, self.max_length - prompt_len)
        if budget <= 0:
            raise conv.ContextLengthError(prompt_len + 1, self.max_length)
        return budget

    def _signature(self, ids: list[int], key: str, masks: torch.Tensor) -> list:
        cfg = self.model.config
        return signature(
            ids, key, [mask_digest(m) for m in masks], cfg.mask_token_id, cfg.pos_token_id
        )

    def _generate_ids(
        self,
        key: str,
        feats: ImageFeatures,
        masks: torch.Tensor,
        ids: list[int],
        gen: Generation,
        streamer=None,
        stop: threading.Event | None = None,
    ) -> list[int]:
        """Generate after ``ids``, prefilling only what the prefix cache does not hold already."""
        from transformers import DynamicCache, StoppingCriteriaList

        model = self.model
        budget = self._budget(gen, len(ids))
        sig = self._signature(ids, key, masks)
        input_ids = torch.tensor([ids], device=model.device)
        with self._generating(gen):
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
                    generation_config=self._generation_config(gen, budget),
                    streamer=streamer,
                    stopping_criteria=criteria,
                )
                new = out[0].tolist()
            self.prefix.put(key, sig + new[:-1], cache)  # the last token was never fed back
        return new

    def _decode_static(
        self,
        cache,
        embeds: torch.Tensor,
        budget: int,
        gen: Generation,
        streamer=None,
        stop: threading.Event | None = None,
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

    def _generate_batch(
        self, key: str, feats: ImageFeatures, masks: torch.Tensor, ids: list[int], gen: Generation
    ) -> list[list[int]]:
        """One prompt, many regions: the prompt's text is shared, each row gets its own region.
        The prefix before the first region is prefilled once (or reused from the prefix cache) and
        kept once: the rows attend to it through shared-prefix attention
        (``osprey/shared_prefix.py``), their own caches hold only the region's tokens and the
        answer. Returns the new ids of each region."""
        from transformers import DynamicCache

        model, cfg = self.model, self.model.config
        first = ids.index(cfg.mask_token_id)
        budget = self._budget(gen, len(ids))
        prefix_sig = signature(ids[:first], key, [], cfg.mask_token_id, cfg.pos_token_id)
        choose = token_chooser(gen.do_sample, gen.temperature, gen.top_p)
        results: list[list[int]] = []
        with self._generating(gen):
            base, reused = self.prefix.take(key, [*prefix_sig, None], limit=first)
            base = base if base is not None else DynamicCache(config=model.llm.config)
            prefix_ids = torch.tensor([ids[:first]], device=model.device)
            if reused < first:
                embeds = model.prepare_inputs(prefix_ids, [feats], [masks[:0]])
                model.llm(inputs_embeds=embeds[:, reused:], cache=base, use_cache=True)
            self.prefix.reused_tokens += reused
            self.prefix.prefilled_tokens += first - reused
            shared = SharedPrefix.from_cache(base)
            elem = model.llm.get_input_embeddings().weight.element_size()
            row = row_bytes(model.llm.config, elem, first, len(ids) - first, budget)
            step = self._rows_per_batch(row)
            self.last_batch_rows = min(step, masks.shape[0])
            for start in range(0, masks.shape[0], step):
                chunk = masks[start : start + step]
                rows = chunk.shape[0]
                input_ids = torch.tensor([ids] * rows, device=model.device)
                embeds = model.prepare_inputs(input_ids, [feats] * rows, [m[None] for m in chunk])
                results += decode_rows(
                    model.llm, shared, embeds[:, first:], budget, choose,
                    self.tokenizer.eos_token_id,
                )  # fmt: skip
                self.prefix.prefilled_tokens += rows * (len(ids) - first)
            self.prefix.put(key, prefix_sig, base)
        return results

    def _rows_per_batch(self, row: int) -> int:
        """Regions decoded together: ``batch_size``, or with ``"auto"`` as many rows of ``row``
        bytes as ``BATCH_MEMORY_SHARE`` of the free memory holds (at most ``MAX_BATCH_ROWS``)."""
        if self.batch_size != "auto":
            return max(1, int(self.batch_size))
        free = free_memory(self.model.device)
        return max(1, min(MAX_BATCH_ROWS, int(BATCH_MEMORY_SHARE * free // row)))

    def _decode(self, new_ids: list[int]) -> str:
        return self.tokenizer.decode(new_ids, skip_special_tokens=True).strip()

    def generate(
        self,
        image: ImageLike,
        masks: Sequence[np.ndarray] | np.ndarray | None,
        prompt: str | Sequence[conv.Turn],
        gen: Generation | None = None,
        *,
        postprocess: str = "reference",
        streamer=None,
        stop: threading.Event | None = None,
    ) -> Answer:
        """Answer the open last turn of ``prompt`` (a first user message, or a list of Turns).

        ``masks`` bind in order to the ``<mask><pos>`` pairs of the prompt: a count mismatch, a
        mask of another shape than the image, or an empty mask raises RegionError.
        """
        gen = gen or Generation()
        rgb, key, feats = self._image(image)
        region_masks = prepare_masks(masks, rgb.shape[0], rgb.shape[1])
        turns = [conv.Turn(prompt)] if isinstance(prompt, str) else list(prompt)
        ids = self._encode_turns(turns, region_masks.shape[0], self.max_length - 1)
        new = self._generate_ids(key, feats, region_masks, ids, gen, streamer, stop)
        raw = self._decode(new)
        return Answer(conv.postprocess_answer(raw, postprocess), raw, len(ids), len(new))

    def describe(
        self,
        image: ImageLike,
        masks: Sequence[np.ndarray] | np.ndarray,
        task: str = "short",
        gen: Generation | None = None,
        *,
        batched: bool = True,
    ) -> list[str]:
        """One answer per region for a one-region task (``category``, ``short``, ``detailed``, ...),
        with the original's prompts and post-processing. Regions are decoded together in batches
        over a shared, once-computed prompt prefix (``batched=False``: one region at a time)."""
        gen = gen or Generation()
        message = conv.task_message(task)
        mode = "demo" if task in ("short", "detailed") else "reference"
        rgb, key, feats = self._image(image)
        region_masks = prepare_masks(masks, rgb.shape[0], rgb.shape[1])
        if region_masks.shape[0] == 0:
            return []
        ids = self._encode_turns([conv.Turn(message)], 1, self.max_length - 1)
        if batched and region_masks.shape[0] > 1:
            outs = self._generate_batch(key, feats, region_masks, ids, gen)
        else:
            outs = [self._generate_ids(key, feats, m[None], ids, gen) for m in region_masks]
        return [conv.postprocess_answer(self._decode(new), mode) for new in outs]

    def ask(
        self,
        image: ImageLike,
        masks: Sequence[np.ndarray] | np.ndarray | None,
        question: str,
        history: Sequence[tuple[str, str]] = (),
        gen: Generation | None = None,
        *,
        streamer=None,
        stop: threading.Event | None = None,
    ) -> Answer:
        """A free question about the regions (``region1``, ``region2``, ... in the order of
        ``masks``) or, without masks, about the whole image; ``history`` holds earlier
        (question, answer) pairs. Old turns that no longer fit the context are dropped (counted in
        ``Answer.dropped_turns``)."""
        gen = gen or Generation()
        rgb, key, feats = self._image(image)
        region_masks = prepare_masks(masks, rgb.shape[0], rgb.shape[1])
        ids, dropped = self._fit_chat(history, question, region_masks.shape[0])
        new = self._generate_ids(key, feats, region_masks, ids, gen, streamer, stop)
        raw = self._decode(new)
        return Answer(conv.postprocess_answer(raw, "chat"), raw, len(ids), len(new), dropped)

    def stream(
        self,
        fn: Callable[..., Answer],
        *args,
        on_answer: Callable[[Answer], None] | None = None,
        **kwargs,
    ) -> Iterator[str]:
        """Run ``fn`` (``self.ask`` or ``self.generate``) in a thread and yield the decoded text as
        it grows; the last value is the post-processed answer, whose :class:`Answer` goes to
        ``on_answer`` (e.g. to report dropped chat turns). Exceptions are re-raised here."""
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600
        )
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
        for piece in streamer:
            text += piece
            yield text
        thread.join()
        if "error" in result:
            raise result["error"]  # type: ignore[misc]
        if on_answer is not None:
            on_answer(result["answer"])  # type: ignore[arg-type]
        yield result["answer"].text  # type: ignore[union-attr]

    # -- parity ------------------------------------------------------------------------------

    def logits(
        self, image: ImageLike, masks: Sequence[np.ndarray] | np.ndarray | None, prompt: str
    ) -> torch.Tensor:
        """Logits (T, vocab) in fp32 for every position of the spliced sequence of a fully
        rendered prompt (system sentence and roles included, e.g. from ``conversation.render``),
        with ``<image>`` expanded to the image tokens. This is the quantity to compare with the
        original implementation: same image, masks and prompt string must give the same logits."""
        rgb, feats = self.encode_image(image)
        region_masks = prepare_masks(masks, rgb.shape[0], rgb.shape[1])
        ids, _ = conv.tokenize_prompt(self.tokenizer, prompt, self.model.num_image_tokens)
        input_ids = torch.tensor([ids], device=self.model.device)
        with self.lock, torch.inference_mode():
            out = self.model(input_ids, features=[feats], masks=[region_masks])
        return out.logits[0].float()


def _place(
    model: OspreyModel, device: torch.device, dtype: torch.dtype, quantize: str | None
) -> None:
    from osprey.checkpoint import place
    from osprey.model.llm import reset_rotary

    if not quantize:
        place(model, device, dtype)
        return
    from osprey.quantize import quantize_llm

    model.to(dtype=dtype)
    quantize_llm(model.llm, quantize, device, compute_dtype=dtype)
    model.to(device)  # the rest; quantized weights are already there
    model.mask_extractor.float()
    reset_rotary(model.llm, device)


def _rng_devices(device: torch.device) -> list:
    return [device] if device.type == "cuda" else []


def _embeds_tower(path: Path) -> bool:
    """Whether a released checkpoint directory carries the CLIP tower (read from its index)."""
    import json

    for index in ("pytorch_model.bin.index.json", "model.safetensors.index.json"):
        if (path / index).is_file():
            keys = json.loads((path / index).read_text())["weight_map"]
            return any(k.startswith("model.vision_tower.vision_tower.visual.trunk.") for k in keys)
    return True  # single-file checkpoints: the loader says so clearly if the tower is missing
