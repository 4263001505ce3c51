"""The prompt format, for inference and training alike.

One function, :func:`encode`, turns a conversation into token ids and training labels. Labels are
assigned token by token from the tokenizer's character offsets into the one rendered string (never
by re-tokenising string pieces and counting, the LLaVA heuristic behind "tokenization mismatch"
and stage-3 losses of 0), and every supervised span is checked to end with its ``</s>``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from osprey.core import constants as C
from osprey.core import prompt_strings as P
from osprey.core.errors import OspreyError

# ---------------------------------------------------------------------------------------------
# templates


@dataclass(frozen=True)
class Template:
    """Vicuna-v1 style ("separator style TWO"): ``system + sep``, then per turn
    ``"USER: " + q + sep`` and ``"ASSISTANT: " + a + sep2``; an open turn ends with ``"ASSISTANT:"``."""

    name: str
    system: str
    roles: tuple[str, str] = ("USER", "ASSISTANT")
    sep: str = " "
    sep2: str = "</s>"


TEMPLATES = {
    "osprey_v1": Template("osprey_v1", P.SYSTEM_OSPREY_V1),  # all official inference and evaluation
    "vicuna_v1": Template("vicuna_v1", P.SYSTEM_VICUNA_V1),  # what the official training used
}


@dataclass(frozen=True)
class Turn:
    """One exchange; ``assistant=None`` marks the open turn the model answers."""

    user: str
    assistant: str | None = None


class RenderError(OspreyError, ValueError):
    """A conversation cannot be rendered into a valid sample (bad placeholders, empty answer, ...)."""


class ContextLengthError(RenderError):
    """The rendered sequence does not fit the model's context."""

    def __init__(self, length: int, limit: int):
        super().__init__(f"the prompt needs {length} tokens but the model's context is {limit}")
        self.length = length
        self.limit = limit


# ---------------------------------------------------------------------------------------------
# messages


def task_message(task: str) -> str:
    """First user message for a one-region task: ``category``, ``short``, ``detailed``,
    ``open-vocab`` or ``refcocog`` (the exact strings of the original, see osprey.core.prompt_strings)."""
    if task not in P.TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(P.TASKS)}")
    prefix, question = P.TASKS[task]
    return prefix + question


def regions_message(question: str, n_regions: int) -> str:
    """First user message about ``n_regions`` regions in the Osprey-724K multi-region format:
    ``<image>\\nThis provides an overview of the picture.\\nTher are N part regions in the picture:
    region1<mask><pos>,...`` then the question, which refers to regions as ``region1``, ``region2``."""
    if n_regions < 1:
        raise ValueError("a region question needs at least one region")
    return P.BEGIN + P.regions_sentence(n_regions) + question


def image_message(question: str) -> str:
    """First user message about the whole image (no region), as POPE: ``<image>\\n`` + question."""
    return P.IMAGE + "\n" + question


def chat_turns(
    history: Sequence[tuple[str, str]], question: str | None, n_regions: int
) -> list[Turn]:
    """A multi-turn chat about ``n_regions`` regions as Turns: the first remaining turn carries the
    image and region prefix (:func:`regions_message`, or :func:`image_message` without regions);
    ``question=None`` leaves no open turn (training). The questions and answers are user text
    (:func:`user_text`): whatever they hold, the regions are the ``n_regions`` given."""
    pairs: list[tuple[str, str | None]] = [
        *[(user_text(q), user_text(a)) for q, a in history],
        *([(user_text(question), None)] if question is not None else []),
    ]
    if not pairs:
        raise ValueError("a chat needs at least one question")
    turns = [Turn(q, a) for q, a in pairs]
    first = turns[0].user
    prefixed = regions_message(first, n_regions) if n_regions else image_message(first)
    turns[0] = Turn(prefixed, turns[0].assistant)
    return turns


# ---------------------------------------------------------------------------------------------
# rendering


def render(turns: Sequence[Turn], template: Template) -> tuple[str, list[tuple[int, int]]]:
    """Render ``turns`` to the prompt string, with the character spans ``(start, end)`` of the text
    the model is trained to produce (the separator space, the answer and its ``</s>``)."""
    if not turns:
        raise RenderError("a conversation needs at least one turn")
    user, assistant = template.roles
    text = template.system + template.sep
    spans = []
    for i, turn in enumerate(turns):
        text += f"{user}: {turn.user}{template.sep}"
        if turn.assistant is None:
            if i != len(turns) - 1:
                raise RenderError("only the last turn may be open")
            text += f"{assistant}:"
            continue
        if not turn.assistant.strip():
            raise RenderError(f"turn {i + 1} has an empty answer")
        text += f"{assistant}:"
        start = len(text)
        text += " " + turn.assistant + template.sep2
        spans.append((start, len(text)))
    return text, spans


@dataclass
class Encoded:
    """input_ids with the image placeholder expanded to ``num_image_tokens`` ids of
    ``IMAGE_TOKEN_INDEX``; labels are ``IGNORE_INDEX`` except on supervised tokens."""

    input_ids: list[int]
    labels: list[int]
    num_regions: int
    has_image: bool


# User text (questions, region names, earlier answers, vocabulary names) stands in a prompt with
# every "<" replaced by this private-use character, so no user character sequence can form a
# control token (<mask>, <pos>, <s>, </s>, <image>); tokenisation maps it back to "<" and reads
# the text with special-token matching off. One character for one: offsets stay aligned.
USER_LT = "\ue000"


def user_text(text: str) -> str:
    """``text`` from a user (or from the model's earlier answers) as it enters a prompt: plain
    text, never a control token (see :data:`USER_LT`)."""
    return text.replace("<", USER_LT)


def plain_text(text: str) -> str:
    """A prompt's text as a reader sees it (the inverse of :func:`user_text`)."""
    return text.replace(USER_LT, "<")


def _special_pattern(tokenizer) -> re.Pattern:
    """The tokenizer's added/special tokens (``<s>``, ``</s>``, ``<mask>``, ...), longest first."""
    tokens = sorted(tokenizer.added_tokens_encoder, key=len, reverse=True)
    return re.compile("(" + "|".join(re.escape(t) for t in tokens) + ")")


def _tokenize_piece(tokenizer, piece: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Ids and character spans of one image-free piece. Split at the special tokens the prompt
    itself holds (each becomes its id), each text chunk tokenised on its own, as the original's
    tokenizer did (a fresh SentencePiece word after each added token); user text (escaped with
    :data:`USER_LT`) cannot hold such a split point and is read with special tokens off."""
    ids: list[int] = []
    spans: list[tuple[int, int]] = []
    start = 0
    for chunk in _special_pattern(tokenizer).split(piece):
        if not chunk:
            continue
        special = tokenizer.added_tokens_encoder.get(chunk)
        if special is not None:
            ids.append(special)
            spans.append((start, start + len(chunk)))
        else:
            enc = tokenizer(
                plain_text(chunk), add_special_tokens=False, split_special_tokens=True,
                return_offsets_mapping=True,
            )  # fmt: skip
            ids += list(enc["input_ids"])
            spans += [(s + start, e + start) for s, e in enc["offset_mapping"]]
        start += len(chunk)
    return ids, spans


def tokenize_prompt(
    tokenizer, text: str, num_image_tokens: int
) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of a fully rendered prompt, with each token's character span in ``text``.

    The text is split on ``<image>``; each piece is tokenised on its own (BOS once, at the very
    start; as the original ``tokenizer_image_token``) and the image placeholder becomes
    ``num_image_tokens`` copies of ``IMAGE_TOKEN_INDEX`` (spans ``(-1, -1)``). User text inside
    (escaped by :func:`user_text`) never yields a special id.
    """
    pieces = text.split(P.IMAGE)
    if len(pieces) > 2:
        raise RenderError(f"a conversation holds at most one {P.IMAGE}, found {len(pieces) - 1}")
    ids, spans = [tokenizer.bos_token_id], [(0, 0)]
    base = 0
    for k, piece in enumerate(pieces):
        if k:
            ids += [C.IMAGE_TOKEN_INDEX] * num_image_tokens
            spans += [(-1, -1)] * num_image_tokens
            base += len(P.IMAGE)
        piece_ids, piece_spans = _tokenize_piece(tokenizer, piece)
        ids += piece_ids
        spans += [(s + base, e + base) for s, e in piece_spans]
        base += len(piece)
    return ids, spans


def _check_regions(ids: list[int], mask_id: int, pos_id: int) -> int:
    masks = [i for i, t in enumerate(ids) if t == mask_id]
    pos = [i for i, t in enumerate(ids) if t == pos_id]
    if [i + 1 for i in masks] != pos:
        raise RenderError(
            "every <mask> must be immediately followed by <pos>, and <pos> only follow <mask>"
        )
    return len(masks)


def encode(
    tokenizer,
    turns: Sequence[Turn],
    *,
    num_image_tokens: int,
    mask_token_id: int = C.MASK_TOKEN_ID,
    pos_token_id: int = C.POS_TOKEN_ID,
    template: str | Template = "osprey_v1",
    max_length: int | None = None,
) -> Encoded:
    """Tokenise a conversation the way the released weights saw it, with training labels.

    A token is supervised when its characters overlap an answer span of :func:`render` (the
    separator space, the answer, its ``</s>``); region placeholders never are.
    Raises :class:`RenderError` for invalid placeholders and :class:`ContextLengthError` when the
    result is longer than ``max_length``.
    """
    tmpl = TEMPLATES[template] if isinstance(template, str) else template
    text, answer_spans = render(turns, tmpl)
    ids, spans = tokenize_prompt(tokenizer, text, num_image_tokens)
    labels = _labels(ids, spans, answer_spans, (mask_token_id, pos_token_id))
    _check_labels(ids, labels, answer_spans, tokenizer.eos_token_id)
    n_regions = _check_regions(ids, mask_token_id, pos_token_id)
    if max_length is not None and len(ids) > max_length:
        raise ContextLengthError(len(ids), max_length)
    return Encoded(ids, labels, n_regions, has_image=C.IMAGE_TOKEN_INDEX in ids)


def _labels(
    ids: list[int], spans: list[tuple[int, int]], answers: list[tuple[int, int]], unsupervised
) -> list[int]:
    """Each token's label: its id where its characters overlap an answer span (sorted, disjoint)
    and it is not one of ``unsupervised``, else ignored; the first token (BOS) never. One pass:
    token starts do not decrease (image tokens, span (-1, -1), overlap nothing), so the answer
    spans that end before a token starts are done with for every later token."""
    labels, j = [], 0
    for tok, (start, end) in zip(ids, spans):
        while j < len(answers) and answers[j][1] <= start:
            j += 1
        hit = j < len(answers) and answers[j][0] < end and start < answers[j][1]
        labels.append(tok if hit and tok not in unsupervised else C.IGNORE_INDEX)
    labels[0] = C.IGNORE_INDEX
    return labels


def _check_labels(ids: list[int], labels: list[int], spans: list, eos_id: int) -> None:
    """One supervised run per answer, each holding exactly one </s>, at its end."""
    runs, prev = [], False
    for tok, lab in zip(ids, labels):
        sup = lab != C.IGNORE_INDEX
        if sup and not prev:
            runs.append([])
        if sup:
            runs[-1].append(tok)
        prev = sup
    if len(runs) != len(spans) or any(run.count(eos_id) != 1 or run[-1] != eos_id for run in runs):
        raise RenderError(
            f"label check failed: {len(runs)} supervised runs for {len(spans)} answers "
            "(an answer must not contain </s> or merge with its neighbours)"
        )


# ---------------------------------------------------------------------------------------------
# answers


_REGION_PREFIX = re.compile(r"^\s*region\s*\d+\s*:\s*", re.IGNORECASE)


def postprocess_answer(text: str, mode: str = "reference") -> str:
    """Clean a decoded answer.

    ``reference`` (category / short / detailed tasks and the evaluation, as the original): strip,
    drop a trailing ``</s>``, strip, and if the text contains ``:`` keep the piece between the first
    and the second ``:`` (the model sometimes answers ``region1: ...``). ``demo`` adds the original
    demo's loop guard: stop at the first repeated sentence. ``chat`` only removes a leading
    ``regionK:`` and repeated sentences, so free answers keep their colons.
    """
    text = text.strip()
    if text.endswith("</s>"):
        text = text[: -len("</s>")]
    text = text.strip()
    if mode == "chat":
        return _truncate_repeats(_REGION_PREFIX.sub("", text))
    if ":" in text:
        text = text.split(":")[1]
    if mode == "demo":
        return _demo_dedupe(text)
    if mode != "reference":
        raise ValueError(f"unknown mode {mode!r}")
    return text


def _demo_dedupe(text: str) -> str:
    """The original demo's loop guard: sentences (split on '.') up to the first repeat, each
    re-terminated with '.'."""
    kept: list[str] = []
    for sentence in text.split("."):
        if sentence in kept:
            break
        if sentence:
            kept.append(sentence)
    return "".join(s + "." for s in kept)


def _truncate_repeats(text: str) -> str:
    """Cut a looping answer at its first repeated sentence; leave other answers untouched."""
    sentences = text.split(".")
    seen: set[str] = set()
    for i, sentence in enumerate(sentences):
        key = sentence.strip()
        if key and key in seen:
            return ".".join(sentences[:i]).rstrip() + "."
        seen.add(key)
    return text
