"""SAM's prompt encoder + mask decoder as an ONNX file, for the page to run (onnxruntime-web).

The export is segment_anything's own :class:`~segment_anything.utils.onnx.SamOnnxModel` through
torch's TorchScript exporter (``dynamo=False``: the dynamo exporter needs ``onnxscript``), so the
page computes exactly what :class:`~sam_bridge.decoder.PromptDecoder` computes on the server.
The file is built once and cached, named by a hash of the decoder's weights and the opset: the
same weights always give the same file, new weights a new one.

The graph (``return_single_mask=False``) takes

* ``image_embeddings`` float32 (1, C, 64, 64): the image embedding (:meth:`SamBridge.embedding`);
* ``point_coords`` float32 (1, N, 2): points in SAM's 1024 frame (``ResizeLongestSide``),
  box corners as two more points; ``point_labels`` float32 (1, N): 1 / 0 for positive / negative
  clicks, 2 / 3 for the box corners, -1 for the padding point added when there is no box;
* ``mask_input`` float32 (1, 1, 256, 256) and ``has_mask_input`` float32 (1,): the previous
  low-resolution logits to refine, or zeros and 0;
* ``orig_im_size`` float32 (2,): (h, w) of the masks wanted (the display size in the page);

and returns ``masks`` (1, 4, h, w) logits (> 0 is inside), ``iou_predictions`` (1, 4) and
``low_res_masks`` (1, 4, 256, 256). Output 0 is SAM's single-mask answer, 1..3 its three
candidates (sub-part, part, whole).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.onnx import SamOnnxModel
from torch.nn import functional as F

OPSET = 17
INPUTS = (
    "image_embeddings",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "orig_im_size",
)
OUTPUTS = ("masks", "iou_predictions", "low_res_masks")
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "osprey-sam-onnx"


@dataclass(frozen=True, eq=False)
class PageEmbedding:
    """What the page needs of an image to decode its clicks itself."""

    features: np.ndarray  # float16 (1, C, 64, 64): SAM's image embedding
    original_size: tuple[int, int]  # (H, W) of the image
    input_size: tuple[int, int]  # (h, w) in SAM's 1024 frame (SAM 2: always (1024, 1024))
    # SAM 2's high-resolution maps, float16 (1, C/8, 256, 256) and (1, C/4, 128, 128); SAM 1: none
    high_res: tuple[np.ndarray, ...] = ()

    @property
    def maps(self) -> tuple[np.ndarray, ...]:
        """Every map the page's decoder reads, embedding first."""
        return (self.features, *self.high_res)


# ---------------------------------------------------------------------------------------------
# helpers


class _PageDecoder(SamOnnxModel):
    """SamOnnxModel with the crop of its mask upscaling kept dynamic.

    Upstream crops the 1024x1024 upscaled logits with ``masks[..., : int(size[0]), ...]``; the
    tracer turns those ``int()`` into constants of the example input, so every other aspect
    ratio would be cropped wrongly (up to 0.26 off the torch logits). Gathering the kept rows and
    columns with ``arange`` keeps the size a graph value. Everything else is upstream's."""

    def mask_postprocessing(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        size = (self.img_size, self.img_size)
        masks = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
        kept = self.resize_longest_image_size(orig_im_size, self.img_size)  # (h, w) before padding
        rows = torch.arange(kept[0], device=masks.device)
        cols = torch.arange(kept[1], device=masks.device)
        masks = masks.index_select(2, rows).index_select(3, cols)
        h, w = orig_im_size.to(torch.int64)[0], orig_im_size.to(torch.int64)[1]
        return F.interpolate(masks, size=(h, w), mode="bilinear", align_corners=False)


@contextmanager
def _replaced(path: Path) -> Iterator[str]:
    """A temporary file beside ``path`` to write, renamed onto ``path`` when the block ends
    without error and removed otherwise: a crash never leaves a half-written file."""
    fd, tmp = tempfile.mkstemp(suffix=".onnx.part", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def decoder_key(model: Sam, opset: int = OPSET) -> str:
    """16 hex digits naming the decoder: a SHA-256 of the prompt encoder's and mask decoder's
    tensors (names, shapes, bytes), the opset and segment_anything's wrapper version."""
    digest = hashlib.sha256(f"opset={opset};wrapper=SamOnnxModel-1.0+crop".encode())
    for prefix in ("prompt_encoder", "mask_decoder"):
        for name, tensor in getattr(model, prefix).state_dict().items():
            t = tensor.detach().to("cpu", torch.float32).contiguous()
            digest.update(f"{prefix}.{name}{tuple(t.shape)}".encode())
            digest.update(t.numpy().tobytes())
    return digest.hexdigest()[:16]


def _example_inputs(model: Sam) -> tuple[torch.Tensor, ...]:
    dim = model.prompt_encoder.embed_dim
    grid = model.prompt_encoder.image_embedding_size
    low = model.prompt_encoder.mask_input_size
    return (
        torch.randn(1, dim, *grid),
        torch.randint(0, 1024, (1, 5, 2), dtype=torch.float),
        torch.randint(0, 4, (1, 5), dtype=torch.float),
        torch.randn(1, 1, *low),
        torch.tensor([1], dtype=torch.float),
        torch.tensor([1500, 2250], dtype=torch.float),
    )


# ---------------------------------------------------------------------------------------------
# public API


def export_decoder(model: Sam, path: str | Path, opset: int = OPSET) -> Path:
    """Write SAM's prompt encoder + mask decoder (+ mask upscaling) of ``model`` to ``path`` as
    ONNX (float32, any number of points). Written to a temporary file and renamed into place, so
    a crash never leaves a half-written file. Takes about a second on a CPU."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = _PageDecoder(model, return_single_mask=False).eval()
    device = next(model.mask_decoder.parameters()).device  # exported where it is (no copy)
    example = tuple(t.to(device) for t in _example_inputs(model))
    with _replaced(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints in the graph
        torch.onnx.export(
            wrapper, example, tmp, input_names=list(INPUTS),
            output_names=list(OUTPUTS), opset_version=opset, do_constant_folding=True,
            dynamic_axes={"point_coords": {1: "points"}, "point_labels": {1: "points"}},
            dynamo=False,
        )  # fmt: skip
    return path


def quantize_decoder(source: str | Path, path: str | Path) -> Path:
    """``source`` with its matrix weights in 8 bits (onnxruntime's dynamic quantization with the
    settings of segment_anything's ``scripts/export_onnx_model.py``: unsigned 8-bit, one scale
    per tensor): a quarter of the size (16.5 -> 4.7 MB for ViT-B) and faster in the page's
    WebAssembly. Written to a temporary file and renamed into place."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = Path(path)
    root = logging.getLogger()  # quantize_dynamic logs a "consider pre-processing" advice there
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        with _replaced(path) as tmp:
            quantize_dynamic(
                str(source), tmp, per_channel=False, reduce_range=False,
                weight_type=QuantType.QUInt8,
            )  # fmt: skip
    finally:
        root.setLevel(level)
    return path


def cached_decoder(
    model: Sam, model_type: str, directory: str | Path | None = None, opset: int = OPSET,
    quantize: bool | None = None,
) -> Path:  # fmt: skip
    """The ONNX decoder of ``model`` in ``directory`` (default: a folder in the temp dir), built
    there on the first call: ``sam_<model_type>_decoder_<weights hash>_op<opset>.onnx``, and
    with ``quantize`` its 8-bit form ``..._op<opset>_int8.onnx`` (the default for the full-size
    models, as SAM's own web demo runs; the tiny test model stays float32)."""
    directory = Path(directory) if directory is not None else DEFAULT_CACHE
    path = directory / f"sam_{model_type}_decoder_{decoder_key(model, opset)}_op{opset}.onnx"
    if not path.is_file():
        export_decoder(model, path, opset)
    return eight_bit(path, model_type != "tiny" if quantize is None else quantize)


def eight_bit(path: Path, quantize: bool) -> Path:
    """The 8-bit form of the decoder at ``path`` (made once, beside it) when ``quantize``; the
    float32 file itself otherwise, or when quantizing fails (a warning says why)."""
    if not quantize:
        return path
    small = path.with_name(path.stem + "_int8.onnx")
    if not small.is_file():
        try:
            quantize_decoder(path, small)
        except Exception as exc:  # no onnxruntime, or it cannot read the graph: float32 works
            warnings.warn(
                f"the page's decoder stays float32 (8-bit quantization failed: {exc})", stacklevel=3
            )
            return path
    return small
