"""LoRA and QLoRA for fine-tuning the released weights on one consumer GPU (peft).

Adapters go on every Linear of the LLM's decoder layers (peft's ``all-linear``, which leaves the
LM head alone); the projector and the mask extractor train in full next to them (stages.py). At
the end the adapters are merged, so the saved checkpoint is a plain Osprey model that
``load_osprey`` and the inference API read. QLoRA (``bits`` 4 or 8) additionally holds the LLM's
frozen weights quantised with bitsandbytes, through transformers' own quantised loading.
"""

from __future__ import annotations

import importlib.util
import tempfile

import torch

from osprey.core.errors import OspreyError


class LoraSetupError(OspreyError, RuntimeError):
    """A LoRA / QLoRA setting that cannot run here, with what to do about it."""


def check_quantization(bits: int) -> None:
    """QLoRA needs bitsandbytes and a CUDA device: fail before any model is built."""
    if bits == 16:
        return
    if bits not in (4, 8):
        raise LoraSetupError(f"bits must be 16 (no quantisation), 8 or 4, not {bits}")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise LoraSetupError(
            f"bits={bits} (QLoRA) needs bitsandbytes, which is not installed: "
            "pip install bitsandbytes (CUDA only), or train with bits=16"
        )
    if not torch.cuda.is_available():
        raise LoraSetupError(f"bits={bits} (QLoRA) needs a CUDA device")


def quantize_llm(model, bits: int, compute_dtype: torch.dtype) -> None:
    """Replace ``model.llm`` by its ``bits``-bit quantised copy (bitsandbytes via transformers'
    ``from_pretrained(quantization_config=...)``), prepared for k-bit training. Untested here: no
    bitsandbytes on the development machines."""
    from peft import prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig, LlamaForCausalLM

    quant = BitsAndBytesConfig(
        load_in_4bit=bits == 4,
        load_in_8bit=bits == 8,
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_use_double_quant=True,
        bnb_4bit_quant_type="nf4",
    )
    with tempfile.TemporaryDirectory(prefix="osprey-qlora-") as tmp:
        model.llm.save_pretrained(tmp)
        llm = LlamaForCausalLM.from_pretrained(
            tmp,
            quantization_config=quant,
            dtype=compute_dtype,
            device_map={"": 0},
            trust_remote_code=False,
        )
    model.llm = prepare_model_for_kbit_training(llm, use_gradient_checkpointing=True)


def add_lora(model, *, r: int, alpha: int, dropout: float) -> None:
    """Wrap ``model.llm`` with LoRA adapters (rank ``r``, scale ``alpha / r``)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules="all-linear",
        bias="none",
        task_type="CAUSAL_LM",
    )
    model.llm = get_peft_model(model.llm, config)


def has_lora(model) -> bool:
    from peft import PeftModel

    return isinstance(model.llm, PeftModel)


def merge_lora(model) -> None:
    """Fold the adapters into the LLM's weights and drop the peft wrapper."""
    if has_lora(model):
        model.llm = model.llm.merge_and_unload()
