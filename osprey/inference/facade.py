"""The inference API: set the image once, ask many questions about its regions.

    >>> from osprey import Osprey
    >>> osp = Osprey.from_pretrained("osprey-7b")          # or Osprey.tiny() offline
    >>> image = osp.set_image("photo.jpg")                 # encoded once, cached by content
    >>> osp.describe(image, [mask], task="short")           # one answer per region
    >>> osp.ask(image, [m1, m2], "What is region1 holding?").text

:class:`Osprey` is a facade over three parts: loading (``osprey/inference/loading.py``), the image-feature
cache (``osprey/inference/image_features.py``) and generation (``osprey/inference/generator.py``); prompts come from
``osprey/inference/prompt_format.py``. One instance serves many threads (the app's users): device work is
serialised by the generator's lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from osprey.core.images import ImageHandle, ImageLike
from osprey.inference import prompt_format as conv
from osprey.inference import vocabularies as vocab
from osprey.inference.generator import Answer, Generation, Generator, Waiting, stream
from osprey.inference.image_features import FeatureCache
from osprey.inference.loading import check_quantize, load_pretrained, load_tiny
from osprey.inference.preprocess import Masks, RegionError, prepare_masks
from osprey.inference.topk_scoring import Classifier, class_probabilities, top_names
from osprey.model.osprey import OspreyModel

__all__ = ["Answer", "Generation", "Osprey", "task_prompt"]

# Room kept for the answer when old chat turns are dropped to fit the context.
ANSWER_RESERVE = 128


def task_prompt(task: str) -> tuple[str, str]:
    """A one-region task's first user message and how its answer is post-processed, as
    :meth:`Osprey.describe` asks it (``generate(image, [mask], message, postprocess=mode)``
    gives the same answer for one region, and streams)."""
    return conv.task_message(task), "demo" if task in ("short", "detailed") else "reference"


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
        self.generator = Generator(
            model, tokenizer, kv_cache_size=kv_cache_size, batch_size=batch_size
        )
        self.images = FeatureCache(model, cache_size, lock=self.generator.lock)
        self.classifier = Classifier(self.generator, self._encoded)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path = "osprey-7b", *, cache_size: int = 8,
        compile: bool = False, **load_kwargs,
    ) -> Osprey:  # fmt: skip
        """Load a registry model, ``tiny-random`` or a checkpoint folder (see
        :func:`osprey.inference.loading.load_pretrained` for ``device``, ``dtype``, ``checkpoints_dir``,
        ``clip_path``, ``download``, ``quantize``). ``compile``: decode over a static KV cache
        with a compiled step (compiled now, see :meth:`Generator.enable_static_decoding`)."""
        check_quantize(load_kwargs.get("quantize"), compile)
        model, tokenizer = load_pretrained(name_or_path, **load_kwargs)
        osp = cls(model, tokenizer, name=str(name_or_path), cache_size=cache_size)
        if compile:
            osp.enable_static_decoding()
        return osp

    @classmethod
    def tiny(cls, seed: int = 0, *, cache_size: int = 8, **load_kwargs) -> Osprey:
        """The tiny random-weight model (answers are meaningless), CPU fp32 unless told otherwise."""
        model, tokenizer = load_tiny(seed, **load_kwargs)
        return cls(model, tokenizer, name="tiny-random", cache_size=cache_size)

    def enable_static_decoding(self, **kwargs) -> None:
        self.generator.enable_static_decoding(**kwargs)

    @property
    def untrained(self) -> bool:
        return self.model.config.untrained

    @property
    def max_length(self) -> int:
        return self.model.config.model_max_length

    # -- the image -----------------------------------------------------------------------------

    def set_image(self, image: ImageLike) -> ImageHandle:
        """Encode ``image`` now (cached by content) and return its handle: pass the handle to the
        other methods to skip decoding and hashing the image again."""
        return self.images.get(image)[0]

    # -- answers -------------------------------------------------------------------------------

    def generate(
        self, image: ImageLike, masks: Masks, prompt: str | Sequence[conv.Turn],
        gen: Generation | None = None, *, postprocess: str = "reference", streamer=None,
        stop: threading.Event | None = None,
    ) -> Answer:  # fmt: skip
        """Answer the open last turn of ``prompt`` (a first user message, or a list of Turns).

        ``masks`` bind in order to the ``<mask><pos>`` pairs of the prompt: a count mismatch, a
        mask of another shape than the image, or an empty mask raises RegionError.
        """
        gen = gen or Generation()
        handle, feats = self.images.get(image)
        regions = prepare_masks(masks, handle.height, handle.width)
        turns = [conv.Turn(prompt)] if isinstance(prompt, str) else list(prompt)
        ids = self._encode(turns, regions.shape[0], self.max_length - 1)
        new = self.generator.generate(handle.key, feats, regions, ids, gen, streamer, stop)
        raw = self.generator.decode_text(new)
        return Answer(conv.postprocess_answer(raw, postprocess), raw, len(ids), len(new))

    def describe(
        self, image: ImageLike, masks: Masks, task: str = "short", gen: Generation | None = None,
        *, batched: bool = True,
    ) -> list[str]:  # fmt: skip
        """One answer per region for a one-region task (``category``, ``short``, ``detailed``, ...),
        with the original's prompts and post-processing. Regions are decoded together in batches
        over a shared, once-computed prompt prefix (``batched=False``: one region at a time)."""
        gen = gen or Generation()
        message, mode = task_prompt(task)
        handle, feats = self.images.get(image)
        regions = prepare_masks(masks, handle.height, handle.width)
        if regions.shape[0] == 0:
            return []
        ids = self._encode([conv.Turn(message)], 1, self.max_length - 1)
        g = self.generator
        if batched and regions.shape[0] > 1:
            outs = g.generate_rows(handle.key, feats, regions, ids, gen)
        else:
            singles = (regions[i : i + 1] for i in range(len(regions)))
            outs = [g.generate(handle.key, feats, m, ids, gen) for m in singles]
        return [conv.postprocess_answer(g.decode_text(new), mode) for new in outs]

    def describe_batch(
        self, items: Sequence[tuple[ImageLike, Masks]], task: str = "short",
        gen: Generation | None = None,
    ) -> list[list[str]]:  # fmt: skip
        """:meth:`describe` for several images: one list of answers per ``(image, masks)``. With
        the batching engine on, every region of every image is decoded in one batch."""
        gen = gen or Generation()
        if not self.generator.batching(gen):
            return [self.describe(image, masks, task, gen) for image, masks in items]
        ids = self._encode([conv.Turn(conv.task_message(task))], 1, self.max_length - 1)
        budget, jobs, counts = self.generator.budget(gen, len(ids)), [], []
        for image, masks in items:
            handle, feats = self.images.get(image)
            regions = prepare_masks(masks, handle.height, handle.width)
            jobs += [
                (handle.key, feats, regions[i : i + 1], ids, budget) for i in range(len(regions))
            ]
            counts.append(regions.shape[0])
        answers = iter(self.generator.engine.answer_many(jobs))
        mode = task_prompt(task)[1]
        decode = self.generator.decode_text
        return [
            [conv.postprocess_answer(decode(next(answers)), mode) for _ in range(n)] for n in counts
        ]

    def ask(
        self, image: ImageLike, masks: Masks, question: str,
        history: Sequence[tuple[str, str]] = (), gen: Generation | None = None, *,
        streamer=None, stop: threading.Event | None = None,
    ) -> Answer:  # fmt: skip
        """A free question about the regions (``region1``, ``region2``, ... in the order of
        ``masks``) or, without masks, about the whole image; ``history`` holds earlier
        (question, answer) pairs. Old turns that no longer fit the context are dropped (counted in
        ``Answer.dropped_turns``)."""
        gen = gen or Generation()
        handle, feats = self.images.get(image)
        regions = prepare_masks(masks, handle.height, handle.width)
        ids, dropped = self._fit_chat(history, question, regions.shape[0])
        new = self.generator.generate(handle.key, feats, regions, ids, gen, streamer, stop)
        raw = self.generator.decode_text(new)
        return Answer(conv.postprocess_answer(raw, "chat"), raw, len(ids), len(new), dropped)

    def stream(
        self, fn: Callable[..., Answer], *args, on_answer: Callable[[Answer], None] | None = None,
        report_waiting: bool = False, interval: float = 0.0, **kwargs,
    ) -> Iterator[str | Waiting]:  # fmt: skip
        """Run ``fn`` (``self.ask`` or ``self.generate``) in a thread and yield the decoded text as
        it grows; the last value is the post-processed answer, whose :class:`Answer` goes to
        ``on_answer`` (e.g. to report dropped chat turns). With ``report_waiting``,
        :class:`~osprey.inference.generator.Waiting` notes first while the answer waits in line (batching
        engine). With ``interval`` > 0, at most one update per ``interval`` seconds (the words
        that came meanwhile in one piece). Exceptions are re-raised here."""
        return stream(
            self.tokenizer, fn, *args, on_answer=on_answer, report_waiting=report_waiting,
            interval=interval, **kwargs,
        )  # fmt: skip

    def logits(self, image: ImageLike, masks: Masks, prompt: str) -> torch.Tensor:
        """Logits (T, vocab) in fp32 for every position of the spliced sequence of a fully
        rendered prompt (system sentence and roles included, e.g. from ``conversation.render``),
        with ``<image>`` expanded to the image tokens. This is the quantity to compare with the
        original implementation: same image, masks and prompt string must give the same logits."""
        handle, feats = self.images.get(image)
        regions = prepare_masks(masks, handle.height, handle.width)
        ids, _ = conv.tokenize_prompt(self.tokenizer, prompt, self.model.num_image_tokens)
        input_ids = torch.tensor([ids], device=self.model.device)
        with self.generator.context():
            out = self.model(input_ids, features=[feats], masks=[regions])
        return out.logits[0].float()

    # -- top-k categories over a vocabulary (osprey/inference/topk_scoring.py) -----------------------------------

    def classify(
        self, image: ImageLike, masks: Masks, vocabulary: vocab.Vocabulary | str | Sequence[str],
        top_k: int = 5,
    ) -> list[list[tuple[str, float]]]:  # fmt: skip
        """The ``top_k`` most probable classes of ``vocabulary`` (a built-in name such as
        ``"lvis"``, comma-separated names, a list of names or a :class:`Vocabulary`) with their
        probabilities, for each region of ``masks`` or, without masks, for the whole image (one
        list). A probability is the softmax over the whole vocabulary of each name's summed answer
        log-likelihood under the category prompt (see :mod:`osprey.inference.topk_scoring`)."""
        v = vocab.resolve(vocabulary)
        probs = self.class_probabilities(image, masks, v)
        return [top_names(v.names, p, top_k) for p in probs]

    def class_probabilities(
        self, image: ImageLike, masks: Masks, vocabulary: vocab.Vocabulary | str | Sequence[str]
    ) -> np.ndarray:
        """(Q, K) probabilities of the K classes of ``vocabulary`` for each region ((1, K) for the
        whole image without masks); each row sums to 1."""
        v = vocab.resolve(vocabulary)
        handle, feats = self.images.get(image)
        regions = prepare_masks(masks, handle.height, handle.width)
        scores = self.classifier.scores(handle.key, feats, regions, v)
        return class_probabilities(scores, v.owners)

    # -- prompts -------------------------------------------------------------------------------

    def _encoded(self, turns: Sequence[conv.Turn], limit: int | None = None) -> conv.Encoded:
        cfg = self.model.config
        return conv.encode(
            self.tokenizer, turns, num_image_tokens=self.model.num_image_tokens,
            mask_token_id=cfg.mask_token_id, pos_token_id=cfg.pos_token_id,
            template=cfg.template, max_length=limit or self.max_length,
        )  # fmt: skip

    def _encode(self, turns: Sequence[conv.Turn], n_masks: int, limit: int) -> list[int]:
        enc = self._encoded(turns, limit)
        if enc.num_regions != n_masks:
            raise RegionError(
                f"the prompt refers to {enc.num_regions} region(s) but {n_masks} mask(s) were given"
            )
        return enc.input_ids

    def _fit_chat(
        self, history: Sequence[tuple[str, str]], question: str, n_masks: int
    ) -> tuple[list[int], int]:
        """Token ids of the chat, dropping the fewest oldest turns that make it fit the context
        (found by bisection: a chat with fewer turns is never longer, and a long chat is encoded
        a few times, not once per turn)."""
        history, limit = list(history), self.max_length - ANSWER_RESERVE

        def fit(dropped: int, strict: bool = False) -> list[int] | None:
            turns = conv.chat_turns(history[dropped:], question, n_masks)
            try:
                return self._encode(turns, n_masks, limit)
            except conv.ContextLengthError:
                if strict:  # even the question alone is too long: that error
                    raise
                return None

        ids = fit(0)
        if ids is not None:
            return ids, 0
        low, high = 0, len(history)  # dropping low turns does not fit, dropping high does
        best = fit(high, strict=True)
        while high - low > 1:
            mid = (low + high) // 2
            ids = fit(mid)
            if ids is None:
                low = mid
            else:
                high, best = mid, ids
        return best, high
