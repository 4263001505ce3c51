"""The page's decoder step in Python: the ONNX decoder's inputs built as ``osprey/app/static/canvas.js``
builds them (``decoderFeeds``), run with python onnxruntime, so the export can be checked against
the server's torch decoder without a browser.

Prompt conventions (SamOnnxModel's): coordinates in SAM's 1024 frame (x * w_in / W), labels
1 / 0 for clicks, 2 / 3 for the box corners, a padding point (0, 0) labelled -1 when there is no
box; the previous low-resolution logits as ``mask_input`` with ``has_mask_input`` = 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def feeds(
    features: np.ndarray,
    original_size: tuple[int, int],
    input_size: tuple[int, int],
    points: Sequence[tuple[float, float, int]] = (),
    box: Sequence[float] | None = None,
    previous: np.ndarray | None = None,
    out_size: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """ONNX inputs for ``points`` ((x, y, label) in image pixels) and ``box`` (x0, y0, x1, y1)."""
    (h, w), (hi, wi) = original_size, input_size
    sx, sy = wi / w, hi / h
    coords = [(x * sx, y * sy) for x, y, _ in points]
    labels = [float(lab) for _, _, lab in points]
    if box is not None:
        x0, y0, x1, y1 = box
        coords += [(x0 * sx, y0 * sy), (x1 * sx, y1 * sy)]
        labels += [2.0, 3.0]
    else:
        coords.append((0.0, 0.0))
        labels.append(-1.0)
    low = previous if previous is not None else np.zeros((256, 256), np.float32)
    return {
        "image_embeddings": features.astype(np.float32),
        "point_coords": np.asarray(coords, np.float32)[None],
        "point_labels": np.asarray(labels, np.float32)[None],
        "mask_input": low.astype(np.float32)[None, None],
        "has_mask_input": np.asarray([1.0 if previous is not None else 0.0], np.float32),
        "orig_im_size": np.asarray(out_size or original_size, np.float32),
    }


def decode(session, inputs: dict[str, np.ndarray], multimask: bool):
    """-> (masks bool (C, h, w), scores (C,), low-res logits (C, 256, 256)), sorted by score as
    the server sorts its candidates; C = 3 candidates or SAM's single mask."""
    masks, scores, low = session.run(None, inputs)
    pick = slice(1, 4) if multimask else slice(0, 1)
    masks, scores, low = masks[0, pick], scores[0, pick], low[0, pick]
    order = np.argsort(-scores, kind="stable")
    return masks[order] > 0, scores[order], low[order]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def feeds_sam2(
    maps: Sequence[np.ndarray],
    original_size: tuple[int, int],
    points: Sequence[tuple[float, float, int]] = (),
    box: Sequence[float] | None = None,
    previous: np.ndarray | None = None,
    out_size: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """SAM 2's decoder inputs as ``osprey/app/static/sam2_decoder.js`` builds them: the three maps,
    coordinates in the stretched 1024 frame (x * 1024 / W, y * 1024 / H), box corners labelled
    2 / 3 after the clicks, and always one padding point (0, 0) labelled -1, last."""
    h, w = original_size
    sx, sy = 1024 / w, 1024 / h
    coords = [(x * sx, y * sy) for x, y, _ in points]
    labels = [float(lab) for _, _, lab in points]
    if box is not None:
        x0, y0, x1, y1 = box
        coords += [(x0 * sx, y0 * sy), (x1 * sx, y1 * sy)]
        labels += [2.0, 3.0]
    coords.append((0.0, 0.0))
    labels.append(-1.0)
    low = previous if previous is not None else np.zeros((256, 256), np.float32)
    names = ("image_embeddings", "high_res_feats_0", "high_res_feats_1")
    return {
        **{n: np.asarray(m, np.float32) for n, m in zip(names, maps)},
        "point_coords": np.asarray(coords, np.float32)[None],
        "point_labels": np.asarray(labels, np.float32)[None],
        "mask_input": low.astype(np.float32)[None, None],
        "has_mask_input": np.asarray([1.0 if previous is not None else 0.0], np.float32),
        "orig_im_size": np.asarray(out_size or original_size, np.float32),
    }


def unpack_maps(data: bytes, shapes: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """The page's reading of ``osprey.app.canvas_page.pack_maps``: gunzip, low bytes then high bytes, split
    into maps of ``shapes`` (float16), as sam2_decoder.js does."""
    import gzip

    raw = np.frombuffer(gzip.decompress(data), np.uint8)
    n = raw.size // 2
    half = (raw[:n].astype(np.uint16) | (raw[n:].astype(np.uint16) << 8)).view(np.float16)
    out, offset = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        out.append(half[offset : offset + size].reshape(shape))
        offset += size
    assert offset == half.size, "the packed maps have another size"
    return out
