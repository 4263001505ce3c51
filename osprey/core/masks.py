"""Mask I/O shared by the app, training, evaluation and data generation.

A mask is always a boolean ``(H, W)`` numpy array in the pixel coordinates of its image. On disk it
is a PNG (0 / 255) or COCO RLE (the ``{"size": [H, W], "counts": str}`` dicts of pycocotools); in
annotation files it may also be a list of polygons.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from osprey.core.errors import ImageError, MaskError
from osprey.core.images import MAX_PIXELS, check_size, open_image

# ---------------------------------------------------------------------------------------------
# PNG


def to_bool_mask(mask: np.ndarray) -> np.ndarray:
    """Any 2-D array (bool, 0/1, 0/255, float) or (H, W, C) image -> bool (H, W); nonzero is True."""
    arr = np.asarray(mask)
    if arr.ndim == 3:
        arr = arr.any(axis=2) if arr.shape[2] in (1, 3) else arr[..., :3].any(axis=2)
    if arr.ndim != 2:
        raise MaskError(f"a mask must be 2-D (H, W), got shape {arr.shape}")
    return arr if arr.dtype == np.bool_ else arr.astype(bool)


def save_mask_png(mask: np.ndarray, path: str | Path) -> Path:
    """Write a mask as an 8-bit PNG with 0 (background) and 255 (region)."""
    path = Path(path)
    Image.fromarray(to_bool_mask(mask).astype(np.uint8) * 255, mode="L").save(path)
    return path


def load_mask(
    source: str | Path | bytes, size: tuple[int, int] | None = None, what: str = "mask",
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:  # fmt: skip
    """Read a mask image (path or encoded bytes; any mode; nonzero pixels are the region; alpha
    ignored) as bool (H, W). With ``size`` (height, width), a mask of another size is refused
    from its header, before a pixel is decoded (a 13370x13370 PNG of a few hundred KB would
    take gigabytes); so is one above ``max_pixels``. Errors are :class:`MaskError` with a message
    for the user, ``what`` naming the mask ("mask 3")."""
    try:
        with open_image(source, what, max_pixels) as img:
            if size is not None and (img.height, img.width) != tuple(size):
                raise MaskError(
                    f"{what} is {img.width}x{img.height}, the image {size[1]}x{size[0]}"
                )
            check_size(img.height, img.width, max_pixels)
            img.load()
            if img.mode in ("RGBA", "LA", "PA"):
                img = img.convert("RGB") if img.mode == "RGBA" else img.convert("L")
            arr = np.asarray(img.convert("L") if img.mode in ("P", "1") else img)
    except ImageError as exc:
        raise MaskError(str(exc).replace("image is", f"{what} is", 1)) from exc
    return to_bool_mask(arr)


def load_mask_png(path: str | Path) -> np.ndarray:
    """Read a mask image file (any mode; nonzero pixels are the region) as bool (H, W)."""
    return load_mask(path, what=f"mask {path}")


# ---------------------------------------------------------------------------------------------
# COCO RLE and polygons


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """bool (H, W) -> compressed COCO RLE with a JSON-ready ``counts`` string."""
    rle = mask_utils.encode(np.asfortranarray(to_bool_mask(mask).view(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode()}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """Compressed (str or bytes counts) or uncompressed (list counts) COCO RLE -> bool (H, W)."""
    if "size" not in rle or "counts" not in rle:
        raise MaskError("an RLE needs 'size' and 'counts'")
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        if sum(counts) != h * w:
            raise MaskError(f"uncompressed RLE covers {sum(counts)} pixels, expected {h}x{w}")
        rle = mask_utils.frPyObjects(rle, h, w)
    elif isinstance(counts, str):
        rle = {"size": [h, w], "counts": counts.encode()}
    try:
        return mask_utils.decode(rle).view(bool)  # 0/1 bytes: a view, not a copy
    except Exception as exc:  # pycocotools raises bare Exceptions on corrupt counts
        raise MaskError(f"corrupt RLE: {exc}") from exc


class RleMasks(Sequence):
    """Masks kept as compressed COCO RLE, each decoded to bool (H, W) only when it is read: the
    50 regions of a 12 MP photo are a few hundred KB here, where decoded they take 600 MB."""

    def __init__(self, rles: Sequence[dict[str, Any]]):
        self.rles = tuple(rles)

    def __len__(self) -> int:
        return len(self.rles)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return RleMasks(self.rles[index])
        return decode_rle(self.rles[index])

    def size(self, index: int) -> tuple[int, int]:
        """(H, W) of mask ``index``, from its RLE (nothing decoded)."""
        h, w = self.rles[index]["size"]
        return int(h), int(w)

    def area(self, index: int) -> int:
        """Pixels in mask ``index``, from its RLE (nothing decoded)."""
        return rle_area(self.rles[index])


def polygons_to_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """COCO polygons ``[[x0, y0, x1, y1, ...], ...]`` (pixel coordinates) -> bool (H, W)."""
    polys = [list(map(float, p)) for p in polygons if len(p) >= 6]
    if not polys:
        raise MaskError("no polygon with at least three points")
    rles = mask_utils.frPyObjects(polys, height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def box_to_polygon(box: Sequence[float]) -> list[float]:
    """(x0, y0, x1, y1) -> the rectangle as one COCO polygon."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Any COCO ``segmentation`` value (polygon list, uncompressed or compressed RLE) -> bool (H, W).

    The result is checked against the image size given by the annotation file.
    """
    if isinstance(segmentation, dict):
        mask = decode_rle(segmentation)
    elif isinstance(segmentation, (list, tuple)):
        mask = polygons_to_mask(segmentation, height, width)
    else:
        raise MaskError(f"unsupported segmentation type {type(segmentation).__name__}")
    if mask.shape != (height, width):
        raise MaskError(f"mask is {mask.shape[1]}x{mask.shape[0]}, image is {width}x{height}")
    return mask


# ---------------------------------------------------------------------------------------------
# geometry


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight box (x0, y0, x1, y1), exclusive of x1/y1, or None for an empty mask."""
    m = to_bool_mask(mask)
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def check_rle(counts: str, height: int, width: int) -> None:
    """:class:`MaskError` unless ``counts`` (a compressed COCO RLE string from outside: a browser,
    a file) is well formed and covers exactly ``height`` x ``width`` pixels. Check before
    decoding one: pycocotools reads a malformed string past its end, and a short one decodes to
    uninitialised memory."""
    counted: list[int] = []
    at = 0
    while at < len(counts):
        x, k, more = 0, 0, True
        while more:
            if at == len(counts):
                raise MaskError("corrupt RLE: it ends inside a count")
            c = ord(counts[at]) - 48
            if not 0 <= c < 64:
                raise MaskError("corrupt RLE: a character outside its alphabet")
            x |= (c & 0x1F) << (5 * k)
            more, at, k = bool(c & 0x20), at + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        x += counted[-2] if len(counted) > 2 else 0  # from the fourth on: the one two back, plus
        if x < 0:
            raise MaskError("corrupt RLE: a negative count")
        counted.append(x)
    total = sum(counted)
    if total != height * width:
        raise MaskError(f"the RLE covers {total} pixels, not {height}x{width}")


def rle_area(rle: dict[str, Any]) -> int:
    """Pixel count of a compressed COCO RLE (no decoding)."""
    return int(mask_utils.area(_coco_rle(rle)))


def rle_box(rle: dict[str, Any]) -> tuple[int, int, int, int] | None:
    """Tight box (x0, y0, x1, y1) of a compressed COCO RLE, exclusive like :func:`mask_box`;
    None when empty. No decoding."""
    if rle_area(rle) == 0:
        return None
    x, y, w, h = (int(v) for v in mask_utils.toBbox(_coco_rle(rle)))
    return x, y, x + w, y + h


def _coco_rle(rle: dict[str, Any]) -> dict[str, Any]:
    """JSON-style RLE (str counts) -> the bytes form pycocotools' C functions expect."""
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode()
    elif not isinstance(counts, bytes):
        raise MaskError("rle_area / rle_box need a compressed RLE (str or bytes counts)")
    return {"size": [int(v) for v in rle["size"]], "counts": counts}
