"""Meta's SAM 2 state dicts (the ``sam2`` package, its ``.pt`` releases) in transformers' key names.

The renames are the facts of transformers' own conversion script for SAM 2
(``models/sam2/convert_sam2_to_hf.py``): an ordered list of substring renames, then positional
renames of the small MLPs (``layers.0/1/2`` -> ``proj_in`` / ``layers.0`` / ``proj_out``), then two
merges (the four point embeddings become one table; the prompt encoder's Gaussian matrix is also
the model's shared image embedding). Meta's model holds the video parts too (memory attention,
memory encoder, object pointers); they convert to :class:`transformers.Sam2VideoModel`'s names,
which the image model's loader recognises and leaves out.

Used to check that the transformers model the bridge runs computes what Meta's does (the parity
test) and to convert a state dict a user has already unpickled safely. Pure torch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

# Substring renames, applied in this order to every key (later rules see earlier results).
RENAMES: tuple[tuple[str, str], ...] = (
    ("iou_prediction_head.layers.0", "iou_prediction_head.proj_in"),
    ("iou_prediction_head.layers.1", "iou_prediction_head.layers.0"),
    ("iou_prediction_head.layers.2", "iou_prediction_head.proj_out"),
    ("mask_decoder.output_upscaling.0", "mask_decoder.upscale_conv1"),
    ("mask_decoder.output_upscaling.1", "mask_decoder.upscale_layer_norm"),
    ("mask_decoder.output_upscaling.3", "mask_decoder.upscale_conv2"),
    ("mask_downscaling.0", "mask_embed.conv1"),
    ("mask_downscaling.1", "mask_embed.layer_norm1"),
    ("mask_downscaling.3", "mask_embed.conv2"),
    ("mask_downscaling.4", "mask_embed.layer_norm2"),
    ("mask_downscaling.6", "mask_embed.conv3"),
    ("dwconv", "depthwise_conv"),
    ("pwconv", "pointwise_conv"),
    ("fuser", "memory_fuser"),
    ("point_embeddings", "point_embed"),
    ("pe_layer.positional_encoding_gaussian_matrix", "shared_embedding.positional_embedding"),
    ("obj_ptr_tpos_proj", "temporal_positional_encoding_projection_layer"),
    ("no_obj_embed_spatial", "occlusion_spatial_embedding_parameter"),
    ("sam_prompt_encoder", "prompt_encoder"),
    ("sam_mask_decoder", "mask_decoder"),
    ("maskmem_tpos_enc", "memory_temporal_positional_encoding"),
    ("gamma", "scale"),
    ("image_encoder.neck", "vision_encoder.neck"),
    ("image_encoder", "vision_encoder.backbone"),
    ("pix_feat_proj", "feature_projection"),
    ("patch_embed.proj", "patch_embed.projection"),
    ("no_mem_embed", "no_memory_embedding"),
    ("no_mem_pos_enc", "no_memory_positional_encoding"),
    ("obj_ptr", "object_pointer"),
    (".norm", ".layer_norm"),
    ("trunk.", ""),
    ("out_proj", "o_proj"),
)
_THREE_LAYERS = {"0": "proj_in", "1": "layers.0", "2": "proj_out"}  # a 3-layer MLP's layers
_TWO_LAYERS = {"0": "proj_in", "1": "proj_out"}
# (pattern on the renamed key, what its `layers.<i>` becomes)
_MLPS: tuple[tuple[re.Pattern[str], dict[str, str]], ...] = (
    (re.compile(r"^vision_encoder\.backbone\.blocks\.\d+\.mlp\.layers\.(\d)\."), _TWO_LAYERS),
    (re.compile(r"^mask_decoder\.transformer\.layers\.\d+\.mlp\.layers\.(\d)\."), _TWO_LAYERS),
    (re.compile(r"^mask_decoder\.pred_obj_score_head\.layers\.(\d)\."), _THREE_LAYERS),
    (re.compile(r"\.output_hypernetworks_mlps\.\d+\.layers\.(\d)\."), _THREE_LAYERS),
    (re.compile(r"^object_pointer_proj\.layers\.(\d)\."), _THREE_LAYERS),
)
POINT_EMBEDDINGS = 4  # positive, negative, box corner 1, box corner 2
# The memory encoder's mask downsampler: Meta's Sequential of (conv, norm, activation) triples and
# a final 1x1 conv, named by position; transformers names the triples' layers and the last conv.
_DOWNSAMPLER = re.compile(r"^memory_encoder\.mask_downsampler\.encoder\.(\d+)\.(.+)$")


def convert_key(key: str) -> str:
    """One of Meta's key names -> transformers' (before the two merges of :func:`convert`)."""
    for old, new in RENAMES:
        key = key.replace(old, new)
    for pattern, names in _MLPS:
        found = pattern.search(key)
        if found:  # rename the matched `layers.<i>.` (the last part of the match) only
            start = found.end() - len(f"layers.{found.group(1)}.")
            key = f"{key[:start]}{names[found.group(1)]}.{key[found.end() :]}"
            break
    if re.match(r"^vision_encoder\.neck\.convs\.\d+\.conv\.", key):
        key = key.replace(".conv.", ".", 1)
    if key.startswith("memory_encoder.o_proj."):
        key = key.replace(".o_proj.", ".projection.", 1)
    return key


def _downsampler(keys: list[str]) -> dict[str, str]:
    """Renames of the mask downsampler's positional keys: index 3i -> ``layers.i.conv``, 3i + 1
    -> ``layers.i.layer_norm``, the last index -> ``final_conv``."""
    found = [(key, _DOWNSAMPLER.match(key)) for key in keys]
    found = [(key, int(m.group(1)), m.group(2)) for key, m in found if m]
    if not found:
        return {}
    last = max(index for _, index, _ in found)
    base = "memory_encoder.mask_downsampler."
    return {
        key: base + ("final_conv" if index == last else
                     f"layers.{index // 3}.{('conv', 'layer_norm')[index % 3]}") + f".{rest}"
        for key, index, rest in found
    }  # fmt: skip


def convert(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Meta's SAM 2 state dict -> transformers' (:class:`transformers.Sam2VideoModel` names;
    :class:`transformers.Sam2Model` uses a subset). Raises ValueError on a key that two source
    keys would both become, or when a point embedding is missing."""
    downsampler = _downsampler([convert_key(key) for key in state])
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = convert_key(key)
        new = downsampler.get(new, new)
        if new in out:
            raise ValueError(f"two keys of the SAM 2 state dict both become {new!r}")
        out[new] = value
    names = [f"prompt_encoder.point_embed.{i}.weight" for i in range(POINT_EMBEDDINGS)]
    missing = [n for n in names if n not in out]
    if missing:
        raise ValueError(f"not a SAM 2 state dict: {missing[0]!r} is missing")
    out["prompt_encoder.point_embed.weight"] = torch.cat([out.pop(n) for n in names], dim=0)
    gaussian = out["prompt_encoder.shared_embedding.positional_embedding"]
    out["shared_image_embedding.positional_embedding"] = gaussian.clone()
    return out
