"""Image intake shared by SAM, Osprey, the app, training and evaluation.

Every image that enters the project goes through :func:`to_rgb` (or :func:`load_image` for files),
so there is one owner of "what an RGB image is": an ``(H, W, 3)`` ``uint8`` array in the image's own
pixel coordinates, EXIF orientation applied, transparency composited on white and 16-bit data
scaled to 8 bits.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from osprey.core.errors import ImageError, OspreyError

# Images above this many pixels are refused (PIL's own decompression-bomb limit is ~89 MP).
MAX_PIXELS = 64_000_000


class ImageHandle:
    """An image that has entered the project: its pixels normalised as :func:`to_rgb` does and
    its content key (:func:`image_key`), both computed once. Every API that takes an image takes
    a handle too and then skips both steps (a click or a question on an open image costs no
    re-hashing).

    A handle made from encoded bytes (an upload, a file) holds them and, until :meth:`release`,
    the decoded image as PIL keeps it; SAM and Osprey resize from that (:attr:`pil`) without a
    full-size array copy. After :meth:`release` an open image costs its compressed size, and
    :attr:`rgb` / :attr:`pil` decode the bytes again when something needs the pixels (the same
    bytes give the same pixels, so the key stays true).
    """

    __slots__ = (
        "__weakref__", "_pil", "_rgb", "_source", "_spilled", "height", "key", "last_used",
        "width",
    )  # fmt: skip

    def __init__(
        self, rgb: np.ndarray | None, key: str, source: bytes | None = None,
        *, pil: Image.Image | None = None,
    ) -> None:  # fmt: skip
        if rgb is None and pil is None:
            raise ValueError("an ImageHandle needs pixels (rgb or pil)")
        self.key, self._source, self._spilled = key, source, None
        self.height, self.width = (
            (rgb.shape[0], rgb.shape[1]) if rgb is not None else pil.size[::-1]
        )
        self._rgb, self._pil = rgb, pil
        self.last_used = time.monotonic()

    @classmethod
    def of(cls, image: ImageLike, max_pixels: int = MAX_PIXELS) -> ImageHandle:
        """A handle for any supported image (a handle is returned as it is)."""
        if isinstance(image, ImageHandle):
            return image
        if isinstance(image, (bytes, str, Path)):
            source = image if isinstance(image, bytes) else Path(image).read_bytes()
            pil = decode_rgb(source, max_pixels)
            return cls(None, pil_key(pil), source, pil=pil)
        rgb = to_rgb(image, max_pixels)
        return cls(rgb, image_key(rgb))

    @property
    def rgb(self) -> np.ndarray:
        """(H, W, 3) uint8 (made from :attr:`pil`, or decoded again after :meth:`release`)."""
        if self._rgb is not None:
            return self._rgb
        return rgb_array(self._pil if self._pil is not None else self._decode())

    @property
    def pil(self) -> Image.Image:
        """The image as a PIL ``RGB`` image (for resizing; do not change it)."""
        if self._pil is not None:
            return self._pil
        return Image.fromarray(self._rgb) if self._rgb is not None else self._decode()

    def _decode(self) -> Image.Image:
        return decode_rgb(self.source, max_pixels=self.height * self.width)

    @property
    def source(self) -> bytes | None:
        """The encoded bytes the handle was made from (read back from disk after :meth:`spill`);
        None for a handle made from pixels."""
        if self._spilled is not None:
            return self._spilled.read_bytes()
        return self._source

    def spill(self, path: Path) -> int:
        """Keep the encoded bytes in the file ``path`` instead of memory, once the pixels are
        released; returns the bytes freed (0 when there was nothing to move)."""
        if self._source is None or self.decoded:
            return 0
        path.write_bytes(self._source)
        freed, self._source, self._spilled = len(self._source), None, path
        return freed

    @property
    def spilled(self) -> Path | None:
        """The file holding the encoded bytes, after :meth:`spill`."""
        return self._spilled

    def touch(self) -> None:
        """Note a use (the sessions' store moves the longest-unused uploads to disk first)."""
        self.last_used = time.monotonic()

    @property
    def decoded(self) -> bool:
        """Whether the pixels are held (False after :meth:`release`)."""
        return self._rgb is not None or self._pil is not None

    def release(self) -> None:
        """Drop the decoded pixels when they can be decoded again (a handle made from bytes)."""
        if self._source is not None or self._spilled is not None:
            self._rgb = self._pil = None

    @property
    def nbytes(self) -> int:
        """Bytes this handle holds in memory: the compressed source (not once spilled to disk)
        and, while decoded, the pixels."""
        held = len(self._source) if self._source is not None else 0
        if self._rgb is not None:
            held += self._rgb.nbytes
        if self._pil is not None:
            held += 4 * self.height * self.width  # PIL keeps RGB as 4 bytes a pixel
        return held

    def __deepcopy__(self, memo: dict) -> ImageHandle:
        return self  # immutable content; Gradio deep-copies session state


ImageLike = Image.Image | np.ndarray | str | Path | bytes | ImageHandle


# ---------------------------------------------------------------------------------------------
# helpers


def _orientation(img: Image.Image, header_only: bool = False) -> int:
    """The EXIF orientation (1: as stored; a broken EXIF block counts as 1, as PIL's own
    exif_transpose reads it). ``header_only``: never decode for it (PIL decodes a whole PNG to
    look for an EXIF chunk after its pixels; one before them, the usual place, is read)."""
    if header_only and img.format == "PNG" and "exif" not in img.info:
        return 1
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:
        return 1


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


def _rgb_image(img: Image.Image) -> Image.Image:
    """A loaded PIL image of any mode -> a PIL ``RGB`` image as the project reads it: EXIF
    orientation applied, transparency on white, 16-bit grey scaled (see :func:`to_rgb`)."""
    # exif_transpose copies the whole image even when there is nothing to turn (a 64 MP photo:
    # 256 MB more): turn only when the EXIF orientation says so.
    if _orientation(img) != 1:
        img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        return Image.fromarray(_composite_on_white(np.asarray(img.convert("RGBA"), np.uint8)))
    if mode.startswith("I") or mode == "F":
        # 16/32-bit grey: PIL's own convert() clips instead of scaling, so scale ourselves.
        return Image.fromarray(_array_to_rgb(np.asarray(img)))
    if mode == "1":
        return img.convert("L").convert("RGB")
    return img.convert("RGB")


def _strips(img: Image.Image, rows: int = 256) -> Iterator[tuple[int, int, bytes]]:
    """(first row, end row, RGB bytes) of an ``RGB`` image, ``rows`` rows at a time: PIL's own
    ``tobytes`` (and so ``np.asarray``) holds the whole image twice more while it joins."""
    for y in range(0, img.height, rows):
        end = min(img.height, y + rows)
        yield y, end, img.crop((0, y, img.width, end)).tobytes()


def rgb_array(img: Image.Image) -> np.ndarray:
    """A PIL ``RGB`` image -> (H, W, 3) uint8, filled strip by strip (one full-size copy)."""
    out = np.empty((img.height, img.width, 3), np.uint8)
    for y, end, data in _strips(img):
        out[y:end] = np.frombuffer(data, np.uint8).reshape(end - y, img.width, 3)
    return out


def pil_key(img: Image.Image) -> str:
    """:func:`image_key` of a PIL ``RGB`` image, without an array of it: the same digest."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{(img.height, img.width, 3)}|{np.dtype(np.uint8).str}".encode())
    for _, _, data in _strips(img):
        digest.update(data)
    return digest.hexdigest()


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


def _reason(exc: BaseException, source: object) -> str:
    """Why PIL could not read ``source``, in words that name no server path when the source is
    bytes (an upload): PIL's own messages carry the file's path or a Python object's repr."""
    if not isinstance(source, bytes):
        return str(exc)
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not an image in a format this server reads (PNG, JPEG, WebP, GIF, BMP, TIFF, ...)"
    text = str(exc)
    if "truncated" in text or "broken data stream" in text:
        return "the file is truncated or corrupt"
    return "the file is corrupt or not an image"


@contextmanager
def image_errors(source: object, what: str = "image", max_pixels: int = MAX_PIXELS):
    """Failures of PIL on ``source`` inside the block become :class:`ImageError` with a message
    for the user, ``what`` naming the input ("image", "mask 2", ...)."""
    try:
        yield
    except OspreyError:
        raise
    except Image.DecompressionBombError as exc:  # PIL refuses to even open it (> ~179 MP)
        raise ImageError(
            f"{what} is far above the limit of {max_pixels / 1e6:.0f} MP (a decompression "
            "bomb?); downscale it first"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"cannot read {what}: {_reason(exc, source)}") from exc


@contextmanager
def open_image(source: str | Path | bytes, what: str = "image", max_pixels: int = MAX_PIXELS):
    """``PIL.Image.open`` (lazy: the header only) whose failures are :class:`ImageError` with a
    message for the user (:func:`image_errors`); the image is closed after the block."""
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    with image_errors(source, what, max_pixels), Image.open(stream) as img:
        yield img


def oriented_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) of an opened image as it is shown: EXIF orientations 5-8 (a quarter turn)
    swap the two. Read from the header; no pixel is decoded."""
    quarter = _orientation(img, header_only=True) in (5, 6, 7, 8)
    return (img.height, img.width) if quarter else (img.width, img.height)


def probe_image(source: str | Path | bytes, what: str = "image") -> tuple[int, int]:
    """(width, height) of an image file from its header, as shown (EXIF orientation applied);
    nothing is decoded. :class:`ImageError` if it is not an image."""
    with open_image(source, what) as img:
        return oriented_size(img)


def decode_rgb(source: str | Path | bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Read an image file (path or encoded bytes) as a PIL ``RGB`` image (see :func:`to_rgb`).
    The size is checked from the header before any pixel is decoded; the decoded image is the
    only full-size copy made."""
    with image_errors(source, "image", max_pixels):
        img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        try:
            check_size(img.height, img.width, max_pixels)
            img.load()
            rgb = _rgb_image(img)
        except BaseException:
            img.close()
            raise
        if rgb is img and getattr(img, "fp", None) is not None:  # a file still open (animations)
            rgb = img.copy()
        if rgb is not img:
            img.close()
        return rgb


def load_image(source: str | Path | bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file (path or encoded bytes) as an (H, W, 3) uint8 RGB array. The size is
    checked from the header before any pixel is decoded."""
    return rgb_array(decode_rgb(source, max_pixels))


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
        out = rgb_array(_rgb_image(image))
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
