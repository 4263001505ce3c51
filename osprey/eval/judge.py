"""LLM-judged benchmarks: detailed region description (paper Table 4) and Ferret-Bench referring
description / reasoning (Table 5).

The judge (GPT-4 in the paper; any OpenAI-compatible chat endpoint here) reads a text context of
the image, the question, a reference answer (Assistant 1, GPT-4's) and the model's answer
(Assistant 2), and replies with two 1-10 scores on its first line. The benchmark score is
``100 × mean(model score) / mean(reference score)`` over the judged questions.

Replies whose scores cannot be read are kept in the reviews file with ``scores: null`` and are
left out of the means; the result table says how many there were (the reference scripts counted
them as ``-1`` silently).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from osprey.core import prompt_strings
from osprey.core.masks import decode_segmentation

from .common import (
    DataError,
    ImageTask,
    PredictionStore,
    Query,
    after_colon,
    read_json,
    read_jsonl,
    resolve_image,
    strip_answer,
)

# ---------------------------------------------------------------------------------------------
# judge prompt (verbatim: Osprey's eval_gpt.py / rule.json, Ferret's ferret_gpt4_data/rule.json)

SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."
ROLE = "Assistant"

_TAIL = (
    "Please first output a single line containing only two values indicating the scores for "
    "Assistant 1 and 2, respectively. The two scores are separated by a space.\nIn the subsequent "
    "line, please provide a comprehensive explanation of your evaluation, avoiding any potential "
    "bias and ensuring that the order in which the responses were presented does not affect your "
    "judgment."
)
RULE_DESCRIPTION = (
    "We would like to request your feedback on the performance of two AI assistants in response "
    "to the user question displayed above. The user asks the question on observing an image. For "
    "your reference, the visual content in the image is represented with a few sentences "
    "describing the image.  In addition, specific object locations within the image are given, "
    "along with detailed coordinates. These coordinates are in the form of bounding boxes, "
    "represented as (x1, y1, x2, y2) with floating numbers ranging from 0 to 1. These values "
    "correspond to the top left x, top left y, bottom right x, and bottom right y. Also, several "
    "region description are given, each describing a box region of image, with detailed "
    "coordinates. \nPlease rate the helpfulness, relevance, accuracy, level of details of their "
    "responses. Each assistant receives an overall score on a scale of 1 to 10, where a higher "
    "score indicates better overall performance.\n" + _TAIL
)
RULE_FERRET_REFER = (
    "We would like to request your feedback on the performance of two AI assistants in response "
    "to the user question displayed above. The user asks the question about specific region of "
    "an image. For your reference, the visual content in the image is represented with five "
    "descriptive sentences describing the same image. In addition, specific object locations "
    "within the image are given, along with detailed coordinates. These coordinates are in the "
    "form of bounding boxes, represented as (x1, y1, x2, y2) with floating numbers ranging from 0 "
    "to 1. These values correspond to the top left x, top left y, bottom right x, and bottom "
    "right y. Also, the relationships between pairs of objects are provided, in the format of "
    "object -> relationship -> subject, where the object/subject are indexed by object id from "
    "previous object lists as well as the object names. Also, several region description are "
    "given, each describing a box region of image, with detailed coordinates. \nPlease rate the "
    "spatial correspondence, helpfulness, relevance, accuracy, level of details of their "
    "responses. Each assistant receives an overall score on a scale of 1 to 10, where a higher "
    "score indicates better overall performance.\n" + _TAIL
)
RULES = {
    "description": RULE_DESCRIPTION,
    "refer_desc": RULE_FERRET_REFER,
    "refer_reason": RULE_FERRET_REFER,
}


def review_content(context: str, question: str, reference: str, answer: str, rule: str) -> str:
    """The judge's user message. ``[Context]`` is followed by a backslash and no newline: the
    original f-string wrote ``\\{`` where ``\\n{`` was meant, and that is what GPT-4 saw."""
    return (
        f"[Context]\\{context}\n\n"
        f"[Question]\n{question}\n\n"
        f"[{ROLE} 1]\n{reference}\n\n[End of {ROLE} 1]\n\n"
        f"[{ROLE} 2]\n{answer}\n\n[End of {ROLE} 2]\n\n"
        f"[System]\n{rule}\n\n"
    )


# ---------------------------------------------------------------------------------------------
# reading the judge's reply

_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?!\.?\d|\w)")
_LABEL = re.compile(r"assistant\s*([12])", re.IGNORECASE)


@dataclass(frozen=True)
class JudgeScores:
    """``scores`` = (reference, model) or None; ``method`` tells which rule read them."""

    scores: tuple[float, float] | None
    method: str
    error: str | None = None


def _in_range(a: float, b: float, method: str) -> JudgeScores:
    if not (0 <= a <= 10 and 0 <= b <= 10):
        return JudgeScores(None, "failed", f"scores {a:g} {b:g} are outside 0..10")
    return JudgeScores((a, b), method)


def parse_scores(reply: str) -> JudgeScores:
    """Read the two scores from a judge reply.

    1. ``reference``: the original rule, first line, commas to spaces, exactly two
       space-separated numbers.
    2. ``first-line``: the first non-empty line with ``Assistant 1``/``2`` labels, ``/10`` and
       markup removed holds exactly two numbers.
    3. ``labelled``: anywhere in the reply, a number follows ``Assistant 1`` and another follows
       ``Assistant 2`` within a short phrase (``Assistant 1: 7``, ``Assistant 2 receives 8``).
    Anything else fails with a reason.
    """
    lines = [ln for ln in reply.splitlines() if ln.strip()]
    if not lines:
        return JudgeScores(None, "failed", "empty reply")
    parts = reply.split("\n")[0].replace(",", " ").split(" ")
    if len(parts) == 2:
        try:
            return _in_range(float(parts[0]), float(parts[1]), "reference")
        except ValueError:
            pass
    first = _LABEL.sub(" ", re.sub(r"/\s*10(?!\d)", " ", lines[0]))
    numbers = _NUMBER.findall(first)
    if len(numbers) == 2:
        return _in_range(float(numbers[0]), float(numbers[1]), "first-line")
    found = {}
    for m in _LABEL.finditer(reply):
        tail = re.sub(r"/\s*10(?!\d)", " ", reply[m.end() : m.end() + 40])
        num = _NUMBER.search(tail)
        if num and m.group(1) not in found:
            found[m.group(1)] = float(num.group(1))
    if len(found) == 2:
        return _in_range(found["1"], found["2"], "labelled")
    return JudgeScores(None, "failed", f"no score pair in the first line: {lines[0][:80]!r}")


# ---------------------------------------------------------------------------------------------
# benchmark data


@dataclass(frozen=True)
class JudgeItem:
    """One judged question: ``id`` matches the model query's id."""

    id: str
    question_id: Any
    category: str
    context: str
    question: str
    reference: str


DESCRIPTION_SOURCE = (
    "{name} from the Osprey repository (github.com/CircleRadon/Osprey, osprey/eval/description/); "
    "images from COCO 2014"
)
FERRET_SOURCE = {
    "osprey": "{name} from the Osprey repository (github.com/CircleRadon/Osprey, "
    "osprey/eval/ferret-bench/: boxes already converted to polygons)",
    "ferret": "{name} from Ferret's repository (github.com/apple/ml-ferret, "
    "ferret/eval/ferret_gpt4_data/)",
}
FERRET_SUBSETS = {"caption": "refer_desc", "reason": "refer_reason"}


def _region_query(qid: str, q: dict, category: str) -> Query:
    seg = q["annotation"]["segmentation"]
    return Query(
        id=qid,
        message=prompt_strings.BEGIN_DOT
        + q["text"].replace(prompt_strings.REGION_REF, prompt_strings.REGION),
        masks=lambda image: [decode_segmentation(seg, image.shape[0], image.shape[1])],
        meta={"question_id": q["question_id"], "category": category},
    )


def _group(pairs: Iterable[tuple[Path, Query]]) -> list[ImageTask]:
    by_image: dict[Path, list[Query]] = {}
    for path, q in pairs:
        by_image.setdefault(path, []).append(q)
    return [ImageTask(p, qs) for p, qs in by_image.items()]


def load_description(
    data_dir: Path, images: Path, limit: int | None
) -> tuple[list[ImageTask], list[JudgeItem]]:
    """``questions.json``, ``answers.json`` (GPT-4's) and ``prompt.json`` (judge context)."""
    files = {n: Path(data_dir) / f"{n}.json" for n in ("questions", "answers", "prompt")}
    loaded = {
        n: read_json(p, f"description {n}", DESCRIPTION_SOURCE.format(name=p.name))
        for n, p in files.items()
    }
    questions = loaded["questions"][:limit] if limit else loaded["questions"]
    answers = {a["question_id"]: a["text"] for a in loaded["answers"]}
    context = {c["image"]: c["prompt"] for c in loaded["prompt"]}
    pairs, items = [], []
    for q in questions:
        qid = f"description:{q['question_id']}"
        if q["question_id"] not in answers or q["image"] not in context:
            raise DataError(
                f"description question {q['question_id']}: no reference answer or context"
            )
        pairs.append((resolve_image(images, q["image"]), _region_query(qid, q, "description")))
        items.append(
            JudgeItem(
                qid,
                q["question_id"],
                "description",
                context[q["image"]],
                q["text"],
                answers[q["question_id"]],
            )
        )
    return _group(pairs), items


def _ferret_side(data_dir: Path, subset: str) -> dict[str, dict[Any, dict]]:
    """Ferret's question / context / answer rows of a subset, each by question id."""
    side = {}
    for part in ("question", "context", "answer"):
        name = f"refer_{subset}/{part}.jsonl"
        rows = read_jsonl(
            Path(data_dir) / name,
            f"Ferret-Bench {subset} {part}s",
            FERRET_SOURCE["ferret"].format(name=name),
        )
        side[part] = {r["question_id"]: r for r in rows}
    return side


def load_ferret(
    data_dir: Path, images: Path, subsets: Sequence[str], limit: int | None
) -> tuple[list[ImageTask], list[JudgeItem]]:
    """Osprey's ``box_refer_{subset}.json`` (model side) joined by ``question_id`` with Ferret's
    ``refer_{subset}/{question,context,answer}.jsonl`` (judge side)."""
    pairs, items = [], []
    for subset in subsets:
        category, name = FERRET_SUBSETS[subset], f"box_refer_{subset}.json"
        ours = read_json(
            Path(data_dir) / name,
            f"Ferret-Bench {subset} questions",
            FERRET_SOURCE["osprey"].format(name=name),
        )
        side = _ferret_side(data_dir, subset)
        for q in ours[:limit] if limit else ours:
            k = q["question_id"]
            if not all(k in rows for rows in side.values()):
                raise DataError(
                    f"Ferret-Bench {subset} question {k} is missing from Ferret's files"
                )
            qid = f"{subset}:{k}"
            pairs.append((resolve_image(images, q["image"]), _region_query(qid, q, category)))
            items.append(
                JudgeItem(
                    qid,
                    k,
                    category,
                    side["context"][k]["text"],
                    side["question"][k]["text"],
                    side["answer"][k]["text"],
                )
            )
    return _group(pairs), items


def clean_answer(answer: str, category: str) -> str:
    """Model answer as the judge sees it: description strips and keeps the text after the first
    colon (Osprey's script); Ferret strips and removes `` [..]`` box coordinates (Ferret's)."""
    text = strip_answer(answer)
    if category == "description":
        return after_colon(text)
    for match in re.findall(r"\[.*?\]", text):
        text = text.replace(" " + match, "")
    return text


# ---------------------------------------------------------------------------------------------
# running the judge


@dataclass(frozen=True)
class JudgeSettings:
    temperature: float = 0.2
    max_tokens: int = 1024
    seed: int | None = None
    attempts: int = 1
    concurrency: int = 4


def judge_one(api: Any, item: JudgeItem, answer: str, settings: JudgeSettings) -> dict[str, Any]:
    """Ask the judge (re-asking up to ``attempts`` times while the reply is unreadable)."""
    content = review_content(
        item.context,
        item.question,
        item.reference,
        clean_answer(answer, item.category),
        RULES[item.category],
    )
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}]
    for attempt in range(1, settings.attempts + 1):
        seed = None if settings.seed is None else settings.seed + attempt - 1
        reply = api.chat(
            messages, temperature=settings.temperature, max_tokens=settings.max_tokens, seed=seed
        ).text
        parsed = parse_scores(reply)
        if parsed.scores is not None:
            break
    return {
        "id": item.id,
        "question_id": item.question_id,
        "category": item.category,
        "reply": reply,
        "scores": list(parsed.scores) if parsed.scores else None,
        "parse": parsed.method,
        "error": parsed.error,
        "attempts": attempt,
    }


def run_judge(
    api_factory: Any,
    items: Sequence[JudgeItem],
    answers: dict[str, dict],
    reviews: PredictionStore,
    settings: JudgeSettings,
) -> int:
    """Judge every item without a stored review; returns how many were judged. The API client is
    built (``api_factory()``) only when something is left to judge. Failed requests are not
    stored, so a rerun retries them; they raise at the end."""
    from tqdm import tqdm

    from osprey.core.openai_client import map_concurrent

    todo = [it for it in items if it.id not in reviews]
    if not todo:
        return 0
    api = api_factory()
    failures: list[tuple[str, BaseException]] = []
    with tqdm(total=len(todo), desc="judge", unit="q", dynamic_ncols=True) as bar:
        work = lambda it: judge_one(api, it, answers[it.id]["answer"], settings)  # noqa: E731
        for item, result in map_concurrent(work, todo, settings.concurrency):
            if isinstance(result, BaseException):
                failures.append((item.id, result))
            else:
                reviews.add(result)
            bar.update()
    if failures:
        raise RuntimeError(
            f"{len(failures)} judge request(s) failed (first: {failures[0][0]}: {failures[0][1]!r}); "
            "rerun the same command to retry them"
        )
    return len(todo)


def summarize(reviews: Sequence[dict]) -> dict[str, float]:
    """Per category and overall: ``100 × mean(model) / mean(reference)`` over readable reviews,
    with the judged and unreadable counts."""
    out: dict[str, float] = {}
    categories = sorted({r["category"] for r in reviews})
    groups = [(c, [r for r in reviews if r["category"] == c]) for c in categories]
    if len(groups) > 1:
        groups.append(("all", list(reviews)))
    for name, rows in groups:
        pairs = np.array([r["scores"] for r in rows if r["scores"] is not None], dtype=float)
        key = "score" if name == "description" else name
        ok = len(pairs) and pairs[:, 0].mean() > 0
        out[key] = 100 * pairs[:, 1].mean() / pairs[:, 0].mean() if ok else float("nan")
        out[f"{key} judged"] = len(rows)
        out[f"{key} unreadable"] = len(rows) - len(pairs)
    return out
