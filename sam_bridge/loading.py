"""From a SAM's name (and an optional checkpoint path) to a model with its weights loaded: the one
place that knows where each family's weights live and how they are read.

SAM 1 (``vit_b`` / ``vit_l`` / ``vit_h``): a segment-anything ``.pth`` (read with
``weights_only=True``, strictly; see :mod:`sam_bridge.build`). SAM 2.1 (``sam2.1-*``, or a Hub id
of a SAM 2 checkpoint in transformers' format): a folder with ``config.json`` and
``model.safetensors`` (see :mod:`sam_bridge.sam2_build`, :mod:`sam_bridge.sam2_hub`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sam_bridge.checkpoints import DEFAULT_CHECKPOINTS_DIR, checkpoint_path
from sam_bridge.errors import CheckpointError, SamBridgeError
from sam_bridge.names import SAM2_REPOS, TINY_SAM1, TINY_SAM2, family


def sam2_files(checkpoint: str | Path) -> tuple[Path, Path]:
    """(config.json, model.safetensors) of a SAM 2 checkpoint given as its folder or as the
    safetensors file (its config.json beside it)."""
    path = Path(checkpoint)
    folder, weights = (path, path / "model.safetensors") if path.is_dir() else (path.parent, path)
    if weights.suffix != ".safetensors":
        raise CheckpointError(
            f"{weights} is not a .safetensors file: SAM 2 loads its weights from safetensors only "
            f"(never a pickle); give the checkpoint's folder or its model.safetensors"
        )
    config = folder / "config.json"
    for needed in (config, weights):
        if not needed.is_file():
            raise CheckpointError(
                f"SAM 2 checkpoint {path}: {needed.name} is missing (a SAM 2 checkpoint is a "
                f"folder with config.json and model.safetensors)"
            )
    return config, weights


def _load_sam2(name: str, checkpoint: str | Path | None, checkpoints_dir: str | Path | None,
               download: bool, progress: bool) -> tuple[Any, Path]:  # fmt: skip
    from sam_bridge.sam2_build import build_sam2, read_config, size_of
    from sam_bridge.sam2_hub import ensure_sam2

    if checkpoint is None:
        checkpoint = ensure_sam2(name, checkpoints_dir, download=download, progress=progress)
    config_path, weights = sam2_files(checkpoint)
    config = read_config(config_path)
    if name in SAM2_REPOS and size_of(config) != name:
        raise CheckpointError(
            f"{config_path} is the config of {size_of(config) or 'another SAM 2'}, not {name}; "
            f"pass --sam {size_of(config) or 'OWNER/NAME'} or the checkpoint of {name}"
        )
    return build_sam2(config, weights), weights.parent


def _load_sam1(model_type: str, checkpoint: str | Path | None, checkpoints_dir: str | Path | None,
               download: bool, progress: bool) -> tuple[Any, Path]:  # fmt: skip
    from sam_bridge.build import build_sam
    from sam_bridge.checkpoints import ensure_checkpoint

    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist")
    else:
        path = ensure_checkpoint(model_type, checkpoints_dir, download=download, progress=progress)
    return build_sam(model_type, path), path.parent


def load_model(
    name: str,
    checkpoint: str | Path | None = None,
    checkpoints_dir: str | Path | None = None,
    download: bool = True,
    progress: bool = True,
) -> tuple[Any, Path]:
    """(the model named ``name``, in eval mode on CPU, the folder its weights came from). Weights
    are found in ``checkpoint`` or in ``checkpoints_dir`` (downloaded there when missing, unless
    ``download`` is False)."""
    loader = _load_sam2 if family(name) == "sam2" else _load_sam1
    return loader(name, checkpoint, checkpoints_dir, download, progress)


def tiny_model(family: str = "sam1", seed: int = 0) -> tuple[Any, str]:
    """(a tiny random-weight model of ``family``, its model_type): ``sam1`` (segment-anything's
    structure) or ``sam2`` (transformers' Sam2Model), both with the real 1024-pixel geometry."""
    if family == "sam2":
        from sam_bridge.sam2_build import build_tiny_sam2

        return build_tiny_sam2(seed), TINY_SAM2
    if family == "sam1":
        from sam_bridge.build import build_tiny_sam

        return build_tiny_sam(seed), TINY_SAM1
    raise SamBridgeError(f"unknown SAM family {family!r}; use sam1 or sam2")


def missing_files(
    name: str, checkpoint: str | Path | None = None, checkpoints_dir: str | Path | None = None
) -> list[tuple[str, str]]:
    """What loading ``name`` offline would lack, as ``(what, how to fetch it)`` pairs; empty when
    everything is in place. Nothing is read or downloaded."""
    if checkpoint is not None:
        path = Path(checkpoint)
        return [] if path.exists() else [(f"SAM {name} ({path})", "the path given does not exist")]
    root = Path(checkpoints_dir) if checkpoints_dir is not None else DEFAULT_CHECKPOINTS_DIR
    fetch = f"python -m sam_bridge download --sam {name} --checkpoints {root}"
    if family(name) == "sam2":
        from sam_bridge.sam2_hub import FILES, folder_of

        folder = folder_of(name, root)
        present = all((folder / f).is_file() for f in FILES)
        return [] if present else [(f"SAM {name} ({folder})", fetch)]
    path = checkpoint_path(name, root)
    return [] if path.is_file() else [(f"SAM {name} ({path})", fetch)]


def random_model(name: str) -> Any:
    """A released architecture (``vit_b`` ... ``sam2.1-large``) with random weights, in eval mode
    on CPU: for benchmarks (the time does not depend on the weights) and shape checks."""
    if family(name) == "sam2":
        from sam_bridge.sam2_build import build_sam2

        return build_sam2(name)
    from sam_bridge.build import build_sam

    return build_sam(name)
