"""POPE object-hallucination benchmark on COCO (paper Table 6, Osprey-Chat).

Image-level, no regions: the message is ``<image>\\n`` + the question. Data: the POPE repository's
``output/coco/coco_pope_{random,popular,adversarial}.json`` (JSON lines despite the extension:
``question_id``, ``image``, ``text``, ``label`` yes/no), images from COCO val2014.

Answer parsing is the reference's: lower-case, keep the text before the first ``.``, drop commas,
split on single spaces; the answer is "no" if the words contain ``No``, ``not`` or ``no``, else
"yes".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .common import DataError, ImageTask, Query, read_jsonl, resolve_image

SPLITS = ("random", "popular", "adversarial")
SOURCE = (
    "coco_pope_{split}.json from the POPE repository (https://github.com/AoiDragon/POPE, "
    "output/coco/); images from COCO val2014"
)


def message(question: str) -> str:
    return "<image>\n" + question


def parse_answer(answer: str) -> str:
    """Raw model answer -> "yes" or "no" (the reference stores the answer lower-cased first)."""
    text = answer.lower()
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if {"No", "not", "no"} & set(words) else "yes"


def load(data_dir: Path, images: Path, splits: Sequence[str], limit: int | None) -> list[ImageTask]:
    """Questions of ``splits`` (the first ``limit`` of each), grouped into one task per image so
    that each image is read once; ids are ``split:question_id``."""
    by_image: dict[Path, list[Query]] = {}
    for split in splits:
        rows = read_jsonl(
            Path(data_dir) / f"coco_pope_{split}.json",
            f"POPE {split} questions",
            SOURCE.format(split=split),
        )
        for row in rows[:limit] if limit else rows:
            if row.get("label") not in ("yes", "no"):
                raise DataError(
                    f"POPE {split} question {row.get('question_id')}: label must be yes/no"
                )
            by_image.setdefault(resolve_image(images, row["image"]), []).append(
                Query(
                    id=f"{split}:{row['question_id']}",
                    message=message(row["text"]),
                    masks=lambda image: [],
                    meta={"split": split, "label": row["label"]},
                )
            )
    return [ImageTask(path, queries) for path, queries in by_image.items()]


def confusion_metrics(predictions: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and yes-ratio (×100) with "yes" as the positive class.
    A ratio with a zero denominator (e.g. precision when nothing is called "yes") is 0."""
    pairs = list(zip(predictions, labels, strict=True))
    if not pairs:
        raise DataError("no predictions to score")
    tp = sum(p == "yes" and t == "yes" for p, t in pairs)
    fp = sum(p == "yes" and t == "no" for p, t in pairs)
    tn = sum(p == "no" and t == "no" for p, t in pairs)
    fn = sum(p == "no" and t == "yes" for p, t in pairs)
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {
        "Acc": 100 * (tp + tn) / len(pairs),
        "Prec": 100 * prec,
        "Rec": 100 * rec,
        "F1": 100 * f1,
        "Yes%": 100 * (tp + fp) / len(pairs),
    }


def score(records: Sequence[dict]) -> dict[str, float]:
    """Per-split metrics keyed ``split/metric`` (e.g. ``random/Acc``) plus question counts."""
    out: dict[str, float] = {}
    for split in SPLITS:
        rows = [r for r in records if r["split"] == split]
        if rows:
            m = confusion_metrics(
                [parse_answer(r["answer"]) for r in rows], [r["label"] for r in rows]
            )
            out |= {f"{split}/{k}": v for k, v in m.items()} | {f"{split}/questions": len(rows)}
    return out
