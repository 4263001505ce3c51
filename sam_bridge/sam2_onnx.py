"""SAM 2.1's prompt encoder + mask decoder as an ONNX file, for the page to run (onnxruntime-web),
computing what :class:`~sam_bridge.sam2_family.Sam2Family` computes on the server.

The graph is SAM 1's page decoder's (:mod:`sam_bridge.onnx_export`) with SAM 2's extra inputs:

* ``image_embeddings`` float32 (1, C, 64, 64), ``high_res_feats_0`` (1, C/8, 256, 256) and
  ``high_res_feats_1`` (1, C/4, 128, 128): the image's three maps (:meth:`SamBridge.page_embedding`);
* ``point_coords`` float32 (1, N, 2) in SAM 2's 1024 frame (x * 1024 / W, y * 1024 / H), box
  corners as two more points; ``point_labels`` float32 (1, N): 1 / 0 for clicks, 2 / 3 for the box
  corners, and one padding point labelled -1 **always** (SAM 2 adds one whether or not there is
  a box; the page puts it last);
* ``mask_input`` float32 (1, 1, 256, 256) and ``has_mask_input`` float32 (1,): the previous
  low-resolution logits to refine, or zeros and 0;
* ``orig_im_size`` float32 (2,): (h, w) of the masks wanted (the display size in the page);

and returns ``masks`` (1, 4, h, w) logits (> 0 is inside), ``iou_predictions`` (1, 4) and
``low_res_masks`` (1, 4, 256, 256) (clamped to +-32, as the server hands them back). Output 0 is
SAM 2's single-mask answer (its own mask unless that is unstable, then the best of the three:
SAM 2's dynamic choice), 1..3 its three candidates. One decoder pass gives all four.

The file is cached by a hash of the prompt encoder's and mask decoder's weights and the opset.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from transformers import Sam2Model

from sam_bridge.onnx_export import DEFAULT_CACHE, OPSET, OUTPUTS, _replaced, eight_bit

LOGIT_CLAMP = 32.0  # the logits handed back for refinement are clamped to +-32, as Meta's are

INPUTS = (
    "image_embeddings",
    "high_res_feats_0",
    "high_res_feats_1",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "orig_im_size",
)
WRAPPER = "sam2-page-decoder-2"  # part of the file's hash: a new wrapper, a new file

# ---------------------------------------------------------------------------------------------
# the graph


class Sam2PageDecoder(nn.Module):
    """SAM 2's prompt embedding and mask decoder over transformers' modules, written for a
    traced export: no Python branches on the inputs, all four mask tokens decoded at once."""

    def __init__(self, model: Sam2Model):
        super().__init__()
        self.prompt = model.prompt_encoder
        self.decoder = model.mask_decoder
        self.image_embedding = model.shared_image_embedding
        self.size = float(model.prompt_encoder.input_image_size)
        config = model.config.mask_decoder_config
        self.stability_delta = config.dynamic_multimask_stability_delta
        self.stability_thresh = config.dynamic_multimask_stability_thresh

    def image_pe(self, like: torch.Tensor) -> torch.Tensor:
        """The positional encoding of the embedding grid (1, C, 64, 64), as
        ``Sam2Model.get_image_wide_positional_embeddings`` computes it, from a grid of ones made
        from the input ``like`` so the exporter keeps this small computation in the graph instead
        of folding it into a 4 MiB constant of the file."""
        ones = torch.ones_like(like[0, 0])  # (64, 64)
        y = (ones.cumsum(0) - 0.5) / ones.shape[0]
        x = (ones.cumsum(1) - 0.5) / ones.shape[1]
        return self.image_embedding(torch.stack([x, y], dim=-1)).permute(2, 0, 1)[None]

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(1, N, 2) frame coordinates, (1, N) labels -> sparse embeddings (1, 1, N, C): the
        Fourier features of the point's pixel centre, the not-a-point embedding for -1, plus the
        label's embedding (0 / 1 clicks, 2 / 3 box corners)."""
        p = self.prompt
        shifted = (coords + 0.5)[:, None]  # (1, 1, N, 2)
        features = p.shared_embedding(shifted, (self.size, self.size))
        labels = labels[:, None, :, None]  # (1, 1, N, 1)
        features = torch.where(labels == -1, p.not_a_point_embed.weight, features)
        index = labels.clamp(min=0).long()[..., 0]
        return features + p.point_embed(index) * (labels >= 0).to(features.dtype)

    def embed_mask(self, mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        """(1, 1, 256, 256) logits -> dense embeddings (1, C, 64, 64), or the no-mask embedding."""
        p = self.prompt
        given = p.mask_embed(mask_input) * has_mask_input
        return given + p.no_mask_embed.weight.reshape(1, -1, 1, 1) * (1 - has_mask_input)

    def all_masks(self, emb, hr0, hr1, sparse, dense) -> tuple[torch.Tensor, torch.Tensor]:
        """The mask decoder for all its mask tokens: logits (1, 4, 256, 256), IoUs (1, 4)."""
        d = self.decoder
        tokens = torch.cat([d.obj_score_token.weight, d.iou_token.weight, d.mask_tokens.weight])
        tokens = torch.cat([tokens[None, None], sparse], dim=2)  # (1, 1, 2 + 4 + N, C)
        queries, keys = d.transformer(
            point_embeddings=tokens, image_embeddings=emb + dense,
            image_positional_embeddings=self.image_pe(emb), attention_similarity=None,
        )  # fmt: skip
        count = d.num_mask_tokens
        grid = keys.transpose(2, 3).reshape(emb.shape)  # (1, C, 64, 64)
        up = d.activation(d.upscale_layer_norm(d.upscale_conv1(grid) + hr1))
        up = d.activation(d.upscale_conv2(up) + hr0)  # (1, C/8, 256, 256)
        hyper = torch.stack(
            [d.output_hypernetworks_mlps[i](queries[:, 0, 2 + i]) for i in range(count)], dim=1
        )  # (1, 4, C/8)
        low = (hyper @ up.flatten(2)).reshape(1, count, *up.shape[-2:])
        return low, d.iou_prediction_head(queries[:, 0, 1])

    def single(self, low: torch.Tensor, iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Output 0: SAM 2's own single mask where stable (IoU of its area above +delta and
        above -delta at least the threshold), else the best-scoring of the three candidates."""
        first = low[:, :1].flatten(2)
        inside = (first > self.stability_delta).sum(-1).float()
        union = (first > -self.stability_delta).sum(-1).float()
        stable = torch.where(union > 0, inside / union.clamp(min=1), torch.ones_like(union))
        stable = stable >= self.stability_thresh  # (1, 1)
        best = iou[:, 1:].argmax(-1, keepdim=True) + 1  # (1, 1)
        best_low = torch.gather(low, 1, best[..., None, None].expand(-1, -1, *low.shape[-2:]))
        single_low = torch.where(stable[..., None, None], low[:, :1], best_low)
        single_iou = torch.where(stable, iou[:, :1], torch.gather(iou, 1, best))
        return torch.cat([single_low, low[:, 1:]], 1), torch.cat([single_iou, iou[:, 1:]], 1)

    def forward(self, image_embeddings, high_res_feats_0, high_res_feats_1, point_coords,
                point_labels, mask_input, has_mask_input, orig_im_size):  # fmt: skip
        sparse = self.embed_points(point_coords, point_labels)
        dense = self.embed_mask(mask_input, has_mask_input)
        low, iou = self.all_masks(
            image_embeddings, high_res_feats_0, high_res_feats_1, sparse, dense
        )
        low, iou = self.single(low, iou)
        h, w = orig_im_size.to(torch.int64)[0], orig_im_size.to(torch.int64)[1]
        masks = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
        return masks, iou, low.clamp(-LOGIT_CLAMP, LOGIT_CLAMP)


# ---------------------------------------------------------------------------------------------
# export


def decoder_key(model: Sam2Model, opset: int = OPSET) -> str:
    """16 hex digits naming the decoder: a SHA-256 of the prompt encoder's and mask decoder's
    tensors (names, shapes, bytes), the positional-encoding matrix, the opset and the wrapper."""
    digest = hashlib.sha256(f"opset={opset};wrapper={WRAPPER}".encode())
    parts = {"prompt_encoder": model.prompt_encoder, "mask_decoder": model.mask_decoder,
             "shared_image_embedding": model.shared_image_embedding}  # fmt: skip
    for prefix, module in parts.items():
        for name, tensor in module.state_dict().items():
            t = tensor.detach().to("cpu", torch.float32).contiguous()
            digest.update(f"{prefix}.{name}{tuple(t.shape)}".encode())
            digest.update(t.numpy().tobytes())
    return digest.hexdigest()[:16]


def example_inputs(model: Sam2Model) -> tuple[torch.Tensor, ...]:
    """Inputs of the right shapes (random values) for tracing and tests."""
    c = model.config.mask_decoder_config.hidden_size
    grid = model.prompt_encoder.image_embedding_size
    low = model.prompt_encoder.mask_input_size
    return (
        torch.randn(1, c, *grid),
        torch.randn(1, c // 8, 4 * grid[0], 4 * grid[1]),
        torch.randn(1, c // 4, 2 * grid[0], 2 * grid[1]),
        torch.randint(0, 1024, (1, 5, 2), dtype=torch.float),
        torch.tensor([[1.0, 0.0, 2.0, 3.0, -1.0]]),
        torch.randn(1, 1, *low),
        torch.tensor([1.0]),
        torch.tensor([1500.0, 2250.0]),
    )


def export_decoder(model: Sam2Model, path: str | Path, opset: int = OPSET) -> Path:
    """Write the page decoder of ``model`` to ``path`` (float32, any number of points), through
    a temporary file renamed into place. Takes a few seconds on a CPU."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = Sam2PageDecoder(model).eval()
    device = next(model.mask_decoder.parameters()).device
    example = tuple(t.to(device) for t in example_inputs(model))
    with _replaced(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python values in the graph
        torch.onnx.export(
            wrapper, example, tmp, input_names=list(INPUTS), output_names=list(OUTPUTS),
            opset_version=opset, do_constant_folding=True, dynamo=False,
            dynamic_axes={"point_coords": {1: "points"}, "point_labels": {1: "points"}},
        )  # fmt: skip
    return path


def cached_decoder(
    model: Sam2Model, model_type: str, directory: str | Path | None = None, opset: int = OPSET,
    quantize: bool | None = None,
) -> Path:  # fmt: skip
    """The page decoder of ``model`` in ``directory`` (default: a folder in the temp dir), built
    on the first call: ``sam2_<model_type>_decoder_<hash>_op<opset>.onnx``; with ``quantize`` (the
    default for trained models, not for the tiny random one) its 8-bit form ``..._int8.onnx``,
    as for SAM 1 (the float32 file where quantization fails)."""
    directory = Path(directory) if directory is not None else DEFAULT_CACHE
    safe = "".join(c if c.isalnum() or c in "-." else "-" for c in model_type)
    path = directory / f"sam2_{safe}_decoder_{decoder_key(model, opset)}_op{opset}.onnx"
    if not path.is_file():
        export_decoder(model, path, opset)
    return eight_bit(path, not model_type.endswith("-random") if quantize is None else quantize)
