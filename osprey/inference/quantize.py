"""8-bit and 4-bit weights for the LLM (bitsandbytes), for GPUs with little memory.

Only the Linear layers inside the decoder blocks are quantized (about 97 % of the 7B LLM's
weights); the embedding table, the LM head, the vision tower, the projector and the mask
extractor keep their precision, as transformers' own bitsandbytes integration does. Answers move
a little: ``benchmarks/run.py --quant`` measures how much on the tiny model's logits.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

BITS = {"8bit": 8, "4bit": 4}


def _require_bnb():
    try:
        import bitsandbytes as bnb
    except ImportError as exc:
        raise RuntimeError(
            "8-bit / 4-bit loading needs bitsandbytes: pip install bitsandbytes"
        ) from exc
    return bnb


class _DropInt8CastNotice(logging.Filter):
    """bitsandbytes logs on every 8-bit matmul that bf16/fp32 inputs are cast to fp16 (LLM.int8
    computes in fp16 by design): thousands of identical lines per answer, so they are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("MatMul8bitLt: inputs will be cast")


def _quiet_int8_cast_notice() -> None:
    log = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _DropInt8CastNotice) for f in log.filters):
        log.addFilter(_DropInt8CastNotice())


def _quantized_linear(linear: nn.Linear, bits: int, compute_dtype: torch.dtype) -> nn.Module:
    bnb = _require_bnb()
    weight = linear.weight.data.to(
        "cpu", torch.float16 if compute_dtype == torch.float16 else torch.bfloat16
    )
    if bits == 8:
        layer = bnb.nn.Linear8bitLt(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            has_fp16_weights=False,
            threshold=6.0,
        )
        layer.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
    else:
        layer = bnb.nn.Linear4bit(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            compute_dtype=compute_dtype,
            quant_type="nf4",
        )
        layer.weight = bnb.nn.Params4bit(
            weight, requires_grad=False, quant_type="nf4", compress_statistics=True
        )
    if linear.bias is not None:
        layer.bias = nn.Parameter(linear.bias.data.to(compute_dtype), requires_grad=False)
    return layer


def quantize_llm(
    llm: nn.Module,
    mode: str,
    device: torch.device | str,
    compute_dtype: torch.dtype = torch.bfloat16,
) -> int:
    """Replace the decoder blocks' Linear layers of ``llm`` by bitsandbytes ``mode`` layers
    (``"8bit"`` LLM.int8 with outlier threshold 6, or ``"4bit"`` NF4 with double quantization),
    quantized as they move to ``device``. Returns the number of layers replaced."""
    if mode not in BITS:
        raise ValueError(f"unknown quantization {mode!r}; use one of {sorted(BITS)}")
    if mode == "8bit":
        _quiet_int8_cast_notice()
    count = 0
    for block in llm.model.layers:
        for parent in list(block.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(
                        parent, name, _quantized_linear(child, BITS[mode], compute_dtype).to(device)
                    )
                    count += 1
    llm.osprey_quantized = mode
    return count
