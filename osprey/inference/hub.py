"""Model registry and downloads (Hugging Face Hub), with one clear message when offline.

Paths are arguments: the default checkpoints directory is the repository's ``checkpoints/``,
resolved from this file, never from the working directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from osprey.core.errors import CheckpointNotFound

__all__ = [
    "REGISTRY",
    "CheckpointNotFound",
    "ModelSpec",
    "download_model",
    "find_clip",
    "resolve_model_dir",
]

DEFAULT_CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"

CLIP_REPO = "laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup"
CLIP_FILES = ("open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin")
# Never fetch pickled training state (training_args.bin holds code, not weights).
WEIGHT_PATTERNS = ["*.json", "pytorch_model*.bin", "*.safetensors", "tokenizer.model"]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    repo: str | None  # None: built in-process
    description: str
    licence: str


REGISTRY: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec(
            "osprey-7b", "sunshine-lwt/Osprey-7b", "Osprey-7B (paper's main model)", "Apache-2.0"
        ),
        ModelSpec(
            "osprey-chat-7b",
            "sunshine-lwt/Osprey-Chat-7b",
            "Osprey-7B* with LLaVA-665K in stage 3: better conversation",
            "Apache-2.0",
        ),
        ModelSpec(
            "osprey-7b-stage2",
            "sunshine-lwt/Osprey-7b-stage2",
            "after stage 2 (mask-text alignment)",
            "Apache-2.0",
        ),
        ModelSpec(
            "osprey-7b-refcocog",
            "sunshine-lwt/Osprey-7b-Refercocog-finetuning",
            "Osprey-7B fine-tuned on RefCOCOg (paper Table 7)",
            "Apache-2.0",
        ),
        ModelSpec(
            "tiny-random",
            None,
            "tiny random-weight model for tests and development (UNTRAINED)",
            "-",
        ),
    )
}


def _hub_errors() -> tuple[type[BaseException], ...]:
    import httpx
    import huggingface_hub.errors as e

    names = (
        "LocalEntryNotFoundError",
        "OfflineModeIsEnabled",
        "RepositoryNotFoundError",
        "HfHubHTTPError",
    )
    errors = tuple(getattr(e, n) for n in names if hasattr(e, n))
    return (*errors, httpx.HTTPError, OSError)


def _download_hint(repo: str, local_dir: Path, pattern: str | None = None) -> str:
    inc = f" --include '{pattern}'" if pattern else ""
    return f"hf download {repo}{inc} --local-dir {local_dir}"


def download_model(name: str, checkpoints_dir: Path = DEFAULT_CHECKPOINTS) -> Path:
    """Fetch a registry model into ``checkpoints_dir/name`` (progress bars from huggingface_hub);
    files already there are not fetched again."""
    spec = REGISTRY.get(name)
    if spec is None or spec.repo is None:
        raise CheckpointNotFound(f"{name!r} is not a downloadable model; known: {sorted(REGISTRY)}")
    from huggingface_hub import snapshot_download

    local = Path(checkpoints_dir) / name
    try:
        snapshot_download(spec.repo, local_dir=local, allow_patterns=WEIGHT_PATTERNS)
    except _hub_errors() as exc:
        raise CheckpointNotFound(
            f"cannot download {spec.repo} ({type(exc).__name__}: {exc}).\n"
            f"Download it where the Hugging Face Hub is reachable and copy it to {local}:\n"
            f"  python -m osprey download {name} --checkpoints {checkpoints_dir}\n"
            f"or: {_download_hint(spec.repo, local)}"
        ) from exc
    return local


def find_clip(checkpoints_dir: Path = DEFAULT_CHECKPOINTS, download: bool = True) -> Path:
    """The LAION ConvNeXt-L CLIP file (safetensors preferred), downloading it when missing."""
    local = Path(checkpoints_dir) / "clip-convnext-large-d-320"
    for name in CLIP_FILES:
        if (local / name).is_file():
            return local / name
    if not download:
        raise CheckpointNotFound(
            f"no CLIP file in {local}: {_download_hint(CLIP_REPO, local, CLIP_FILES[0])}"
        )
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(CLIP_REPO, CLIP_FILES[0], local_dir=local))
    except _hub_errors() as exc:
        raise CheckpointNotFound(
            f"cannot download the CLIP vision weights from {CLIP_REPO} ({type(exc).__name__}).\n"
            f"Fetch {CLIP_FILES[0]} where the Hub is reachable and put it in {local}:\n"
            f"  {_download_hint(CLIP_REPO, local, CLIP_FILES[0])}"
        ) from exc


def check_model_name(name_or_path: str | Path) -> None:
    """A registry name or an existing folder, else :class:`CheckpointNotFound` at once (before
    anything is downloaded)."""
    if str(name_or_path) in REGISTRY or Path(name_or_path).expanduser().is_dir():
        return
    raise CheckpointNotFound(
        f"{str(name_or_path)!r} is neither a checkpoint folder nor a known model; known: "
        f"{', '.join(sorted(REGISTRY))}"
    )


def missing_downloads(name_or_path: str | Path, checkpoints_dir: Path) -> list[tuple[str, str]]:
    """What loading ``name_or_path`` offline would lack: ``(what, command that fetches it)``
    pairs, empty when everything is there (folders given by path are never downloaded)."""
    name = str(name_or_path)
    spec = REGISTRY.get(name)
    if spec is None or spec.repo is None:
        return []
    local = Path(checkpoints_dir) / name
    if (local / "config.json").is_file() or (local / "osprey_config.json").is_file():
        return []
    fetch = f"python -m osprey download {name} --clip --checkpoints {checkpoints_dir}"
    return [(f"{name} ({spec.repo}) in {local}", fetch)]


def resolve_model_dir(
    name_or_path: str | Path, checkpoints_dir: Path = DEFAULT_CHECKPOINTS, download: bool = True
) -> Path:
    """A registry name or a directory -> a local checkpoint directory (downloading when allowed)."""
    path = Path(name_or_path).expanduser()
    if str(name_or_path) not in REGISTRY:
        if path.is_dir():
            return path.resolve()
        raise CheckpointNotFound(
            f"{name_or_path!r} is neither a directory nor a known model {sorted(REGISTRY)}"
        )
    local = Path(checkpoints_dir) / str(name_or_path)
    if (local / "config.json").is_file() or (local / "osprey_config.json").is_file():
        return local
    if not download:
        spec = REGISTRY[str(name_or_path)]
        raise CheckpointNotFound(
            f"{name_or_path} is not in {local} and downloads are off. Fetch it with:\n"
            f"  python -m osprey download {name_or_path} --checkpoints {checkpoints_dir}\n"
            f"or: {_download_hint(spec.repo, local)}"
        )
    return download_model(str(name_or_path), checkpoints_dir)
