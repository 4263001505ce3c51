"""The SAM a command may ask for: one table of names, the family each belongs to, and the one way
``--sam`` / ``--sam-model-type`` (and their environment variables) become a choice.

Two families: SAM 1 (``vit_b`` / ``vit_l`` / ``vit_h``, segment-anything's checkpoints) and
SAM 2.1 (``sam2.1-tiny`` / ``-small`` / ``-base-plus`` / ``-large``, Meta's released weights as
safetensors on the Hugging Face Hub, run by transformers). A Hub repository id (``owner/name``)
names another SAM 2 checkpoint in transformers' format. ``auto`` is decided per machine by the
app (:mod:`osprey.inference.hardware_fit`). Standard library only: parsing options never imports torch.
"""

from __future__ import annotations

import re

from sam_bridge.errors import SamBridgeError

SAM1_TYPES = ("vit_b", "vit_l", "vit_h")
# SAM 2.1 sizes -> the Hub repository of Meta's release (config.json + model.safetensors in
# transformers' format, beside the original .pt we never fetch; Apache-2.0).
SAM2_REPOS = {
    "sam2.1-tiny": "facebook/sam2.1-hiera-tiny",
    "sam2.1-small": "facebook/sam2.1-hiera-small",
    "sam2.1-base-plus": "facebook/sam2.1-hiera-base-plus",
    "sam2.1-large": "facebook/sam2.1-hiera-large",
}
SAM2_SIZES = tuple(SAM2_REPOS)
AUTO = "auto"
SAM_NAMES = (*SAM2_SIZES, *SAM1_TYPES)
CHOICES = (AUTO, *SAM_NAMES)  # what --help lists (a Hub repo id is accepted too)
# What ``auto`` means where no LLM shares the device (``python -m sam_bridge``, the labeller): on
# a CPU the size whose new image encodes in a few seconds on 2 cores; on a GPU the largest.
# The app's own rule also weighs the LLM's memory (osprey/inference/hardware_fit.py holds the same names).
AUTO_CPU = "sam2.1-tiny"
AUTO_GPU = "sam2.1-large"
TINY_SAM1 = "tiny"  # model_type of the tiny SAM 1 (kept: tests and the app know it)
TINY_SAM2 = "sam2.1-tiny-random"  # model_type of the tiny SAM 2

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


def is_hub_id(name: str) -> bool:
    """``owner/name`` as the Hugging Face Hub spells repositories (no path, no URL)."""
    return bool(_HUB_ID.match(name)) and ".." not in name


def family(name: str) -> str:
    """``"sam1"`` or ``"sam2"`` for a SAM name (a Hub id is a SAM 2 checkpoint); SamBridgeError
    for anything else (``auto`` included: resolve it first)."""
    if name in SAM1_TYPES or name == TINY_SAM1:
        return "sam1"
    if name in SAM2_REPOS or name == TINY_SAM2 or is_hub_id(name):
        return "sam2"
    raise SamBridgeError(f"unknown SAM {name!r}; choose from {', '.join(CHOICES)} or a Hub id")


def check_name(name: str, source: str = "--sam") -> str:
    """``name`` if it is ``auto``, a known SAM or a Hub id, else one clear SamBridgeError."""
    if name == AUTO or name in SAM_NAMES or is_hub_id(name):
        return name
    raise SamBridgeError(
        f"unknown SAM {name!r} ({source}); choose from {', '.join(CHOICES)} or a Hub id "
        f"(owner/name) of a SAM 2 checkpoint"
    )


def resolve_choice(sam: str | None, sam_model_type: str | None) -> str:
    """The SAM asked for by ``--sam`` (or OSPREY_SAM) and the older ``--sam-model-type`` (or
    SAM_MODEL_TYPE), which stays an alias: either alone decides, both must agree, neither means
    ``auto``. The result is checked (:func:`check_name`)."""
    if sam and sam_model_type and sam != sam_model_type:
        raise SamBridgeError(
            f"--sam {sam} and --sam-model-type {sam_model_type} disagree; give one of them "
            f"(or unset OSPREY_SAM / SAM_MODEL_TYPE)"
        )
    if sam_model_type and not sam:
        return check_name(sam_model_type, "--sam-model-type / SAM_MODEL_TYPE")
    return check_name(sam or AUTO, "--sam / OSPREY_SAM")


def auto_choice(device_type: str) -> str:
    """The SAM ``auto`` picks on a device of ``device_type`` (``cpu`` / ``cuda`` / ``mps``) when
    it has the device to itself: :data:`AUTO_GPU` on CUDA, :data:`AUTO_CPU` elsewhere."""
    return AUTO_GPU if device_type == "cuda" else AUTO_CPU


def tiny_family(name: str) -> str:
    """The family of the tiny model ``--tiny`` builds for ``--sam name``: SAM 2 for a SAM 2
    name, SAM 1 otherwise (``--tiny`` alone keeps the tiny SAM 1)."""
    return "sam2" if name != AUTO and family(name) == "sam2" else "sam1"
