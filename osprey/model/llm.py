"""The language model and its tokenizer (the only osprey module that imports transformers' model
classes)."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from osprey.core import constants as C
from osprey.core.errors import OspreyError
from osprey.model.config import LLMConfig


def llama_config(config: LLMConfig, attn_implementation: str = "sdpa"):
    from transformers import LlamaConfig

    cfg = LlamaConfig(**asdict(config), attn_implementation=attn_implementation)
    return cfg


def build_llm(config: LLMConfig, attn_implementation: str = "sdpa") -> nn.Module:
    """A randomly initialised ``LlamaForCausalLM`` (build it under ``torch.device('meta')`` to skip
    the allocation when weights are loaded right after)."""
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM(llama_config(config, attn_implementation))


def reset_rotary(llm: nn.Module, device: torch.device | str) -> None:
    """Recreate the rotary-embedding module in fp32 on ``device``.

    Its ``inv_freq`` buffers are not persistent, so they stay on the meta device after a meta
    build plus ``load_state_dict(assign=True)``; and ``module.to(bfloat16)`` would round them,
    which shifts every rotary angle by up to position x 0.4 % (radians, not ulps).
    """
    rotary = llm.model.rotary_emb
    llm.model.rotary_emb = type(rotary)(config=llm.config).to(device)


# ---------------------------------------------------------------------------------------------
# tokenizer


class TokenizerError(OspreyError, ValueError):
    """The tokenizer files do not give the ids the weights expect."""


def _read_tokenizer(path: Path, model_max_length: int, gguf_file: str | None):
    """The tokenizer files as transformers' stock classes read them, never running code: a folder
    whose config asks for its own code (``auto_map``) is read with the stock LLaMA tokenizer."""
    from transformers import AutoTokenizer, LlamaTokenizer

    kwargs = dict(
        legacy=True, use_fast=True, model_max_length=model_max_length, padding_side="right",
        trust_remote_code=False, **({"gguf_file": gguf_file} if gguf_file else {}),
    )  # fmt: skip
    try:
        return AutoTokenizer.from_pretrained(str(path), **kwargs)
    except ValueError as exc:
        if "trust_remote_code" not in str(exc):
            raise TokenizerError(f"cannot read the tokenizer in {path}: {exc}") from exc
        logging.getLogger(__name__).warning(
            "%s asks to run its own tokenizer code; it is ignored (the stock LLaMA tokenizer "
            "reads the files)", path,
        )  # fmt: skip
        kwargs.pop("trust_remote_code")
        return LlamaTokenizer.from_pretrained(str(path), **kwargs)


def load_tokenizer(
    path: str | Path,
    mask_token_id: int | None = None,
    pos_token_id: int | None = None,
    model_max_length: int = C.MODEL_MAX_LENGTH,
    *,
    gguf_file: str | None = None,
):
    """Load a LLaMA-family tokenizer exactly as the released weights saw it, with ``<mask>`` and
    ``<pos>`` added as special tokens. The one tokenizer loader: inference, checkpoints and
    training (a new LLM's tokenizer, ``gguf_file`` inside ``path``) all use it.

    ``legacy=True`` reproduces the ids of the original's transformers-4.31 fast tokenizer, which
    ignored ``legacy: false`` in tokenizer_config.json and starts every text piece that follows an
    added token with a fresh SentencePiece word (``<pos>? `` -> ``<pos>``, ``▁?``). The pad token is
    the unk token (id 0; EOS for tokenizers without one). With ``mask_token_id`` / ``pos_token_id``
    given, ``<mask>`` and ``<pos>`` must come out at those ids (the weights' ids). A checkpoint's
    own code is never run (``trust_remote_code=False``).
    """
    path = Path(path)
    has_files = (path / "tokenizer.model").is_file() or (path / "tokenizer.json").is_file()
    if not has_files and not gguf_file:
        raise TokenizerError(f"no tokenizer.model or tokenizer.json in {path}")
    tok = _read_tokenizer(path, model_max_length, gguf_file)
    tok.add_tokens(
        [C.MASK_TOKEN, C.POS_TOKEN], special_tokens=True
    )  # a no-op with added_tokens.json
    tok.pad_token = tok.unk_token if tok.unk_token is not None else tok.eos_token
    if mask_token_id is None and pos_token_id is None:
        return tok
    got = tok.convert_tokens_to_ids([C.MASK_TOKEN, C.POS_TOKEN])
    if got != [mask_token_id, pos_token_id]:
        raise TokenizerError(
            f"tokenizer in {path} gives <mask>/<pos> ids {got}, the weights expect "
            f"{[mask_token_id, pos_token_id]}"
        )
    return tok
