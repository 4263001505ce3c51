"""What a browser keeps of a session, so that a reload of the tab (or a restart of the server)
loses nothing: the regions with their names and answers, the model's chat history and the
conversation as shown. The page stores it (with the image itself) in the browser's own storage;
nothing is kept on the server. No Gradio here.

A copy comes back from the browser as untrusted JSON: :func:`restore` checks every value as it
checks a user's input (sizes, lengths, region names, masks that decode to the image's size) and
refuses the whole copy with one message when anything is off.
"""

from __future__ import annotations

from typing import Any

from osprey.app import drawing
from osprey.app.session import LabelError, Region, Session, check_label
from osprey.core.errors import MaskError, ServiceError
from osprey.core.masks import check_rle, decode_rle

VERSION = 1
MAX_TEXT = 8000  # characters of one answer, question or chat message
MAX_TURNS = 200  # chat history turns, and twice as many messages shown
MAX_COUNTS = 4 << 20  # characters of one mask's compressed RLE
SOURCES = ("click", "box", "everything", "upload")
FIELDS = ("category", "caption", "detail")


def snapshot(session: Session) -> dict[str, Any] | None:
    """The JSON the page keeps for ``session`` (None without an image)."""
    if session.image is None:
        return None
    regions = [
        {"rle": {"size": list(r.rle["size"]), "counts": r.rle["counts"]},
         "label": r.label, "source": r.source, "category": r.category, "caption": r.caption,
         "detail": r.detail, "top": [[n, p] for n, p in r.top], "vocabulary": r.vocabulary}
        for r in session.regions
    ]  # fmt: skip
    return {"version": VERSION, "key": session.image.key, "regions": regions,
            "history": [list(t) for t in session.history], "chat": list(session.chat)}  # fmt: skip


def restore(session: Session, data: Any, max_regions: int) -> int:
    """Put a kept copy back into ``session`` (its image already open): regions, history and the
    conversation shown. Returns the number of regions; :class:`ServiceError` if the copy does not
    fit this image or any value is off (the session is then left as it was)."""
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ServiceError("What this browser kept is from another version of the app.")
    if session.image is None or data.get("key") != session.image.key:
        raise ServiceError("What this browser kept belongs to another image.")
    raw = _list(data.get("regions"), max_regions, "regions")
    regions: list[Region] = []
    for i, item in enumerate(raw):
        regions.append(_region(item, i, session, [r.label for r in regions]))
    history = [_turn(t) for t in _list(data.get("history"), MAX_TURNS, "history")]
    chat = [_message(m) for m in _list(data.get("chat"), 2 * MAX_TURNS, "chat")]
    session.regions, session.history, session.chat = regions, history, chat
    session.undo_stack, session.redo_stack = [], []
    session.revision += 1
    return len(regions)


def _region(item: Any, index: int, session: Session, others: list[str]) -> Region:
    """One kept region, checked: its mask decodes to the image's size and is not empty."""
    if not isinstance(item, dict):
        raise _refused("a region is not an object")
    rle = item.get("rle")
    if not isinstance(rle, dict) or not isinstance(rle.get("counts"), str):
        raise _refused("a region has no mask")
    size = [session.image.height, session.image.width]
    if rle.get("size") != size or len(rle["counts"]) > MAX_COUNTS:
        raise _refused("a region's mask is not of this image's size")
    try:
        check_rle(rle["counts"], *size)  # before pycocotools reads it
        if not decode_rle({"size": size, "counts": rle["counts"]}).any():
            raise _refused("a region's mask is empty")
        label = check_label(_str(item.get("label", "")), others)
    except (MaskError, LabelError) as exc:
        raise _refused(str(exc)) from exc
    source, top = item.get("source"), _list(item.get("top", []), 50, "top")
    return Region(
        {"size": size, "counts": rle["counts"]}, drawing.color(index),
        source if source in SOURCES else "click", label=label,
        **{f: _str(item.get(f, "")) for f in FIELDS},
        top=tuple((_str(n), _probability(p)) for n, p in (_pair(t) for t in top)),
        vocabulary=_str(item.get("vocabulary", ""))[:200],
    )  # fmt: skip


def _turn(item: Any) -> tuple[str, str]:
    question, answer = _pair(item)
    return _str(question), _str(answer)


def _message(item: Any) -> dict[str, str]:
    if not isinstance(item, dict) or item.get("role") not in ("user", "assistant"):
        raise _refused("a chat message has no role")
    return {"role": item["role"], "content": _str(item.get("content"))}


def _pair(item: Any) -> tuple[Any, Any]:
    if not isinstance(item, (list, tuple)) or len(item) != 2:
        raise _refused("a pair of values is malformed")
    return item[0], item[1]


def _list(value: Any, limit: int, what: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > limit:
        raise _refused(f"its {what} are malformed or too many")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise _refused("a text is not text or too long")
    return value


def _probability(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise _refused("a probability is not between 0 and 1")
    return float(value)


def _refused(why: str) -> ServiceError:
    return ServiceError(f"What this browser kept could not be restored ({why}).")
