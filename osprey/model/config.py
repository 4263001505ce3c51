"""Architecture configuration. It travels with the weights (``osprey_config.json``) and holds no
filesystem paths: a checkpoint directory rebuilds its model from this file alone."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from osprey.core import constants as C


@dataclass
class VisionConfig:
    """The CLIP ConvNeXt image tower, built as open_clip's ``TimmModel`` (trunk + unused head).

    ``clip_model`` names the open_clip model whose weights fit (``convnext_large_d_320`` for the
    release); ``timm_model`` is the trunk that open_clip builds for it. Channel counts are read from
    the trunk, never typed in.
    """

    clip_model: str = "convnext_large_d_320"
    timm_model: str = "convnext_large"
    embed_dim: int = 768  # open_clip head output: present in the weights, unused by Osprey
    head_proj: str = "mlp"
    image_size: int = C.IMAGE_SIZE
    image_token_level: str = "res4"


@dataclass
class ExtractorConfig:
    """The mask-aware visual extractor (per-level mask pooling + position MLP)."""

    embed_dim: int = 1024
    mask_shape: int = C.MASK_SHAPE
    levels: tuple[str, ...] = ("res2", "res3", "res4", "res5")


@dataclass
class LLMConfig:
    """The LLaMA-family language model (fields map 1:1 onto transformers' ``LlamaConfig``)."""

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 32
    max_position_embeddings: int = 4096
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    hidden_act: str = "silu"
    tie_word_embeddings: bool = False
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int = 0


@dataclass
class OspreyConfig:
    """Everything needed to rebuild an Osprey model."""

    vision: VisionConfig = field(default_factory=VisionConfig)
    extractor: ExtractorConfig = field(default_factory=ExtractorConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    projector_type: str = "mlp2x_gelu"
    mask_token_id: int = C.MASK_TOKEN_ID
    pos_token_id: int = C.POS_TOKEN_ID
    model_max_length: int = C.MODEL_MAX_LENGTH
    template: str = "osprey_v1"
    untrained: bool = False  # True for random-weight models: every UI and CLI says so

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json_string(self) -> str:
        """The config as JSON (the name transformers' logging integrations call, e.g.
        TensorBoard's, which records the model config of a training run)."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OspreyConfig:
        """Strict: unknown keys are an error (a config from a newer version says so loudly)."""
        subs = {"vision": VisionConfig, "extractor": ExtractorConfig, "llm": LLMConfig}
        _check_keys(cls, data, "OspreyConfig")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in subs:
                _check_keys(subs[key], value, key)
                value = subs[key](**value)
                if isinstance(value, ExtractorConfig):
                    value.levels = tuple(value.levels)
            kwargs[key] = value
        return cls(**kwargs)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> OspreyConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


def _check_keys(klass: type, data: dict[str, Any], what: str) -> None:
    known = {f.name for f in fields(klass)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {what} fields {sorted(unknown)}; known: {sorted(known)}")


# ---------------------------------------------------------------------------------------------
# presets


def osprey_7b_config() -> OspreyConfig:
    """The released Osprey-7b / Osprey-Chat-7b architecture (Vicuna-7B v1.5 + ConvNeXt-L)."""
    return OspreyConfig()


def tiny_config() -> OspreyConfig:
    """A tiny model with the release's structure and geometry (512 px input, 1024 image tokens,
    112x112 position mask, vocab 32000 + <mask>/<pos> = 32000/32001) for tests and offline
    development. Its weights are random: its answers are meaningless."""
    return OspreyConfig(
        vision=VisionConfig(
            clip_model="convnext_atto (tiny)", timm_model="convnext_atto", embed_dim=32
        ),
        extractor=ExtractorConfig(embed_dim=32),
        llm=LLMConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
        ),
        untrained=True,
    )
