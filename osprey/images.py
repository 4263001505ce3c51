"""Image intake shared by SAM, Osprey, the app, training and evaluation.

Every image that enters the project goes through :func:`to_rgb` (or :func:`load_image` for files),
so there is one owner of "what an RGB image is": an ``(H, W, 3)`` ``uint8`` array in the image's own
pixel coordinates, EXIF orientation applied, transparency composited on white and 16-bit data
scaled to 8 bits.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from osprey.errors import ImageError

# Images above this many pixels are refused (PIL's own decompression-bomb limit is ~89 MP).
MAX_PIXELS = 64_000_000


@dataclass(frozen=True, eq=False)
class ImageHandle:
    """An image that has entered the project: its pixels normalised by :func:`to_rgb` and its content
    key from :func:`image_key`, both computed once. Every API that takes an image takes a handle
    too and then skips both steps (a click or a question on an open image costs no re-hashing)."""

    rgb: np.ndarray  # (H, W, 3) uint8
    key: str

    @classmethod
    def of(cls, image: ImageLike, max_pixels: int = MAX_PIXELS) -> ImageHandle:
        """A handle for any supported image (a handle is returned as it is)."""
        if isinstance(image, ImageHandle):
            return image
        rgb = to_rgb(image, max_pixels)
        return cls(rgb, image_key(rgb))

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


ImageLike = Image.Image | np.ndarray | str | Path | bytes | ImageHandle


# ---------------------------------------------------------------------------------------------
# helpers


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 -> (H, W, 3) uint8, alpha-blended over white."""
    rgb = rgba[..., :3].astype(np.float32)
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    out = rgb * alpha + 255.0 * (1.0 - alpha)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale integer, boolean or float data to uint8 without changing the layout."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        finite = arr[np.isfinite(arr)]
        if finite.size == 0:
            raise ImageError("image holds no finite values")
        scale = 255.0 if finite.max() <= 1.0 else 1.0
        return np.clip(np.rint(np.nan_to_num(arr) * scale), 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and arr.min() < 0:
            raise ImageError(f"image holds negative values (dtype {arr.dtype})")
        peak = int(arr.max()) if arr.size else 0
        if peak <= 255:
            return arr.astype(np.uint8)
        # 16-bit data (and 32-bit data that fits in 16 bits): map 0..65535 onto 0..255.
        if peak <= 65535:
            return np.rint(arr.astype(np.float32) / 257.0).astype(np.uint8)
        return np.rint(arr.astype(np.float64) * (255.0 / peak)).astype(np.uint8)
    raise ImageError(f"unsupported pixel type {arr.dtype}")


def _array_to_rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = _to_uint8(arr)
        return np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ImageError(f"expected an (H, W), (H, W, 3) or (H, W, 4) array, got shape {arr.shape}")
    arr = _to_uint8(arr)
    if arr.shape[2] == 4:
        return _composite_on_white(arr)
    return arr


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        return _composite_on_white(np.asarray(img.convert("RGBA"), dtype=np.uint8))
    if mode.startswith("I") or mode == "F":
        # 16/32-bit grey: PIL's own convert() clips instead of scaling, so scale ourselves.
        return _array_to_rgb(np.asarray(img))
    if mode == "1":
        return _array_to_rgb(np.asarray(img.convert("L")))
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------
# public API


def check_size(height: int, width: int, max_pixels: int = MAX_PIXELS) -> None:
    """Raise :class:`ImageError` for an empty image or one above ``max_pixels``."""
    if height <= 0 or width <= 0:
        raise ImageError(f"image is empty ({width}x{height})")
    if height * width > max_pixels:
        raise ImageError(
            f"image is {width}x{height} = {height * width / 1e6:.1f} MP, above the limit of "
            f"{max_pixels / 1e6:.0f} MP; downscale it first"
        )


def load_image(source: str | Path | bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file (path or encoded bytes) as an (H, W, 3) uint8 RGB array."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            check_size(img.height, img.width, max_pixels)
            img.load()
            return _pil_to_rgb(img)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:  # PIL refuses to even open it (> ~179 MP)
        raise ImageError(
            f"image is far above the limit of {max_pixels / 1e6:.0f} MP (a decompression bomb?); "
            "downscale it first"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"cannot read image: {exc}") from exc


def to_rgb(image: ImageLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Normalise any supported image to an (H, W, 3) uint8 RGB array.

    Accepts a PIL image of any mode (RGB, RGBA, L, P, 1, I;16, I, F, CMYK, YCbCr, ...; EXIF
    orientation applied), a numpy array ((H, W), (H, W, 1), (H, W, 3) or (H, W, 4); uint8, uint16,
    bool or float in [0, 1]), or a path / encoded bytes. The array is contiguous and owns its data.
    """
    if isinstance(image, ImageHandle):
        return image.rgb
    if isinstance(image, (str, Path, bytes)):
        return load_image(image, max_pixels)
    if isinstance(image, Image.Image):
        check_size(image.height, image.width, max_pixels)
        out = _pil_to_rgb(image)
    elif isinstance(image, np.ndarray):
        if image.ndim < 2:
            raise ImageError(f"expected an image array, got shape {image.shape}")
        check_size(image.shape[0], image.shape[1], max_pixels)
        out = _array_to_rgb(image)
    else:
        raise ImageError(f"unsupported image type {type(image).__name__}")
    return np.ascontiguousarray(out)


def image_key(rgb: np.ndarray) -> str:
    """A content key for an (H, W, 3) uint8 image: the same pixels give the same key.

    Hashes the shape and the pixel bytes (BLAKE2b, 128 bits; ~1 ms per megapixel), so equal images
    share cached features whatever object or file they came from.
    """
    arr = np.ascontiguousarray(rgb)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{arr.shape}|{arr.dtype.str}".encode())
    digest.update(memoryview(arr).cast("B"))
    return digest.hexdigest()
