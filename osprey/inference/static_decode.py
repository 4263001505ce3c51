"""Decoding: batch-1 decoding over a static KV cache with a compiled one-token step; the
sampling processors of `generate`.

The plain path decodes with transformers' ``generate`` over a growing ``DynamicCache``: every
token pays Python and kernel-launch overhead for 32 layers, which on a GPU costs more than reading
the weights. Here the prompt is prefilled as before (eagerly, over the reused prefix), its keys and
values are copied into a ``StaticCache`` of ``model_max_length`` positions allocated once, and each
new token runs one step function of fixed shapes, ``(1, 1)`` token and position, compiled once with
``torch.compile`` (``mode="reduce-overhead"`` on CUDA: the step replays as a CUDA graph). Every
question, whatever its length, reuses the same graph: positions past the current length are masked.

All compiled steps run on one worker thread owned by the decoder: CUDA-graph trees are kept per
thread, and requests arrive on many (Gradio's pool, the streaming threads).
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable

import torch
from torch import nn

StepFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Sampling keeps the 50 most likely tokens before top-p: transformers' default, which the original
# (transformers 4.31) sampled with and transformers 5 still fills in when top_k is unset.
TOP_K = 50


class StaticDecoder:
    """Owns the static cache and the compiled step of one ``LlamaForCausalLM``.

    ``compile``: ``torch.compile`` the step (``backend``/``mode`` passed through; ``mode=None``
    picks ``"reduce-overhead"`` on CUDA and inductor's default elsewhere). ``compile=False`` runs
    the same step eagerly (tests, and the reference for the compiled one).
    """

    def __init__(
        self,
        llm: nn.Module,
        max_len: int,
        *,
        compile: bool = True,
        backend: str = "inductor",
        mode: str | None = None,
    ):
        from transformers import StaticCache

        self.llm = llm
        self.max_len = max_len
        self.device = next(llm.parameters()).device
        self.cache = StaticCache(config=llm.config, max_cache_len=max_len)
        if compile:
            mode = mode or ("reduce-overhead" if self.device.type == "cuda" else None)
            self._step: StepFn = torch.compile(
                self._forward, backend=backend, mode=mode, fullgraph=True, dynamic=False
            )
        else:
            self._step = self._forward
        self.compiled = compile
        on_device = (
            (lambda: torch.cuda.set_device(self.device)) if self.device.type == "cuda" else None
        )  # graphs are recorded on the worker's current device
        self._worker = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="osprey-decode", initializer=on_device
        )
        self.steps = 0  # decode steps run, for stats

    def _forward(self, token: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """(1, 1) token id and position -> (1, vocab) logits; appends the token's KV."""
        out = self.llm(
            input_ids=token, position_ids=position, cache=self.cache, use_cache=True,
            logits_to_keep=1,
        )  # fmt: skip
        return out.logits[:, -1, :]

    # -- cache transfer ------------------------------------------------------------------------

    def load(self, prefix) -> int:
        """Make the static cache hold exactly the keys/values of the ``DynamicCache`` ``prefix``
        (batch 1); returns its length."""
        n = prefix.get_seq_length()
        if n >= self.max_len:
            raise ValueError(
                f"a prompt of {n} tokens leaves no room in a {self.max_len}-token cache"
            )
        self._reset()
        for static, layer in zip(self.cache.layers, prefix.layers, strict=True):
            static.update(layer.keys, layer.values)
        return n

    def export(self, n: int):
        """A ``DynamicCache`` with copies of the first ``n`` positions (for the prefix cache)."""
        from osprey.inference.prefix_cache import clone_prefix

        return clone_prefix(self.cache, n)

    def _reset(self) -> None:
        for layer in self.cache.layers:
            if layer.is_initialized:
                layer.cumulative_length.zero_()  # in place: the compiled step holds its address

    # -- decoding ------------------------------------------------------------------------------

    def decode(
        self,
        first_logits: torch.Tensor,
        start: int,
        budget: int,
        choose: Callable[[torch.Tensor], torch.Tensor],
        on_token: Callable[[int], bool],
    ) -> list[int]:
        """Decode after a loaded prompt of ``start`` tokens whose last logits are ``first_logits``
        (1, vocab). ``choose(logits)`` picks each token (see :func:`token_chooser`);
        ``on_token(token)`` returns True to stop (end of sequence, stop button). Returns the new
        tokens (at most ``budget``)."""
        if start + budget > self.max_len + 1:
            raise ValueError(f"{start} + {budget} tokens exceed the {self.max_len}-token cache")
        grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

        def run() -> list[int]:
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                new: list[int] = []
                logits = first_logits
                while True:
                    token = int(choose(logits.float()))
                    new.append(token)
                    if on_token(token) or len(new) == budget:
                        return new
                    if self.compiled and self.device.type == "cuda":
                        torch.compiler.cudagraph_mark_step_begin()  # the last output is consumed
                    ids = torch.tensor([[token]], device=self.device)
                    pos = torch.tensor([[start + len(new) - 1]], device=self.device)
                    logits = self._step(ids, pos).clone()  # a graph's output is overwritten
                    self.steps += 1

        if threading.current_thread().name.startswith("osprey-decode"):
            return run()
        return self._worker.submit(run).result()

    def warmup(self, steps: int = 3) -> None:
        """Compile (and record the CUDA graph) before the first request: a few steps on a
        one-token prompt."""
        from transformers import DynamicCache

        with torch.inference_mode():
            prefix = DynamicCache(config=self.llm.config)
            ids = torch.zeros(1, 1, dtype=torch.long, device=self.device)
            self.llm(input_ids=ids, cache=prefix, use_cache=True, logits_to_keep=1)
            self.load(prefix)
            logits = torch.zeros(1, self.llm.config.vocab_size, device=self.device)
            self.decode(logits, 1, steps + 1, lambda lg: lg.argmax(-1), lambda tok: False)
            self._reset()

    def close(self) -> None:
        self._worker.shutdown(wait=False)


def token_chooser(do_sample: bool, temperature: float, top_p: float):
    """``choose(logits)``: (B, vocab) float32 logits -> (B,) token ids, as ``generate`` picks
    them (argmax; or the sampling processors, then one multinomial draw per row)."""
    if not do_sample:
        return lambda logits: logits.argmax(-1)
    warpers = sampling_warpers(temperature, top_p)

    def choose(logits: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(warpers(None, logits), dim=-1)
        return torch.multinomial(probs, num_samples=1).squeeze(1)

    return choose


def sampling_warpers(temperature: float, top_p: float):
    """The processors ``generate`` applies when sampling (temperature, top-k, top-p)."""
    from transformers import (
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    out = LogitsProcessorList()
    if temperature != 1.0:
        out.append(TemperatureLogitsWarper(temperature))
    out.append(TopKLogitsWarper(TOP_K))
    if top_p < 1.0:
        out.append(TopPLogitsWarper(top_p))
    return out
