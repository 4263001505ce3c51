"""SAM checkpoints: the one table of official files, and a safe download into a checkpoints folder.

Nothing here imports torch. A file that is already present is never downloaded again; a download
goes to a temporary file in the same folder and is renamed into place only after its size and
SHA-256 match the table, so a crash or a bad network never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sam_bridge.errors import CheckpointError

# The repository's checkpoints/ folder, resolved from this file (never from the working directory).
DEFAULT_CHECKPOINTS_DIR = Path(__file__).resolve().parents[1] / "checkpoints"

_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class CheckpointSpec:
    """One downloadable file: where it comes from and what it must look like once here."""

    model_type: str
    filename: str
    url: str
    size: int  # bytes
    sha256: str | None  # None: only the size is checked


# The official releases (github.com/facebookresearch/segment-anything#model-checkpoints). Sizes and
# SHA-256 digests as published by many independent download scripts that verify these exact files;
# the 6 hex digits in each file name are the start of its MD5.
CHECKPOINTS: dict[str, CheckpointSpec] = {
    "vit_b": CheckpointSpec(
        "vit_b",
        "sam_vit_b_01ec64.pth",
        _BASE_URL + "sam_vit_b_01ec64.pth",
        375_042_383,
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
    ),
    "vit_l": CheckpointSpec(
        "vit_l",
        "sam_vit_l_0b3195.pth",
        _BASE_URL + "sam_vit_l_0b3195.pth",
        1_249_524_607,
        "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
    ),
    "vit_h": CheckpointSpec(
        "vit_h",
        "sam_vit_h_4b8939.pth",
        _BASE_URL + "sam_vit_h_4b8939.pth",
        2_564_550_879,
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    ),
}
MODEL_TYPES = tuple(CHECKPOINTS)


# ---------------------------------------------------------------------------------------------
# helpers


def _spec(model_type: str, registry: Mapping[str, CheckpointSpec]) -> CheckpointSpec:
    if model_type not in registry:
        raise CheckpointError(
            f"unknown SAM model type {model_type!r}; choose from {sorted(registry)}"
        )
    return registry[model_type]


def _manual_hint(spec: CheckpointSpec, dest: Path) -> str:
    return (
        f"Download it on a machine with internet access and place it at {dest}:\n"
        f"    curl -L -o {dest} {spec.url}\n"
        f"or run, where the URL is reachable:\n"
        f"    python -m sam_bridge download --model-type {spec.model_type} "
        f"--checkpoints-dir {dest.parent}"
    )


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_size(path: Path, spec: CheckpointSpec) -> None:
    size = path.stat().st_size
    if size != spec.size:
        raise CheckpointError(
            f"{path} has {size} bytes, expected {spec.size} for {spec.filename} "
            f"(truncated or a different file). Delete it and download again."
        )


def _stream(response, out, total: int, label: str, progress: bool) -> tuple[int, str]:
    """Copy ``response`` into ``out`` with a tqdm bar; return (bytes written, their SHA-256)."""
    from tqdm import tqdm

    digest, written = hashlib.sha256(), 0
    with tqdm(
        total=total or None, unit="B", unit_scale=True, desc=label, disable=not progress
    ) as bar:
        for block in iter(lambda: response.read(_CHUNK), b""):
            out.write(block)
            digest.update(block)
            written += len(block)
            bar.update(len(block))
    return written, digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# public API


def checkpoint_path(
    model_type: str,
    checkpoints_dir: str | Path | None = None,
    registry: Mapping[str, CheckpointSpec] = CHECKPOINTS,
) -> Path:
    """Where the checkpoint of ``model_type`` lives (whether or not it is there yet)."""
    folder = Path(checkpoints_dir) if checkpoints_dir is not None else DEFAULT_CHECKPOINTS_DIR
    return folder / _spec(model_type, registry).filename


def verify_checkpoint(path: str | Path, spec: CheckpointSpec, full: bool = True) -> None:
    """Raise :class:`CheckpointError` unless ``path`` has the expected size (and, with ``full``,
    the expected SHA-256; hashing a 2.5 GB file takes seconds, so loading checks the size only)."""
    path = Path(path)
    _check_size(path, spec)
    if full and spec.sha256 is not None:
        actual = sha256_of(path)
        if actual != spec.sha256:
            raise CheckpointError(
                f"{path} has SHA-256 {actual}, expected {spec.sha256}. "
                f"Delete it and download again."
            )


def download_checkpoint(
    spec: CheckpointSpec, checkpoints_dir: str | Path, progress: bool = True, timeout: float = 60.0
) -> Path:
    """Download ``spec`` into ``checkpoints_dir`` (created if needed) and return the file's path.

    The bytes go to a temporary file beside the target, are checked (size, SHA-256) and then
    renamed atomically; on any failure the temporary file is removed and the target is untouched.
    """
    dest = Path(checkpoints_dir) / spec.filename
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{spec.filename}.", suffix=".part", dir=dest.parent
        )
    except OSError as exc:
        raise CheckpointError(f"cannot write to {dest.parent}: {exc}") from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(spec.url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0)
            written, digest = _stream(resp, out, total, spec.filename, progress)
        if written != spec.size:
            raise CheckpointError(
                f"downloaded {written} bytes from {spec.url}, expected {spec.size}"
            )
        if spec.sha256 is not None and digest != spec.sha256:
            raise CheckpointError(
                f"downloaded {spec.url} has SHA-256 {digest}, expected {spec.sha256}"
            )
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(
            f"cannot download {spec.url}: {exc}\n{_manual_hint(spec, dest)}"
        ) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def ensure_checkpoint(
    model_type: str,
    checkpoints_dir: str | Path | None = None,
    download: bool = True,
    progress: bool = True,
    registry: Mapping[str, CheckpointSpec] = CHECKPOINTS,
) -> Path:
    """Return the path of ``model_type``'s checkpoint, downloading it first when it is missing.

    A file already in place is never downloaded again; only its size is checked (use
    :func:`verify_checkpoint` for the full hash). With ``download=False`` a missing file raises
    :class:`CheckpointError` with the URL and the exact place to put it.
    """
    spec = _spec(model_type, registry)
    dest = checkpoint_path(model_type, checkpoints_dir, registry)
    if dest.is_file():
        _check_size(dest, spec)
        return dest
    if not download:
        raise CheckpointError(
            f"{spec.filename} is not in {dest.parent}.\n{_manual_hint(spec, dest)}"
        )
    return download_checkpoint(spec, dest.parent, progress=progress)
