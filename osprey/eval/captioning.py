"""Region captioning on RefCOCOg val (paper Table 7): METEOR and CIDEr with pycocoevalcap.

Data: ``finetune_refcocog_val_with_mask.json`` (Hugging Face dataset ``sunshine-lwt/Osprey-ValData``),
COCO format: each ``images`` entry is one referring expression (``caption``) with its own id, and
its ``annotations`` give the region; images from COCO train2014 (``file_name`` such as
``COCO_train2014_000000123.jpg`` is also found as ``000000123.jpg`` in a merged COCO folder). The
paper evaluates the RefCOCOg-fine-tuned checkpoint ``sunshine-lwt/Osprey-7b-Refercocog-finetuning``.

The PTB tokenizer and METEOR are Java programs shipped inside pycocoevalcap: ``java`` must be on
the PATH.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from osprey.core import prompt_strings
from osprey.core.masks import decode_segmentation

from .common import DataError, ImageTask, Query, after_colon, read_json, resolve_image, strip_answer

MESSAGE = prompt_strings.BEGIN_DOT + prompt_strings.QUESTION_REFCOCOG
SOURCE = (
    "finetune_refcocog_val_with_mask.json from the Hugging Face dataset sunshine-lwt/Osprey-ValData "
    "(https://huggingface.co/datasets/sunshine-lwt/Osprey-ValData); images from COCO train2014"
)


def clean_caption(answer: str) -> str:
    """Raw answer -> caption as the reference scores it: strip, drop ``</s>``, text after the first
    colon, and a newline after every ``.`` (which the PTB tokenizer turns back into a space)."""
    return after_colon(strip_answer(answer)).replace(".", ".\n")


def _mask_fn(segmentation, h: int, w: int):
    return lambda image: [decode_segmentation(segmentation, h, w)]


def load(annotations: Path, images: Path, limit: int | None = None) -> list[ImageTask]:
    """One task per image entry (the first ``limit`` entries), one query per annotation."""
    data = read_json(annotations, "RefCOCOg annotations", SOURCE)
    by_image: dict[int, list[dict]] = {}
    for ann in data.get("annotations", []):
        by_image.setdefault(ann["image_id"], []).append(ann)
    entries = data.get("images", [])
    tasks = []
    for img in entries[:limit] if limit else entries:
        if "caption" not in img:
            raise DataError(f"{annotations}: image {img.get('id')} has no 'caption'")
        h, w = int(img["height"]), int(img["width"])
        queries = [
            Query(
                id=str(ann["id"]),
                message=MESSAGE,
                masks=_mask_fn(ann["segmentation"], h, w),
                meta={"image_id": img["id"], "reference": img["caption"]},
            )
            for ann in by_image.get(img["id"], [])
        ]
        tasks.append(ImageTask(resolve_image(images, img["file_name"]), queries))
    return tasks


def require_java() -> str:
    """Path of ``java``, or a :class:`DataError` explaining that METEOR and the tokenizer need it."""
    java = shutil.which("java")
    if java is None:
        raise DataError(
            "METEOR and the PTB tokenizer of pycocoevalcap are Java programs, and `java` is not on "
            "the PATH. Install a Java runtime (e.g. `apt-get install default-jre-headless`, Java 8+) "
            "or score later with --predictions on a machine that has one."
        )
    return java


def score(records: Sequence[dict]) -> dict[str, float]:
    """METEOR and CIDEr (×100) of stored ``{"id", "answer", "reference"}`` records."""
    if not records:
        raise DataError("no predictions to score")
    require_java()
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    gts = tok.tokenize({r["id"]: [{"caption": r["reference"]}] for r in records})
    res = tok.tokenize({r["id"]: [{"caption": clean_caption(r["answer"])}] for r in records})
    meteor, _ = Meteor().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    return {"METEOR": 100 * float(meteor), "CIDEr": 100 * float(cider), "regions": len(records)}
