"""Build, load and save Osprey models: the released checkpoint format and our own.

Released format (``sunshine-lwt/Osprey-7b`` and friends): ``config.json`` with ``model_type``
``osprey`` or ``osprey-stage2``; weights as sharded ``pytorch_model-*.bin`` + index (or
safetensors); keys named after the original module tree (``model.layers.*``,
``model.mm_projector.*``, ``model.vision_tower.vision_tower.visual.*``, ``mask_extractor.*``,
``lm_head.*``) plus 32 persisted ``rotary_emb.inv_freq`` buffers, which are ignored. The CLIP tower
is embedded in the checkpoint or comes from the separate open_clip file (``visual.*`` keys).

Our format: ``osprey_config.json`` (the architecture, see osprey.model.config), ``model.safetensors``
(sharded with an index when large) and the tokenizer files.

Loading is strict: any missing or unexpected key is an error that lists both sides. Nothing is
unpickled as code: ``torch.load(weights_only=True)`` or safetensors only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import fields
from pathlib import Path

import torch

from osprey.core.errors import CheckpointError
from osprey.model.config import LLMConfig, OspreyConfig, osprey_7b_config
from osprey.model.llm import load_tokenizer, reset_rotary
from osprey.model.osprey import OspreyModel

OUR_CONFIG = "osprey_config.json"
ORIGINAL_MODEL_TYPES = ("osprey", "osprey-stage2")

# (our prefix, original prefix): the explicit key map, most specific first.
ORIGINAL_PREFIXES = (
    ("vision.visual.", "model.vision_tower.vision_tower.visual."),
    ("projector.", "model.mm_projector."),
    ("mask_extractor.", "mask_extractor."),
    ("llm.lm_head.", "lm_head."),
    ("llm.model.", "model."),
)
CLIP_PREFIX = ("vision.visual.", "visual.")  # keys of the open_clip CLIP file
_INV_FREQ = re.compile(r"(^|\.)rotary_emb\.inv_freq$")


# ---------------------------------------------------------------------------------------------
# key maps


def to_original_key(key: str) -> str:
    for ours, theirs in ORIGINAL_PREFIXES:
        if key.startswith(ours):
            return theirs + key[len(ours) :]
    raise KeyError(f"no original name for parameter {key!r}")


def from_original_key(key: str) -> str:
    for ours, theirs in ORIGINAL_PREFIXES:
        if key.startswith(theirs):
            return ours + key[len(theirs) :]
    raise KeyError(f"unexpected key {key!r} in the checkpoint")


def is_inv_freq(key: str) -> bool:
    return bool(_INV_FREQ.search(key))


# ---------------------------------------------------------------------------------------------
# building


def build_model(
    config: OspreyConfig,
    *,
    meta: bool = False,
    seed: int | None = None,
    attn_implementation: str = "sdpa",
) -> OspreyModel:
    """A model with random weights (``seed`` makes them reproducible) or, with ``meta=True``, with no
    storage at all (to be filled by :func:`load_state_dict`)."""
    if meta:
        with torch.device("meta"):
            return OspreyModel(config, attn_implementation)
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return OspreyModel(config, attn_implementation)
    return OspreyModel(config, attn_implementation)


def original_key_shapes(config: OspreyConfig | None = None) -> dict[str, tuple[int, ...]]:
    """Original key name -> shape for every tensor of a released checkpoint of this architecture
    (``inv_freq`` buffers excluded), computed on the meta device: nothing is allocated or fetched."""
    model = build_model(config or osprey_7b_config(), meta=True)
    return {to_original_key(k): tuple(v.shape) for k, v in model.state_dict().items()}


def load_state_dict(
    model: OspreyModel, state: dict[str, torch.Tensor], *, device: torch.device | str = "cpu"
) -> None:
    """Strict, assigning load into a (typically meta-built) model, with a readable report."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or wrong:
        lines = []
        if missing:
            lines.append(
                f"missing {len(missing)} keys: "
                + ", ".join(missing[:10])
                + (" ..." if len(missing) > 10 else "")
            )
        if unexpected:
            lines.append(
                f"unexpected {len(unexpected)} keys: "
                + ", ".join(unexpected[:10])
                + (" ..." if len(unexpected) > 10 else "")
            )
        for k in wrong[:10]:
            lines.append(
                f"shape of {k}: checkpoint {tuple(state[k].shape)}, model {tuple(expected[k].shape)}"
            )
        raise CheckpointError(
            "checkpoint does not match the model architecture:\n  " + "\n  ".join(lines)
        )
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    model.load_state_dict(state, strict=True, assign=True)
    for name, param in model.named_parameters():
        param.requires_grad_(name not in frozen)
    reset_rotary(model.llm, device)
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:
        raise CheckpointError(f"tensors left without data after loading: {leftover[:5]}")


def place(model: OspreyModel, device: torch.device | str, dtype: torch.dtype) -> OspreyModel:
    """Move to ``device``; vision, projector and LLM in ``dtype``, the mask extractor and the rotary
    frequencies in fp32."""
    model.to(device=device, dtype=dtype)
    model.mask_extractor.float()
    reset_rotary(model.llm, device)
    return model


# ---------------------------------------------------------------------------------------------
# reading weight files


def weight_files(path: Path) -> list[Path]:
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = path / index_name
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            files = sorted(set(weight_map.values()))
            missing = [f for f in files if not (path / f).is_file()]
            if missing:
                raise CheckpointError(f"{index} lists shards that are not there: {missing}")
            return [path / f for f in files]
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (path / single).is_file():
            return [path / single]
    raise CheckpointError(
        f"no weights in {path} (expected model.safetensors, pytorch_model.bin or a sharded index)"
    )


def read_tensors(files: Iterable[Path]) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) pairs from safetensors or pickle-free ``torch.load`` files, memory-mapped."""
    for file in files:
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(file), framework="pt") as f:
                for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                    yield key, f.get_tensor(key)
        else:
            try:
                state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            except Exception as exc:  # a pickle with code in it, or a corrupt file
                raise CheckpointError(
                    f"cannot read {file} safely (weights_only=True): {exc}"
                ) from exc
            yield from state.items()


def _cast(key: str, tensor: torch.Tensor, device, dtype) -> torch.Tensor:
    target = torch.float32 if key.startswith("mask_extractor.") else dtype
    if not tensor.is_floating_point():
        target = tensor.dtype
    return tensor.to(device=device, dtype=target)


# ---------------------------------------------------------------------------------------------
# configs


def config_from_original(data: dict, base: OspreyConfig | None = None) -> OspreyConfig:
    """Our config for a released ``config.json``. The LLM shape comes from the file; what the file
    does not record (vision tower, extractor, projector input) comes from ``base``, the release's
    architecture by default. ``mm_hidden_size`` is absent from the released files (768 applies),
    and is checked against the tower's res4 width at build time."""
    if data.get("model_type") not in ORIGINAL_MODEL_TYPES:
        raise CheckpointError(
            f"model_type {data.get('model_type')!r} is not one of {ORIGINAL_MODEL_TYPES}"
        )
    cfg = base or osprey_7b_config()
    llm_fields = {f.name for f in fields(LLMConfig)}
    llm = LLMConfig(**{k: v for k, v in data.items() if k in llm_fields and v is not None})
    projector = data.get("mm_projector_type", cfg.projector_type)
    return OspreyConfig(
        vision=cfg.vision,
        extractor=cfg.extractor,
        llm=llm,
        projector_type=projector,
        mask_token_id=cfg.mask_token_id,
        pos_token_id=cfg.pos_token_id,
        model_max_length=cfg.model_max_length,
        template=cfg.template,
        untrained=cfg.untrained,
    )


def original_config_json(config: OspreyConfig, model_type: str = "osprey") -> dict:
    """A ``config.json`` in the released layout for :func:`export_original`."""
    llm = {f.name: getattr(config.llm, f.name) for f in fields(LLMConfig)}
    return {
        "_name_or_path": "Osprey",
        "architectures": ["OspreyLlamaForCausalLM"],
        **llm,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "rope_scaling": None,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.31.0",
        "use_cache": True,
        "freeze_mm_mlp_adapter": False,
        "tune_mm_mlp_adapter": False,
        "use_mm_proj": True,
        "image_aspect_ratio": "pad",
        "image_grid_pinpoints": None,
        "mm_projector_type": config.projector_type,
        "mm_use_im_patch_token": False,
        "mm_use_im_start_end": False,
        "mm_vision_tower": "open_clip_pytorch_model.bin",
        "model_type": model_type,
    }


def checkpoint_kind(path: str | Path) -> str:
    """``"ours"`` or ``"original"``, or a CheckpointError saying what the directory lacks."""
    path = Path(path)
    if (path / OUR_CONFIG).is_file():
        return "ours"
    cfg = path / "config.json"
    if cfg.is_file():
        model_type = json.loads(cfg.read_text()).get("model_type")
        if model_type in ORIGINAL_MODEL_TYPES:
            return "original"
        raise CheckpointError(
            f"{cfg} has model_type {model_type!r}, not an Osprey checkpoint {ORIGINAL_MODEL_TYPES}"
        )
    raise CheckpointError(
        f"{path} holds no {OUR_CONFIG} and no config.json: not an Osprey checkpoint"
    )


# ---------------------------------------------------------------------------------------------
# loading


def _load_vision_from_clip(clip_path: Path, device, dtype) -> dict[str, torch.Tensor]:
    ours, theirs = CLIP_PREFIX
    out = {}
    for key, tensor in read_tensors([clip_path]):
        if key.startswith(theirs):
            out[ours + key[len(theirs) :]] = _cast(ours + key, tensor, device, dtype)
    if not out:
        raise CheckpointError(
            f"{clip_path} has no 'visual.*' tensors: not an open_clip CLIP checkpoint"
        )
    return out


def _check_same_tower(
    embedded: dict[str, torch.Tensor], external: dict[str, torch.Tensor], clip_path: Path
) -> None:
    """The tower is frozen in every stage, so the copy inside the Osprey checkpoint and the CLIP
    file must agree (compared at the checkpoint's precision). The original loader silently took the
    36 layer-scale ``gamma`` tensors from the CLIP file only; a disagreement means a wrong file."""
    bad = [
        k
        for k, v in embedded.items()
        if k in external and not torch.equal(v, external[k].to(v.dtype))
    ]
    if bad:
        raise CheckpointError(
            f"the vision tower inside the checkpoint and {clip_path} disagree on {len(bad)} tensors "
            f"(e.g. {bad[:3]}); pass the CLIP file that belongs to this checkpoint, or none"
        )


def load_osprey(
    path: str | Path,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    clip_path: str | Path | None = None,
    base_config: OspreyConfig | None = None,
    attn_implementation: str = "sdpa",
):
    """Load a checkpoint directory (ours or the released format) -> (OspreyModel, tokenizer).

    ``clip_path``: the open_clip CLIP file, needed when the released checkpoint does not embed the
    tower (and checked against the embedded copy when it does). ``base_config``: architecture parts
    a released ``config.json`` does not record (see :func:`config_from_original`).
    """
    path = Path(path)
    kind = checkpoint_kind(path)
    if kind == "ours":
        config = OspreyConfig.load(path / OUR_CONFIG)
    else:
        config = config_from_original(json.loads((path / "config.json").read_text()), base_config)
    model = build_model(config, meta=True, attn_implementation=attn_implementation)
    state: dict[str, torch.Tensor] = {}
    for key, tensor in read_tensors(weight_files(path)):
        if kind == "original":
            if is_inv_freq(key):
                continue
            key = from_original_key(key)
        state[key] = _cast(key, tensor, device, dtype)
    if kind == "original":
        _merge_clip(state, clip_path, device, dtype)
    load_state_dict(model, state, device=device)
    tokenizer = load_tokenizer(
        path, config.mask_token_id, config.pos_token_id, config.model_max_length
    )
    model.eval()
    return model, tokenizer


def _merge_clip(
    state: dict[str, torch.Tensor], clip_path: str | Path | None, device, dtype
) -> None:
    has_tower = any(k.startswith("vision.visual.trunk.") for k in state)
    if clip_path is None:
        if not has_tower:
            raise CheckpointError(
                "this checkpoint does not embed the CLIP vision tower: pass clip_path (the open_clip "
                "file open_clip_pytorch_model.bin/.safetensors from "
                "laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup)"
            )
        return
    external = _load_vision_from_clip(Path(clip_path), device, dtype)
    if has_tower:
        _check_same_tower(
            {k: v for k, v in state.items() if k.startswith("vision.")}, external, Path(clip_path)
        )
    else:
        state.update(external)


# ---------------------------------------------------------------------------------------------
# saving


def save_tokenizer(tokenizer, path: Path) -> None:
    """transformers writes tokenizer.json; keep the SentencePiece ``tokenizer.model`` beside it, as
    in the released directories (the slow files are the ones that survive transfers, issue #39)."""
    import shutil

    tokenizer.save_pretrained(str(path))
    source = getattr(tokenizer, "vocab_file", None)
    if (
        source
        and Path(source).is_file()
        and Path(source).resolve() != (path / "tokenizer.model").resolve()
    ):
        shutil.copyfile(source, path / "tokenizer.model")


def save_osprey(
    model: OspreyModel,
    tokenizer,
    path: str | Path,
    *,
    max_shard_size: str = "5GB",
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Save in our format: osprey_config.json + safetensors (sharded above ``max_shard_size``) +
    tokenizer files. :func:`load_osprey` rebuilds the model from the directory alone.

    ``state_dict`` replaces ``model.state_dict()`` when the weights live elsewhere (a trainer
    that gathered them from DeepSpeed ZeRO-3 or FSDP shards)."""
    from huggingface_hub import save_torch_state_dict

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.config.save(path / OUR_CONFIG)
    source = model.state_dict() if state_dict is None else state_dict
    state = {k: v.detach().contiguous() for k, v in source.items()}
    save_torch_state_dict(state, path, max_shard_size=max_shard_size)
    save_tokenizer(tokenizer, path)
    return path


def export_original(
    model: OspreyModel,
    tokenizer,
    path: str | Path,
    *,
    model_type: str = "osprey",
    shards: int = 2,
    dtype: torch.dtype = torch.bfloat16,
) -> Path:
    """Write the released on-disk format: original key names (with the 32 ``inv_freq`` buffers the
    original persisted), ``pytorch_model-0000i-of-0000n.bin`` shards + index, an original-style
    config.json and the tokenizer files with ``added_tokens.json``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {
        to_original_key(k): v.detach().to("cpu", dtype).contiguous()
        for k, v in model.state_dict().items()
    }
    cfg = model.config.llm
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, head_dim, 2).float() / head_dim))
    for i in range(cfg.num_hidden_layers):
        state[f"model.layers.{i}.self_attn.rotary_emb.inv_freq"] = inv_freq.clone()
    keys = list(state)
    per_shard = -(-len(keys) // shards)
    weight_map, total = {}, 0
    for s in range(shards):
        name = f"pytorch_model-{s + 1:05d}-of-{shards:05d}.bin"
        part = {k: state[k] for k in keys[s * per_shard : (s + 1) * per_shard]}
        torch.save(part, path / name)
        for k, v in part.items():
            weight_map[k] = name
            total += v.numel() * v.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (path / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2))
    (path / "config.json").write_text(
        json.dumps(original_config_json(model.config, model_type), indent=2)
    )
    save_tokenizer(tokenizer, path)
    added = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<mask>", "<pos>")}
    (path / "added_tokens.json").write_text(json.dumps(added))
    return path
