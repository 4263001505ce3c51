"""The text each LLM request is built from, and the request itself.

The layouts follow the original one-shot examples (``templates``) line for line, so the model
sees its own example's format: given the example's inputs, :func:`description_context` and
:func:`qa_context` reproduce ``DESCRIPTION_ASK_EXAMPLE`` (with ``<region1>`` where the original
example has the typo ``<regin1>``) and ``QA_ASK_EXAMPLE``, and :func:`part_context` reproduces
``PART_ASK_EXAMPLE``. Boxes are ``[x1,y1,x2,y2]`` normalised by the image size, 3 decimals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from osprey.datagen import templates
from osprey.datagen.records import region_tag

# ---------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class Region:
    category: str
    box: str  # from format_box
    captions: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageText:
    """What an LLM is told about one image."""

    description: str | None  # a detailed image description, preferred over captions
    captions: tuple[str, ...]  # image captions
    objects: tuple[tuple[str, str], ...]  # (category, box) of every object, description task
    regions: tuple[Region, ...]


# ---------------------------------------------------------------------------------------------
# pieces


def format_box(bbox: Sequence[float], width: int, height: int) -> str:
    """COCO (x, y, w, h) pixels -> ``"[x1,y1,x2,y2]"`` in [0, 1] with 3 decimals."""
    x, y, w, h = (float(v) for v in bbox)
    coords = (x / width, y / height, (x + w) / width, (y + h) / height)
    return "[" + ",".join(f"{min(max(c, 0.0), 1.0):.3f}" for c in coords) + "]"


def region_list_phrase(n: int) -> str:
    """``<region1>``, ``<region1> and <region2>``, ``<region1>, <region2> and <region3>``."""
    tags = [region_tag(k) for k in range(1, n + 1)]
    return tags[0] if n == 1 else ", ".join(tags[:-1]) + " and " + tags[-1]


# ---------------------------------------------------------------------------------------------
# contexts


def description_context(image: ImageText) -> str:
    """Context of the detailed-description task (layout of ``DESCRIPTION_ASK_EXAMPLE``)."""
    lines: list[str] = []
    if image.description:
        lines += ["The detailed description of this image:", image.description]
    elif image.captions:
        lines += ["Several descriptions of this image:", *image.captions]
    lines += [f"{category}: {box}" for category, box in image.objects]
    n = len(image.regions)
    lines.append(f"Specially, there are {n} special regions: {region_list_phrase(n)}.")
    if any(r.captions for r in image.regions):
        lines.append(
            "For each one region, you receive several sentences as the description of this "
            "region in this image you are observing."
        )
    blocks = [
        "\n".join([f"For {region_tag(k)}({r.category}: {r.box}):", *r.captions])
        for k, r in enumerate(image.regions, 1)
    ]
    return "\n".join(lines) + "\n" + "\n\n".join(blocks)


def qa_context(image: ImageText) -> str:
    """Context of the conversation and short-form tasks (layout of ``QA_ASK_EXAMPLE``)."""
    text = ""
    if image.description:
        text += f'Whole description: "{image.description}"\n\n'
    elif image.captions:
        text += "Several descriptions of the whole image:\n" + "\n".join(image.captions) + "\n\n"
    text += "Description of each region is listed below:\n\n"
    for k, r in enumerate(image.regions, 1):
        text += "\n".join([f"{region_tag(k)} ({r.category}: {r.box}):", *r.captions]) + "\n\n"
    return text


def part_context(lines: Sequence[tuple[str, Sequence[str]]]) -> str:
    """Context of the part-attribute task: ``<regionK> name: attr, attr, ...`` per region."""
    return "\n".join(
        f"{region_tag(k)} {name}: {', '.join(attrs)}" for k, (name, attrs) in enumerate(lines, 1)
    )


# ---------------------------------------------------------------------------------------------
# requests

_PROMPTS = {  # task -> (system message, example question, example answer)
    "description": (
        templates.DESCRIPTION_SYSTEM,
        templates.DESCRIPTION_ASK_EXAMPLE,
        templates.DESCRIPTION_RES_EXAMPLE,
    ),
    "conversation": (
        templates.CONVERSATION_SYSTEM,
        templates.QA_ASK_EXAMPLE,
        templates.CONVERSATION_RES_EXAMPLE,
    ),
    "short-form": (
        templates.SHORT_FORM_SYSTEM,
        templates.QA_ASK_EXAMPLE,
        templates.SHORT_FORM_RES_EXAMPLE,
    ),
    "part-level": (templates.PART_SYSTEM, templates.PART_ASK_EXAMPLE, templates.PART_RES_EXAMPLE),
}


def chat_messages(task: str, context: str) -> list[dict[str, str]]:
    """System message, the one-shot example, then the image's context (as the paper did)."""
    system, ask, res = _PROMPTS[task]
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": ask},
        {"role": "assistant", "content": res},
        {"role": "user", "content": context},
    ]
