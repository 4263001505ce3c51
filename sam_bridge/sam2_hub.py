"""SAM 2.1 weights from the Hugging Face Hub: ``config.json`` + ``model.safetensors`` of a
repository into a folder of the checkpoints directory, nothing else (no pickle, no code).

A folder that already holds both files is used as it is. A download shows huggingface_hub's
progress bars, lands in the folder, and is verified: the file's SHA-256 must equal the digest the
Hub publishes for it (its LFS object id), and the config must be a SAM 2 one (checked again,
with every tensor's name and shape, when the model is built). Offline (``--offline``,
``HF_HUB_OFFLINE=1`` or no network) the error says what to fetch and where to put it. Nothing here
imports torch.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from sam_bridge.checkpoints import DEFAULT_CHECKPOINTS_DIR, sha256_of
from sam_bridge.errors import CheckpointError
from sam_bridge.names import SAM2_REPOS, is_hub_id

FILES = ("config.json", "model.safetensors")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def repo_of(name: str) -> str:
    """The Hub repository of a SAM 2.1 size or of a Hub id (``owner/name``)."""
    if name in SAM2_REPOS:
        return SAM2_REPOS[name]
    if is_hub_id(name):
        return name
    raise CheckpointError(
        f"{name!r} is neither a SAM 2.1 size ({', '.join(SAM2_REPOS)}) nor a Hub id"
    )


def folder_of(name: str, checkpoints_dir: str | Path | None = None) -> Path:
    """Where a SAM 2 checkpoint lives: ``<checkpoints>/<repo name>`` (e.g. ``sam2.1-hiera-tiny``;
    a Hub id's owner is kept: ``<owner>--<name>``)."""
    root = Path(checkpoints_dir) if checkpoints_dir is not None else DEFAULT_CHECKPOINTS_DIR
    repo = repo_of(name)
    owner, base = repo.split("/")
    return root / (base if name in SAM2_REPOS else f"{owner}--{base}")


def fetch_hint(name: str, folder: Path) -> str:
    """The one line that says how to fetch ``name`` by hand."""
    repo = repo_of(name)
    return (
        f"fetch {' and '.join(FILES)} of https://huggingface.co/{repo} into {folder} "
        f"(hf download {repo} {' '.join(FILES)} --local-dir {folder}, where the Hub is reachable)"
    )


def _hub_errors() -> tuple[type[BaseException], ...]:
    import huggingface_hub.errors as e

    names = (
        "LocalEntryNotFoundError",
        "OfflineModeIsEnabled",
        "HfHubHTTPError",
        "EntryNotFoundError",
    )
    return (*(getattr(e, n) for n in names if hasattr(e, n)), OSError, ValueError)


def _verify(repo: str, filename: str, path: Path) -> None:
    """The downloaded file's SHA-256 against the Hub's digest of it (LFS files publish one; a
    small file such as config.json is checked by content later)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    etag = (get_hf_file_metadata(hf_hub_url(repo, filename)).etag or "").strip('"').lower()
    if _SHA256.match(etag) and sha256_of(path) != etag:
        path.unlink(missing_ok=True)
        raise CheckpointError(
            f"{path} does not match the Hub's SHA-256 of {repo}/{filename} (deleted; download again)"
        )


def _check_config(path: Path, repo: str) -> None:
    try:
        kind = json.loads(path.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path} (from {repo}) is not a JSON config: {exc}") from exc
    if kind not in ("sam2", "sam2_video"):
        raise CheckpointError(
            f"{repo} is not a SAM 2 checkpoint: its config.json says model_type {kind!r}"
        )


def ensure_sam2(
    name: str,
    checkpoints_dir: str | Path | None = None,
    download: bool = True,
    progress: bool = True,
) -> Path:
    """The folder holding ``name``'s ``config.json`` and ``model.safetensors``, downloaded first
    when either is missing (the config first: a repository that is not a SAM 2 is refused
    before its weights are fetched). ``download=False`` raises :class:`CheckpointError` with
    what to fetch."""
    folder = folder_of(name, checkpoints_dir)
    if all((folder / f).is_file() for f in FILES):
        return folder
    if not download:
        raise CheckpointError(f"SAM {name} is not in {folder}: {fetch_hint(name, folder)}")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    repo = repo_of(name)
    if not progress:
        disable_progress_bars()
    try:
        for filename in FILES:
            path = Path(hf_hub_download(repo, filename, local_dir=folder))
            if filename == FILES[0]:
                _check_config(path, repo)
            else:
                _verify(repo, filename, path)
    except CheckpointError:
        raise
    except _hub_errors() as exc:
        raise CheckpointError(
            f"cannot download SAM {name} ({type(exc).__name__}); {fetch_hint(name, folder)}"
        ) from exc
    finally:
        if not progress:
            enable_progress_bars()
    return folder
