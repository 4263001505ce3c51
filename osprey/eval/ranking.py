"""``--scoring likelihood``: rank the benchmark's own class list instead of generating an answer
and matching it to a class with a sentence encoder.

Each region's record keeps the top-1 class as its ``answer`` (so the paper's metrics read it as
they read a generated answer), the top-5 with probabilities, and with ``keep_probs`` every class's
probability (the open-vocabulary segmentation post-processing needs them all). The model ranks all
the regions of an image in one call, over the image's shared prompt prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from osprey.inference.vocabularies import Vocabulary, resolve

from .common import DataError, ImageTask, PredictionStore, pending_tasks

TOP = 5


class RankingModel(Protocol):
    """What likelihood scoring needs from a model (``osprey.Osprey`` through the CLI's adapter):
    (Q, K) class probabilities of ``vocabulary`` for the Q masks, rows summing to 1."""

    def rank(
        self, image: np.ndarray, masks: Sequence[np.ndarray], vocabulary: Vocabulary
    ) -> np.ndarray: ...


def benchmark_vocabulary(spec: str, categories: Sequence[str]) -> Vocabulary:
    """``annotations``: the distinct ground-truth names of the file (``_`` and ``:`` as the
    reference normalises them); else a built-in name, a file or comma-separated names."""
    if spec != "annotations":
        return resolve(spec, files=True)
    names = sorted({" ".join(c.replace("_", " ").replace(":", " ").split()) for c in categories})
    return resolve(names)


def record(query_id: str, probs: np.ndarray, vocabulary: Vocabulary, keep_probs: bool) -> dict:
    """The stored record of one region: top-1 as ``answer``, ``top5``, optionally ``probs``."""
    order = np.argsort(-probs, kind="stable")[:TOP]
    rec: dict[str, Any] = {
        "id": query_id,
        "answer": vocabulary.names[order[0]],
        "top5": [[vocabulary.names[k], round(float(probs[k]), 6)] for k in order],
        "scoring": "likelihood",
        "vocabulary": vocabulary.name,
    }
    if keep_probs:
        rec["probs"] = [round(float(p), 7) for p in probs]
    return rec


def run_rankings(
    model: RankingModel,
    tasks: Sequence[ImageTask],
    store: PredictionStore,
    vocabulary: Vocabulary,
    *,
    keep_probs: bool = False,
    desc: str = "eval",
) -> int:
    """Rank ``vocabulary`` for every query of ``tasks`` not yet in ``store`` (one region per
    query), all the regions of an image in one call. Returns how many regions were ranked."""
    from tqdm import tqdm

    from osprey.core.images import load_image

    todo = pending_tasks(tasks, store.__contains__)
    total = sum(q.id not in store for t in todo for q in t.queries)
    with tqdm(total=total, desc=desc, unit="region", dynamic_ncols=True) as bar:
        for task in todo:
            image = load_image(task.image_path)
            queries = [q for q in task.queries if q.id not in store]
            masks = []
            for q in queries:
                (mask,) = q.masks(image)
                if mask.shape != image.shape[:2]:
                    raise DataError(f"{q.id}: mask {mask.shape} does not fit image {image.shape}")
                masks.append(mask)
            probs = model.rank(image, masks, vocabulary)
            for q, p in zip(queries, probs):
                store.add({**record(q.id, p, vocabulary, keep_probs), **q.meta})
            bar.update(len(queries))
    return total


def check_records(records: dict[str, dict], scoring: str, vocabulary: str | None) -> None:
    """A predictions file holds one kind of answers: refuse to mix generated and ranked ones, or
    rankings over different vocabularies."""
    for rec in records.values():
        kind = rec.get("scoring", "generate")
        if kind != scoring or (vocabulary is not None and rec.get("vocabulary") != vocabulary):
            got = kind + (f" over {rec.get('vocabulary')}" if kind == "likelihood" else "")
            raise DataError(
                f"the predictions file holds {got} answers (record {rec['id']}), not {scoring}"
                + (f" over {vocabulary}" if vocabulary else "")
                + ": use another --out or --predictions"
            )


def accuracy(records: Sequence[dict], truth: Sequence[str], names: Sequence[str]) -> dict:
    """Top-1 / top-5 accuracy (×100) of ranked records against ground-truth class names (compared
    normalised: case, ``_``, ``:`` and spaces), and the share of ground truth in the vocabulary."""
    known = {_norm(n) for n in names}
    top1 = top5 = inside = 0
    for rec, gt in zip(records, truth, strict=True):
        ranked = [_norm(n) for n, _ in rec["top5"]]
        top1 += ranked[:1] == [_norm(gt)]
        top5 += _norm(gt) in ranked
        inside += _norm(gt) in known
    n = max(1, len(records))
    return {"top-1": 100 * top1 / n, "top-5": 100 * top5 / n, "GT in vocabulary": 100 * inside / n}


def _norm(name: str) -> str:
    return " ".join(name.replace("_", " ").replace(":", " ").casefold().split())
