"""Turn LLM replies into record bodies, or reject them with a countable reason.

Both parsers accept what the one-shot examples ask for, plus the small variations chat models
produce (markdown bold around the markers, missing numbers, a one-line preamble such as "Sure,
here it is:", paragraphs inside an answer). Anything else raises :class:`RecordError` with one
of these reasons: ``empty_reply``, ``unparseable``, ``unbalanced`` (questions and answers do not
alternate), ``empty_turn``, ``unknown_region`` (``<regionK>`` with K outside 1..N),
``duplicate_region``, ``missing_region`` (description without an entry for every region),
``bad_tag`` (any other ``<...>`` text, which the loader would mangle).
"""

from __future__ import annotations

import re
from typing import Any

from osprey.datagen.records import REGION_TAG, RecordError, check_text, region_tag

# A marker starts a line; "**Question 3:**", "Answer:", "- Question 2 :" all count.
_DECOR = r"[ \t]*[*_#>-]*[ \t]*"
_QA_MARKER = re.compile(
    rf"^{_DECOR}(question|answer)(?:[ \t]*\d+)?[ \t]*[*_]*[ \t]*[:：][ \t]*[*_]*[ \t]*",
    re.IGNORECASE | re.MULTILINE,
)
_DESCRIPTION_MARKER = re.compile(
    rf"^{_DECOR}<region(\d+)>[ \t]*[*_]*[ \t]*[:：][ \t]*[*_]*[ \t]*", re.MULTILINE
)


def _require_text(text: str | None) -> str:
    if text is None or not text.strip():
        raise RecordError("empty_reply", "the reply is empty")
    return text


def _segments(text: str, marker: re.Pattern[str], what: str) -> list[tuple[re.Match[str], str]]:
    """(marker match, the text up to the next marker) for each marker; text before the first
    marker is a preamble and is dropped."""
    marks = list(marker.finditer(text))
    if not marks:
        raise RecordError("unparseable", f"no {what} lines in the reply")
    ends = [m.start() for m in marks[1:]] + [len(text)]
    return [(m, text[m.end() : end]) for m, end in zip(marks, ends)]


def _paragraphs(text: str) -> str:
    """Strip each line, keep paragraph breaks (at most one empty line)."""
    lines = [line.strip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


# ---------------------------------------------------------------------------------------------
# conversations (conversation, short-form, part-level)


def parse_qa(text: str | None, n_regions: int) -> list[dict[str, Any]]:
    """``Question N: ...`` / ``Answer N: ...`` pairs -> ``conversations`` turns."""
    turns: list[dict[str, Any]] = []
    for match, body in _segments(_require_text(text), _QA_MARKER, "'Question'/'Answer'"):
        kind = match.group(1).lower()
        expected = "question" if len(turns) % 2 == 0 else "answer"
        if kind != expected:
            raise RecordError("unbalanced", f"turn {len(turns)}: {kind} where {expected} belongs")
        turns.append({"from": "human" if kind == "question" else "gpt", "value": _paragraphs(body)})
    if len(turns) % 2:
        raise RecordError("unbalanced", "the last question has no answer")
    for i, turn in enumerate(turns):
        check_text(turn["value"], n_regions, f"turn {i}")
    return turns


# ---------------------------------------------------------------------------------------------
# detailed descriptions


def _description_text(body: str, k: int, n_regions: int) -> str:
    """One region's description on one line; mentions of other regions become plain
    ``regionJ``, as the conversation loader renders them."""
    text = " ".join(body.split())
    check_text(text, n_regions, f"the description of {region_tag(k)}")
    return REGION_TAG.sub(lambda m: f"region{m.group(1)}", text)


def parse_description(text: str | None, n_regions: int) -> list[str]:
    """``<regionK>: ...`` paragraphs -> the ``description`` list, one entry per region, in order."""
    entries: dict[int, str] = {}
    for match, body in _segments(_require_text(text), _DESCRIPTION_MARKER, "'<regionK>:'"):
        k = int(match.group(1))
        if not 1 <= k <= n_regions:
            raise RecordError("unknown_region", f"reply describes region {k} of {n_regions}")
        if k in entries:
            raise RecordError("duplicate_region", f"reply describes {region_tag(k)} twice")
        entries[k] = _description_text(body, k, n_regions)
    missing = [k for k in range(1, n_regions + 1) if k not in entries]
    if missing:
        raise RecordError("missing_region", f"no description for {region_tag(missing[0])}")
    return [f"{region_tag(k)}: {entries[k]}" for k in range(1, n_regions + 1)]
