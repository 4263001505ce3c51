"""TrainConfig: everything a training run needs, from a stage file plus ``--key=value`` overrides.

Stage presets live in ``osprey/train/configs/*.json`` (``stage1``, ``stage2``, ``stage3``,
``stage3_chat``, ``finetune_lora``); ``--config`` takes a preset name or a path. Overrides are
validated against the fields below: an unknown key is an error that suggests the closest names.
Relative dataset paths resolve against ``data_root``; model paths are taken as given.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from osprey.core.errors import OspreyError

PRESETS = Path(__file__).parent / "configs"


class ConfigError(OspreyError, ValueError):
    """A config file or override that does not fit TrainConfig."""


@dataclass
class TrainConfig:
    # -- what to train, on what ------------------------------------------------------------------
    stage: int = 3  # 1: projector, 2: mask extractor, 3: LLM + projector + extractor (stages.py)
    datasets: list[dict] = field(default_factory=list)  # specs, see osprey.data.registry
    data_root: str = "data"
    output_dir: str = "runs/osprey"
    # -- where the initial weights come from (exactly one of model_path / llm_path) -------------
    model_path: str | None = None  # Osprey checkpoint (ours or released) or "tiny-random"
    llm_path: str | None = None  # a LLaMA-family HF checkpoint dir (Vicuna-7B v1.5, ...)
    llm_gguf_file: str | None = None  # a .gguf file name inside llm_path
    clip_path: str | None = None  # open_clip CLIP file (ConvNeXt-L tower)
    projector_path: str | None = None  # stage-1 mm_projector.bin (original key names accepted)
    vision_arch: str = "release"  # tower when building from llm_path: "release" or "tiny"
    # -- tokenisation ------------------------------------------------------------------------------
    template: str = "vicuna_v1"
    model_max_length: int = 2048
    # -- optimisation (HF Trainer semantics) -----------------------------------------------------
    learning_rate: float = 1e-5
    num_train_epochs: float = 1.0
    max_steps: int = -1
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    warmup_ratio: float = 0.03
    lr_scheduler_type: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    optim: str = "adamw_torch"
    bf16: bool = True
    tf32: bool = True
    gradient_checkpointing: bool = True
    attn_implementation: str = "auto"  # auto: flash_attention_2 where installed on CUDA, else sdpa
    seed: int = 42
    dataloader_num_workers: int = 4
    # -- saving and logging --------------------------------------------------------------------
    save_steps: int = 2000
    save_total_limit: int | None = 1
    logging_steps: int = 1
    report_to: str = "tensorboard"  # "none", "tensorboard", "wandb", ...
    resume_from_checkpoint: str | None = None  # a checkpoint dir, or "auto" (latest, if any)
    export_original: bool = False  # also write the released format to output_dir/original
    # -- scale-out -------------------------------------------------------------------------------
    deepspeed: str | None = None  # "zero2", "zero3" or a DeepSpeed JSON path
    fsdp: str = ""  # e.g. "full_shard auto_wrap" (torchrun / accelerate launch)
    fsdp_config: dict | None = None
    use_cpu: bool | None = None  # None: CPU only when no CUDA device is present
    # -- parameter-efficient fine-tuning ---------------------------------------------------------
    lora: bool = False
    lora_r: int = 64
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    bits: int = 16  # 4 or 8: QLoRA (needs bitsandbytes and CUDA)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


# ---------------------------------------------------------------------------------------------
# values


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _hints() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _unknown(keys: set[str]) -> str:
    known = [f.name for f in fields(TrainConfig)]
    parts = []
    for key in sorted(keys):
        close = difflib.get_close_matches(key, known, n=3)
        parts.append(f"{key!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    return "unknown config keys: " + "; ".join(parts)


def coerce(key: str, value: Any, hint: Any) -> Any:
    """``value`` (from JSON or a command-line string) as the type ``hint`` of field ``key``."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        (hint,) = [a for a in args if a is not type(None)]
    base = typing.get_origin(hint) or hint
    if isinstance(value, str) and base in (list, dict):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{key}: expected JSON for a {base.__name__}, got {value!r}") from exc
    if base is bool and isinstance(value, str):
        if value.lower() not in _TRUE | _FALSE:
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value.lower() in _TRUE
    if (
        base in (int, float)
        and isinstance(value, (str, int, float))
        and not isinstance(value, bool)
    ):
        try:
            number = float(value)
        except ValueError as exc:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from exc
        if base is int and number != int(number):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return base(number)
    if not isinstance(value, base):
        raise ConfigError(f"{key}: expected {base.__name__}, got {type(value).__name__} {value!r}")
    return value


def from_dict(data: dict[str, Any]) -> TrainConfig:
    unknown = set(data) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise ConfigError(_unknown(unknown))
    hints = _hints()
    return TrainConfig(**{k: coerce(k, v, hints[k]) for k, v in data.items()})


def load_config(name_or_path: str | Path) -> TrainConfig:
    """A preset name (``stage2``) or a JSON file path."""
    path = Path(name_or_path)
    if not path.is_file():
        preset = PRESETS / f"{name_or_path}.json"
        if not preset.is_file():
            names = sorted(p.stem for p in PRESETS.glob("*.json") if not p.stem.startswith("zero"))
            raise ConfigError(
                f"no config file {path} and no preset {name_or_path!r}; presets: {names}"
            )
        path = preset
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    return from_dict(data)


def with_overrides(config: TrainConfig, overrides: dict[str, str]) -> TrainConfig:
    unknown = set(overrides) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise ConfigError(_unknown(unknown))
    hints = _hints()
    data = config.to_dict()
    data.update({k: coerce(k, v, hints[k]) for k, v in overrides.items()})
    return TrainConfig(**data)


# ---------------------------------------------------------------------------------------------
# command line


def split_argv(argv: list[str]) -> tuple[str, dict[str, str]]:
    """``["--config", "stage2", "--learning_rate=1e-4", "--bf16", "false", "--lora"]`` ->
    ("stage2", {"learning_rate": "1e-4", "bf16": "false", "lora": "true"})."""
    config, overrides, i = None, {}, 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}: use --key=value")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if nxt is None or nxt.startswith("--"):
                value = "true"
            else:
                value, i = nxt, i + 1
        key = key.replace("-", "_")
        if key == "config":
            config = value
        else:
            overrides[key] = value
        i += 1
    if config is None:
        raise ConfigError("--config is required (a preset such as stage2, or a JSON file)")
    return config, overrides


def parse_args(argv: list[str]) -> TrainConfig:
    name, overrides = split_argv(argv)
    return with_overrides(load_config(name), overrides)


def describe_fields() -> str:
    """One line per field with its default, for ``--help``."""
    lines = []
    for f in fields(TrainConfig):
        default = f.default_factory() if callable(f.default_factory) else f.default
        lines.append(f"  --{f.name}={json.dumps(default)}")
    return "\n".join(lines)
