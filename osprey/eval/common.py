"""What every benchmark shares: the model interface, generation settings, answer clean-up, the
resumable JSONL prediction store, the query loop, and the paper's numbers with the result table.

A benchmark module turns its data files into :class:`ImageTask` s (one image, the questions asked
about it), :func:`run_queries` asks the model what is not yet in the store, and a ``score``
function reads the stored raw answers back. Scoring never needs the model, so a finished (or
someone else's) predictions file can be scored on its own.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from osprey.core.errors import OspreyError

# ---------------------------------------------------------------------------------------------
# errors


class DataError(OspreyError, RuntimeError):
    """Input data or weights are missing or malformed; the message says what and where from."""


def missing_files(what: str, paths: Sequence[Path], source: str) -> DataError:
    """A :class:`DataError` naming up to five missing paths and where the files come from."""
    shown = "\n".join(f"  {p}" for p in list(paths)[:5])
    more = f"\n  ... and {len(paths) - 5} more" if len(paths) > 5 else ""
    return DataError(f"missing {what} ({len(paths)} file(s)):\n{shown}{more}\nSource: {source}")


def require_file(path: Path, what: str, source: str) -> Path:
    """Return ``path`` if it is a file, else raise :class:`DataError` naming its source."""
    if not Path(path).is_file():
        raise missing_files(what, [Path(path)], source)
    return Path(path)


def read_json(path: Path, what: str, source: str) -> Any:
    """Load a JSON file, turning a missing or corrupt file into a readable :class:`DataError`."""
    require_file(path, what, source)
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{what} at {path} is not valid JSON: {exc}") from exc


def read_jsonl(path: Path, what: str, source: str) -> list[dict[str, Any]]:
    """Load a JSON-lines file (blank lines ignored)."""
    require_file(path, what, source)
    rows = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{what} at {path}, line {n}: {exc}") from exc
    return rows


# ---------------------------------------------------------------------------------------------
# the model


class RegionModel(Protocol):
    """What the harness needs from a model (``osprey.Osprey`` implements it).

    ``image`` is (H, W, 3) uint8 RGB; ``masks`` are bool (H, W) arrays bound in order to the
    ``<mask><pos>`` pairs of ``message``, the whole first human turn. Returns the decoded answer
    (special tokens skipped, stripped).
    """

    def generate(
        self,
        image: np.ndarray,
        masks: Sequence[np.ndarray],
        message: str,
        *,
        max_new_tokens: int = 1024,
        do_sample: bool = False,
        temperature: float = 0.2,
        top_p: float = 0.6,
        seed: int | None = None,
    ) -> str: ...


@dataclass(frozen=True)
class GenerationConfig:
    """Greedy by default; ``paper()`` gives the paper's T=0.2, top_p=0.6 sampling.

    In sampling mode each query gets its own seed derived from ``seed`` and the query id, so a
    resumed run draws the same samples as an uninterrupted one, whatever the order.
    """

    max_new_tokens: int = 1024
    do_sample: bool = False
    temperature: float = 0.2
    top_p: float = 0.6
    seed: int = 0

    @classmethod
    def paper(cls, seed: int = 0, max_new_tokens: int = 1024) -> GenerationConfig:
        return cls(max_new_tokens, do_sample=True, temperature=0.2, top_p=0.6, seed=seed)

    def kwargs(self, query_id: str) -> dict[str, Any]:
        """Keyword arguments for :meth:`RegionModel.generate` for one query."""
        seed = (zlib.crc32(query_id.encode()) ^ self.seed) & 0x7FFFFFFF if self.do_sample else None
        return {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": seed,
        }

    def describe(self) -> str:
        if not self.do_sample:
            return f"greedy, max_new_tokens={self.max_new_tokens}"
        return (
            f"sampling T={self.temperature} top_p={self.top_p} seed={self.seed}, "
            f"max_new_tokens={self.max_new_tokens}"
        )


# ---------------------------------------------------------------------------------------------
# answer clean-up (the reference eval scripts; osprey.inference.prompt_format.postprocess_answer will own
# the shared part once it lands, these stay the eval-specific steps)

STOP = "</s>"


def strip_answer(text: str) -> str:
    """Strip, drop a trailing ``</s>``, strip again (every reference eval script does this)."""
    text = text.strip()
    if text.endswith(STOP):
        text = text[: -len(STOP)]
    return text.strip()


def after_colon(text: str) -> str:
    """The reference's ``text.split(':')[1]`` when a colon is present: the segment between the
    first and the second colon (the model sometimes answers ``region1: ...``)."""
    return text.split(":")[1] if ":" in text else text


# ---------------------------------------------------------------------------------------------
# images


def resolve_image(root: Path, name: str) -> Path:
    """``root/name``, else ``root/<last '_' part of name>`` (``COCO_val2014_000000123.jpg`` is
    stored as ``000000123.jpg`` in a merged COCO folder), else ``root/<city>/name`` (Cityscapes
    ``leftImg8bit/<split>/<city>/``). Returns the first candidate when none exists."""
    root = Path(root)
    candidates = [root / name, root / name.split("_")[-1], root / name.split("_")[0] / name]
    return next((c for c in candidates if c.is_file()), candidates[0])


def check_images(paths: Iterable[Path], source: str) -> None:
    """Raise one :class:`DataError` listing every missing image before a long run starts."""
    missing = sorted({p for p in paths if not p.is_file()})
    if missing:
        raise missing_files("images", missing, source)


# ---------------------------------------------------------------------------------------------
# queries and the resumable store


@dataclass
class Query:
    """One question to the model. ``masks(image)`` builds the region masks (bool (H, W)) lazily
    from the loaded image; ``meta`` is saved beside the answer (ground truth, ids)."""

    id: str
    message: str
    masks: Callable[[np.ndarray], list[np.ndarray]]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImageTask:
    """All queries about one image: the image is read once and reused for each of them."""

    image_path: Path
    queries: list[Query]


def read_records(path: Path) -> dict[str, dict[str, Any]]:
    """The complete records of a predictions file by id, without changing the file (a torn
    last line is ignored)."""
    raw = Path(path).read_text()
    lines = raw.splitlines() if raw.endswith("\n") else raw.splitlines()[:-1]
    out = {}
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}, line {n} is not JSON: {exc}") from exc
            out[str(rec["id"])] = rec
    return out


class PredictionStore:
    """Append-only JSON-lines file of ``{"id": ..., "answer": ..., **meta}`` records, one per
    query, flushed after each write. Reopening it resumes: ids already present are skipped. A
    torn last line (the process was killed mid-write) is dropped on open."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            self._load()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a")

    def _load(self) -> None:
        raw = self.path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            self.path.write_bytes(raw[: raw.rfind(b"\n") + 1])
        self.records = read_records(self.path)

    def __contains__(self, query_id: str) -> bool:
        return query_id in self.records

    def __len__(self) -> int:
        return len(self.records)

    def add(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()
        self.records[str(record["id"])] = record

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> PredictionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pending_tasks(tasks: Iterable[ImageTask], done: Callable[[str], bool]) -> list[ImageTask]:
    """The tasks that still have at least one query without a stored answer."""
    return [t for t in tasks if not all(done(q.id) for q in t.queries)]


def run_queries(
    model: RegionModel,
    tasks: Sequence[ImageTask],
    store: PredictionStore,
    gen: GenerationConfig,
    desc: str = "eval",
) -> int:
    """Ask ``model`` every query of ``tasks`` not yet in ``store``; returns how many were asked."""
    from tqdm import tqdm

    from osprey.core.images import load_image

    todo = pending_tasks(tasks, store.__contains__)
    total = sum(q.id not in store for t in todo for q in t.queries)
    asked = 0
    with tqdm(total=total, desc=desc, unit="q", dynamic_ncols=True) as bar:
        for task in todo:
            image = load_image(task.image_path)
            for q in task.queries:
                if q.id in store:
                    continue
                masks = q.masks(image)
                for m in masks:
                    if m.shape != image.shape[:2]:
                        raise DataError(
                            f"{q.id}: mask {m.shape} does not fit image {image.shape[:2]} "
                            f"({task.image_path})"
                        )
                answer = model.generate(image, masks, q.message, **gen.kwargs(q.id))
                store.add({"id": q.id, "answer": answer, **q.meta})
                asked += 1
                bar.update()
    return asked


def collect(tasks: Sequence[ImageTask], records: dict[str, dict[str, Any]]) -> Iterator[dict]:
    """The stored record of every query of ``tasks``, in task order; a missing one is an error
    (score a complete run, or pass ``--limit`` to score the first records only)."""
    missing = [q.id for t in tasks for q in t.queries if q.id not in records]
    if missing:
        raise DataError(
            f"{len(missing)} queries have no prediction (first: {missing[:3]}); run the model "
            "on them first, or pass --limit to score only the leading records"
        )
    for t in tasks:
        for q in t.queries:
            yield records[q.id]


# ---------------------------------------------------------------------------------------------
# the paper's numbers (osprey-reference §6; Osprey-7B* = Osprey-Chat-7b)


@dataclass(frozen=True)
class PaperNumber:
    metric: str
    value: float
    model: str
    table: str


def _rows(table: str, model: str, **metrics: float) -> list[PaperNumber]:
    return [PaperNumber(k.replace("_", "-"), v, model, table) for k, v in metrics.items()]


def _pope(split: str, acc: float, prec: float, rec: float, f1: float, yes: float) -> list:
    names = ("Acc", "Prec", "Rec", "F1", "Yes%")
    values = (acc, prec, rec, f1, yes)
    return [PaperNumber(f"{split}/{n}", v, "Osprey-7B*", "Table 6") for n, v in zip(names, values)]


PAPER: dict[str, list[PaperNumber]] = {
    "lvis": _rows("Table 3", "Osprey-7B", SS=65.24, S_IoU=38.19),
    "paco": _rows("Table 3", "Osprey-7B", SS=73.06, S_IoU=52.72),
    "cityscapes": _rows("Table 2", "Osprey-7B", PQ=50.64, AP=29.17, mIoU=49.78),
    "ade20k": _rows("Table 2", "Osprey-7B", PQ=41.89, AP=41.24, mIoU=29.63),
    "refcocog": _rows("Table 7", "Osprey-7B (RefCOCOg fine-tuned)", METEOR=16.6, CIDEr=108.3),
    "description": _rows("Table 4", "Osprey-7B", score=77.54)
    + _rows("Table 4", "Osprey-7B*", score=83.78),
    "ferret-bench": [
        PaperNumber("refer_desc", 72.2, "Osprey-7B*", "Table 5"),
        PaperNumber("refer_reason", 67.8, "Osprey-7B*", "Table 5"),
    ],
    "pope": _pope("random", 89.47, 93.40, 84.93, 88.97, 45.47)
    + _pope("popular", 87.83, 89.94, 85.20, 87.50, 47.37)
    + _pope("adversarial", 85.33, 85.43, 85.20, 85.31, 49.87),
}


def _fmt(v: float | None) -> str:
    if isinstance(v, int):
        return str(v)
    return "–" if v is None or not np.isfinite(v) else f"{v:.2f}"


def markdown_table(benchmark: str, ours: dict[str, float], notes: Sequence[str] = ()) -> str:
    """Our metrics beside the paper's: one row per metric (paper rows first, then any metric the
    paper does not report), followed by ``notes`` as a bullet list."""
    lines = [
        f"### {benchmark}",
        "",
        "| metric | ours | paper | paper model | source |",
        "| --- | ---: | ---: | --- | --- |",
    ]
    paper = PAPER.get(benchmark, [])
    for p in paper:
        lines.append(
            f"| {p.metric} | {_fmt(ours.get(p.metric))} | {p.value:.2f} | {p.model} | {p.table} |"
        )
    reported = {p.metric for p in paper}
    for k, v in ours.items():
        if k not in reported:
            lines.append(f"| {k} | {_fmt(v)} | – | | |")
    lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines).rstrip() + "\n"
