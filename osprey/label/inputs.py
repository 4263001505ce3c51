"""The images of a labelling run: a folder, a text file of paths, or a COCO JSON's ``images``.

Every image becomes an :class:`ImageItem` whose ``file_name`` is its identity for the whole run:
the key of its result in the shards (so a rerun knows what is done), the ``file_name`` of the
output's COCO image, and what ``--regions`` files are matched on. Only the listing is read here;
the pixels are read by the worker that labels the image (a missing or corrupt file is then
recorded as skipped, not an error of the listing).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from osprey.core.errors import UsageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


@dataclass(frozen=True)
class ImageItem:
    """One image to label.

    ``file_name``: relative path as listed (folder: relative to it, POSIX separators; text file:
    the line; COCO: its ``file_name``); ``path``: where to read it; ``image_id``: the COCO id of
    the output (the input COCO file's id, else its 1-based position in the listing).
    ``regions``: with ``--regions``, the matched entry of that file (``height``, ``width``,
    ``annotations``), or None when the file has none for this image.
    """

    file_name: str
    path: str
    image_id: int
    regions: dict[str, Any] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ImageItem:
        return cls(**json.loads(text))


def list_images(source: str | Path, image_root: str | Path | None = None) -> list[ImageItem]:
    """The images ``source`` names, in a stable order (a rerun lists the same items).

    * a folder: every file with a common image suffix below it (recursively), sorted by path;
    * a ``.json`` file: a COCO file's ``images`` (ids kept), read from ``image_root`` (default:
      the JSON file's folder);
    * any other file: one path per line (blank lines and ``#`` comments ignored), relative paths
      against the text file's folder (or ``image_root``).

    Raises :class:`UsageError` for a missing source, a malformed listing, or no image at all.
    Repeated file names are listed once.
    """
    source = Path(source)
    if source.is_dir():
        items = _folder(source)
    elif source.is_file():
        root = Path(image_root) if image_root is not None else source.parent
        items = _coco(source, root) if source.suffix.lower() == ".json" else _text(source, root)
    else:
        raise UsageError(f"{source} does not exist (expected a folder, a text file or a COCO JSON)")
    if not items:
        raise UsageError(f"no images found in {source}")
    return _unique(items)


def _unique(items: list[ImageItem]) -> list[ImageItem]:
    seen: set[str] = set()
    out = []
    for item in items:
        if item.file_name not in seen:
            seen.add(item.file_name)
            out.append(item)
    return out


def _folder(folder: Path) -> list[ImageItem]:
    paths = [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    names = sorted((p.relative_to(folder).as_posix(), p) for p in paths)
    return [ImageItem(name, str(p.resolve()), i + 1) for i, (name, p) in enumerate(names)]


def _text(listing: Path, root: Path) -> list[ImageItem]:
    try:
        lines = listing.read_text().splitlines()
    except UnicodeDecodeError:
        raise UsageError(
            f"{listing} is not a text file of image paths (is it an image? pass its folder)"
        ) from None
    names = [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]
    return [ImageItem(n, str((root / n).resolve()), i + 1) for i, n in enumerate(names)]


def _coco(path: Path, root: Path) -> list[ImageItem]:
    images = read_coco(path).get("images")
    if not isinstance(images, list):
        raise UsageError(f"{path} has no 'images' list (expected a COCO JSON)")
    items, ids = [], set()
    for n, image in enumerate(images):
        name, image_id = _coco_image(image, path, n)
        if image_id in ids:
            raise UsageError(f"{path}: images[{n}] ({name}) repeats the id {image_id}")
        ids.add(image_id)
        items.append(ImageItem(name, str((root / name).resolve()), image_id))
    return items


def _coco_image(image: Any, path: Path, n: int) -> tuple[str, int]:
    """(file_name, id) of entry ``n`` of a COCO ``images`` list, checked."""
    ok = isinstance(image, dict) and isinstance(image.get("file_name"), str)
    if not ok or not image["file_name"].strip():
        raise UsageError(f"{path}: images[{n}] has no 'file_name'")
    image_id = image.get("id")
    if not isinstance(image_id, int) or isinstance(image_id, bool):
        raise UsageError(f"{path}: images[{n}] ({image['file_name']}) has no integer 'id'")
    return image["file_name"], image_id


def read_coco(path: str | Path) -> dict[str, Any]:
    """A COCO JSON file as a dict; :class:`UsageError` when it is unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {path} as JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a COCO JSON (its top level is not an object)")
    return data
