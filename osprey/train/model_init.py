"""Where a run's initial weights come from.

* ``model_path``: an Osprey checkpoint, ours or the released format (stage 3 from a stage-2
  checkpoint such as ``Osprey-7b-stage2``; fine-tuning from ``Osprey-7b``), or ``tiny-random``.
* ``llm_path``: a LLaMA-family Hugging Face checkpoint (Vicuna-7B v1.5, or a GGUF file inside the
  directory) plus the open_clip CLIP file: stage 1, or any stage on another LLM. The config's LLM
  fields are read from the checkpoint; projector and extractor start from fresh random weights.
* ``projector_path`` (optional, either way): a stage-1 ``mm_projector.bin``; keys are stripped up
  to ``mm_projector.`` as the original's ``--pretrain_mm_mlp_adapter``.

Placeholders ``<mask>``/``<pos>`` are added to a new LLM's tokenizer as special tokens; their ids
(``len(tokenizer)`` and the next) go into the config. The embedding matrix is not resized: the
placeholder ids are never looked up (their rows come from the extractor) and never predicted
(their labels are ignored), exactly as the released Vicuna weights have 32000 rows for ids
32000/32001.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import torch

from osprey.core import constants as C
from osprey.core.errors import OspreyError
from osprey.model.checkpoint import (
    CLIP_PREFIX,
    build_model,
    load_osprey,
    load_state_dict,
    read_tensors,
)
from osprey.model.config import LLMConfig, OspreyConfig, osprey_7b_config, tiny_config
from osprey.model.llm import load_tokenizer
from osprey.model.mask_extractor import MaskExtractor
from osprey.model.projector import build_projector
from osprey.model.vision import ConvNextVisionTower


class InitError(OspreyError, ValueError):
    """The run's initial weights cannot be assembled from what the config names."""


# ---------------------------------------------------------------------------------------------
# config of a new LLM (its tokenizer: osprey.model.llm.load_tokenizer)


def llm_config_from_hf(hf_config, tokenizer) -> LLMConfig:
    """Our LLMConfig from a transformers LlamaConfig (the LLM's architecture, read not typed)."""
    if hf_config.model_type != "llama":
        raise InitError(f"only LLaMA-architecture LLMs are supported, got {hf_config.model_type!r}")
    rope = getattr(hf_config, "rope_parameters", None) or getattr(hf_config, "rope_scaling", None)
    rope = rope or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise InitError(f"RoPE scaling {rope} is not supported (plain RoPE only)")
    head_dim = getattr(hf_config, "head_dim", None)
    if head_dim not in (None, hf_config.hidden_size // hf_config.num_attention_heads):
        raise InitError(f"head_dim {head_dim} != hidden_size / num_attention_heads")
    values = {f.name: getattr(hf_config, f.name, None) for f in fields(LLMConfig)}
    values["rope_theta"] = rope.get("rope_theta", getattr(hf_config, "rope_theta", None))
    values["tie_word_embeddings"] = False  # see from_llm: the head gets its own copy
    values["pad_token_id"] = tokenizer.pad_token_id
    values["bos_token_id"] = tokenizer.bos_token_id
    values["eos_token_id"] = tokenizer.eos_token_id
    return LLMConfig(**{k: v for k, v in values.items() if v is not None})


# ---------------------------------------------------------------------------------------------
# fresh and loaded parts


def _prefixed(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in module.state_dict().items()}


def _fresh_parts(config: OspreyConfig, channels: dict[str, int], seed: int) -> dict:
    """Randomly initialised projector and extractor (torch defaults, seeded)."""
    hidden = config.llm.hidden_size
    level = config.vision.image_token_level
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        projector = build_projector(config.projector_type, channels[level], hidden)
        extractor = MaskExtractor(config.extractor, channels, hidden)
    return {**_prefixed("projector.", projector), **_prefixed("mask_extractor.", extractor)}


def _vision_state(config: OspreyConfig, clip_path: str | None, seed: int) -> dict:
    """The tower from the open_clip CLIP file, or (tiny tower only) random with layer-scale gammas
    of a trained tower's order, so that its blocks are not no-ops."""
    if clip_path is not None:
        ours, theirs = CLIP_PREFIX
        state = {
            ours + k[len(theirs) :]: v
            for k, v in read_tensors([Path(clip_path)])
            if k.startswith(theirs)
        }
        if not state:
            raise InitError(f"{clip_path} has no 'visual.*' tensors: not an open_clip CLIP file")
        return state
    if config.vision.timm_model != tiny_config().vision.timm_model:
        raise InitError("the release's vision tower needs its CLIP weights: pass clip_path")
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tower = ConvNextVisionTower(config.vision)
    with torch.no_grad():
        for name, param in tower.named_parameters():
            if name.endswith(".gamma"):
                param.copy_(torch.rand(param.shape, generator=gen) * 0.5 + 0.1)
    return _prefixed("vision.", tower)


def from_llm(
    llm_path: str | Path,
    *,
    gguf_file: str | None = None,
    clip_path: str | None = None,
    vision_arch: str = "release",
    max_length: int = 2048,
    attn_implementation: str = "sdpa",
    seed: int = 0,
):
    """(OspreyModel, tokenizer) from a LLaMA-family HF checkpoint + CLIP. A tied LM head is untied
    (given its own copy of the embeddings), which keeps every saved tensor a distinct key."""
    from transformers import AutoConfig, LlamaForCausalLM

    if vision_arch not in ("release", "tiny"):
        raise InitError(f"vision_arch must be 'release' or 'tiny', not {vision_arch!r}")
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    kwargs["trust_remote_code"] = False  # a checkpoint's own code never runs
    tok = load_tokenizer(llm_path, model_max_length=max_length, gguf_file=gguf_file)
    llm_cfg = llm_config_from_hf(AutoConfig.from_pretrained(str(llm_path), **kwargs), tok)
    base = osprey_7b_config() if vision_arch == "release" else tiny_config()
    mask_id, pos_id = tok.convert_tokens_to_ids([C.MASK_TOKEN, C.POS_TOKEN])
    config = replace(
        base,
        llm=llm_cfg,
        mask_token_id=mask_id,
        pos_token_id=pos_id,
        model_max_length=max_length,
        untrained=clip_path is None,
    )
    model = build_model(config, meta=True, attn_implementation=attn_implementation)
    llm = LlamaForCausalLM.from_pretrained(str(llm_path), dtype=torch.float32, **kwargs)
    state = _prefixed("llm.", llm)
    state["llm.lm_head.weight"] = llm.get_output_embeddings().weight.detach().clone()
    state.update(_vision_state(config, clip_path, seed))
    state.update(_fresh_parts(config, model.vision.channels, seed))
    load_state_dict(model, {k: v.float() for k, v in state.items()})
    return model, tok


def load_projector(model, path: str | Path) -> None:
    """Load a stage-1 projector (``mm_projector.bin`` or safetensors; any key prefix up to
    ``mm_projector.``) strictly into ``model.projector``."""
    state = dict(read_tensors([Path(path)]))
    sub = {k.split("mm_projector.", 1)[1]: v for k, v in state.items() if "mm_projector." in k}
    if not sub:
        raise InitError(f"{path} holds no 'mm_projector.*' tensors (keys: {sorted(state)[:5]})")
    dtype = next(model.projector.parameters()).dtype
    try:
        model.projector.load_state_dict({k: v.to(dtype) for k, v in sub.items()}, strict=True)
    except RuntimeError as exc:
        raise InitError(f"{path} does not fit the projector: {exc}") from exc


def save_projector(model, path: str | Path) -> Path:
    """``mm_projector.bin`` with the original's key names (``model.mm_projector.0.weight``...), the
    file the original's stage 2 (``--pretrain_mm_mlp_adapter``) and :func:`load_projector` read."""
    state = {
        f"model.mm_projector.{k}": v.detach().cpu() for k, v in model.projector.state_dict().items()
    }
    torch.save(state, path)
    return Path(path)


def initial_model(cfg, attn_implementation: str = "sdpa"):
    """(OspreyModel, tokenizer) for a TrainConfig, in fp32 on the CPU."""
    if (cfg.model_path is None) == (cfg.llm_path is None):
        raise InitError(
            "give exactly one of model_path (an Osprey checkpoint) and llm_path (an LLM)"
        )
    if cfg.model_path == "tiny-random":
        from osprey.model.tiny import build_tiny

        model, tok = build_tiny(seed=cfg.seed)
    elif cfg.model_path is not None:
        model, tok = load_osprey(
            cfg.model_path, clip_path=cfg.clip_path, attn_implementation=attn_implementation
        )
    else:
        model, tok = from_llm(
            cfg.llm_path,
            gguf_file=cfg.llm_gguf_file,
            clip_path=cfg.clip_path,
            vision_arch=cfg.vision_arch,
            max_length=cfg.model_max_length,
            attn_implementation=attn_implementation,
            seed=cfg.seed,
        )
    if cfg.projector_path is not None:
        load_projector(model, cfg.projector_path)
    model.config.model_max_length = cfg.model_max_length
    return model, tok
