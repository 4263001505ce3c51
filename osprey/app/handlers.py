"""The page's event handlers: each one service call and a redraw (:func:`view`), wrapped by
:func:`~osprey.app.guard.guarded`; the Gradio lanes that keep clicks apart from answers; which
session belongs to which tab (:class:`Visitors`). The conversation shown lives on the session
(``Session.chat``), so a reload can bring it back."""

from __future__ import annotations

import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path

from osprey.app import saved
from osprey.app.canvas_page import Page, PageView, chip_indices, region_chips
from osprey.app.fair_share import whole_image
from osprey.app.guard import guarded, user_error
from osprey.app.layout import TASK_LABELS
from osprey.app.zerogpu import gpu

ANSWERING = "…"  # the answer's place in the chat until its first words come


def view(s, message: str = "", **page) -> tuple:
    """What the page shows of session ``s`` after a change: the canvas (its page draws the
    session, see osprey/app/canvas_page.py; ``page``: more of :class:`PageView`), the state, and
    the region chips. ``message`` is for the user (under the image)."""
    return PageView(s, message=message, **page), s, region_chips(s)


def lanes(service) -> dict[str, dict]:
    """Gradio concurrency groups, so that a click never queues behind an answer: ``interactive``
    (clicks, candidates, region edits, exports: SAM's decoder, milliseconds), ``encode`` (a new
    image: SAM's encoder and the vision tower, seconds on a CPU) and ``answer`` (anything the LLM
    generates: as many at once as the batching engine takes plus its line; one without it)."""
    engine = service.osprey.generator.engine
    answers = engine.admission.max_active + engine.admission.max_waiting if engine else 1
    return {
        "interactive": {"concurrency_id": "interactive", "concurrency_limit": 4},
        "encode": {"concurrency_id": "encode", "concurrency_limit": 1},
        "answer": {"concurrency_id": "answer", "concurrency_limit": answers},
    }


API_LANES = {"segment": "encode", "describe": "answer", "describe_all": "answer",
             "session_open": "encode", "session_ask": "answer", "classify": "answer"}  # fmt: skip


def edit_handler(service, action, chat: bool = False, **page):
    """A page handler: ``action(session, *inputs)``, then a redraw with its message (if a str),
    the session held meanwhile (one visitor's edits run one after the other, never interleaved:
    a rename and a delete at the same moment cannot meet a half-changed region list).
    ``chat``: the handler also shows the chat starting over when the regions were renumbered.
    ``page``: more of the canvas's :class:`PageView` (``forget=True``: "Clear all")."""
    import gradio as gr

    def run(s, *args):
        with service.editing(s):
            revision = s.revision
            message = action(s, *args)
            if chat and s.revision != revision and s.chat:
                s.chat = restarted_chat()
            shown = view(s, message if isinstance(message, str) else "", **page)
            if not chat:
                return shown
            return (*shown, s.chat if s.revision != revision else gr.skip())

    return guarded(run)


def restarted_chat(why: str = "The regions changed") -> list[dict]:
    """The conversation as shown once it starts over (the model's history was cleared)."""
    return [{"role": "assistant", "content": f"({why}, so the chat starts over.)"}]


def open_handler(service, visitors, read):
    """Open an image in two steps (:meth:`RegionChat.open_steps`): the canvas can take clicks as
    soon as SAM has the image, and says that Osprey is still reading it. ``read(data)``: the
    image's bytes for the page's event data (an upload or an example). With a kept copy in
    ``data["saved"]`` (a reload), the regions and the chat come back. An image the app cannot use
    is refused in the canvas's own words (the page shows what it showed before)."""

    def run(s, data, request) -> Iterator[tuple]:
        from osprey.core.errors import ServiceError

        had_chat = bool(s.chat)
        try:
            steps = service.open_steps(s, read(data))
            handle = next(steps)
        except ServiceError as exc:  # the page goes back to what it showed, and says why
            yield (*view(s, str(exc), refused=True), s.chat)
            return
        visitors.opened(s, handle, request)
        message = ""
        if "saved" in data:
            message = _restored(service, s, data["saved"])
        elif had_chat:
            s.chat = restarted_chat("A new image")
        yield (*view(s, message, preparing="answers"), s.chat)
        for _ in steps:
            pass
        yield (*view(s, message), s.chat)

    return run


def _restored(service, s, copy) -> str:
    """Put the browser's kept copy back into ``s``; the message says what came back."""
    from osprey.core.errors import ServiceError

    try:
        n = saved.restore(s, copy, service.max_regions)
    except ServiceError as exc:
        return f"The image is back; {exc}"
    turns = "" if not s.chat else " and the chat"
    return f"Restored from this browser: the image, {n} region{'s' * (n != 1)}{turns}."


class Visitors:
    """Which session belongs to which browser tab, so that a tab that closes frees its session at
    once (Gradio itself keeps a closed tab's state for an hour)."""

    def __init__(self, service):
        self.service = service
        self._sessions: weakref.WeakValueDictionary = weakref.WeakValueDictionary()

    def opened(self, s, _handle, request) -> None:
        if request is not None and request.session_hash:
            self._sessions[request.session_hash] = s

    def left(self, request) -> None:
        s = self._sessions.pop(request.session_hash, None) if request is not None else None
        if s is not None:
            self.service.close(s)

    def forget(self, s) -> None:
        """gr.State's delete callback (an idle session expired)."""
        self.service.close(s)

    def __len__(self) -> int:
        return len(self._sessions)


def chip_index(s, data) -> int:
    """The region a chip's event names (by the chip's id: never a region that has gone)."""
    from osprey.core.errors import ServiceError

    found = chip_indices(s, [data.get("id")] if isinstance(data, dict) else None)
    if not found:
        raise ServiceError("That region is no longer there.")
    return found[0]


def asked_regions(service, page: Page, s, chips, canvas) -> list[int]:
    """The regions a quick action is about: the ticked chips; with none ticked, the mask on the
    canvas (added now as the next region); with no mask either, every region."""
    ticked = chip_indices(s, (chips or {}).get("ticked") if isinstance(chips, dict) else None)
    if ticked:
        return ticked
    prompt = (canvas or {}).get("page") if isinstance(canvas, dict) else None
    if isinstance(prompt, dict) and prompt.get("clicks"):
        with service.editing(s):
            page.apply(s, canvas)
            service.add_region(s)
            return [len(s.regions) - 1]
    return list(range(len(s.regions)))


def asking_handler(service, page: Page):
    """The first step of a quick action: which regions it is about (:func:`asked_regions`, a
    mask on the canvas added now), and the page redrawn with them."""

    @guarded
    def run(chips, s, canvas):
        indices = asked_regions(service, page, s, chips, canvas) if s.image is not None else []
        return (indices, *view(s))

    return run


def describe_handler(service, task: str):
    """A quick action (Category, Short / Detailed description) on the regions ``indices``: one
    region's answer streams into the chat; several are answered together in one batch."""

    @gpu
    def run(indices, s) -> Iterator[list]:
        try:
            if len(indices) == 1:
                yield from _stream_one(service, s, task, indices[0])
                return
            yield [*s.chat, {"role": "assistant", "content": ANSWERING}]
            for name, text in service.describe(s, task, indices):
                s.chat = [*s.chat, {"role": "user", "content": f"{TASK_LABELS[task]} of {name}"},
                          {"role": "assistant", "content": text}]  # fmt: skip
            yield s.chat
        except Exception as exc:
            raise user_error(exc) from exc

    return run


def _stream_one(service, s, task: str, index: int) -> Iterator[list]:
    """One region's answer, streamed into the chat (kept in the chat at its end)."""

    asked = [{"role": "user", "content": f"{TASK_LABELS[task]} of {s.names()[index]}"}]
    yield [*s.chat, *asked, {"role": "assistant", "content": ANSWERING}]
    yield from _into_chat(s, asked, service.describe_stream(s, task, index))


def _into_chat(s, asked: list[dict], replies) -> Iterator[list]:
    """The chat with ``asked`` and the answer so far, for each of ``replies``; at the last one
    the exchange is kept in the session's chat (and its note shown)."""
    import gradio as gr

    for reply in replies:
        shown = [
            *s.chat,
            *asked,
            {"role": "assistant", "content": reply.text or _waiting(reply.waiting)},
        ]
        if reply.done:
            s.chat = shown
            if reply.note:
                gr.Info(reply.note)
        yield shown


def _waiting(position: int) -> str:
    return f"(waiting for a free place: {position} in line)" if position else ANSWERING


def send_handler(service):
    """A typed question: its answer streams into the chat; the exchange is kept at its end."""

    @gpu
    def run(question, s) -> Iterator[tuple]:
        asked = [{"role": "user", "content": question}]
        try:
            for shown in _into_chat(s, asked, service.ask(s, question)):
                yield shown, ""
        except Exception as exc:
            raise user_error(exc) from exc

    return run


def everything_handler(service):
    @whole_image
    @guarded
    @gpu
    def run(s):
        n = service.segment_everything(s)
        if not n:
            return view(s, "Segment everything found no mask; try a denser grid.")
        return view(s, f"{n} masks found: pick one with the Pick tool (P), or describe all.")

    return run


def _vocabulary(choice: str, custom: str) -> str:
    """The picker's vocabulary: a built-in name, or the custom text."""
    return custom if choice == "custom" else choice


def top5_handler(service):
    """Top-5 of the picked vocabulary for the regions ``indices`` (or the whole image), as bars
    in the chat."""
    from osprey.app import top_classes

    @guarded
    @gpu
    def run(indices, s, choice, custom):
        vocabulary = _vocabulary(choice, custom)
        tops = top_classes.classify(service.osprey, s, vocabulary, indices, top_k=5)
        for name, top in tops:
            s.chat = [*s.chat, {"role": "user", "content": f"Top-5 of {name}"},
                      {"role": "assistant", "content": bars(top)}]  # fmt: skip
        return s.chat

    return run


def bars(top: list[tuple[str, float]]) -> str:
    """Top-k classes as a small table with bars (the numbers are read out, the bars hidden)."""
    rows = ["| class | probability |", "| --- | --- |"]
    for name, p in top:
        bar = "█" * max(1, round(p * 20)) if p > 0 else ""
        rows.append(f'| {name} | {p:.2f} <span aria-hidden="true">{bar}</span> |')
    return "\n".join(rows)


def describe_all_handler(service):
    from osprey.app import top_classes

    @whole_image
    @guarded
    @gpu
    def run(s, label, choice, custom):
        vocabulary = top_classes.user_vocabulary(_vocabulary(choice, custom)) if label else None
        rows = service.describe_all(s)
        if vocabulary is not None:
            rows = top_classes.label_all(service.osprey, s, rows, vocabulary)
        table = [[r["mask"], r["category"], r["caption"], r["area"], r.get("label", ""),
                  r.get("prob", "")] for r in rows]  # fmt: skip
        return (table, *view(s))

    return run


def write_export(name: str, data: str | bytes) -> str:
    path = Path(tempfile.mkdtemp(prefix="osprey-export-")) / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)
