"""The page's event handlers: each one service call and a redraw (:func:`view`), wrapped by
:func:`~osprey.app.guard.guarded`; the Gradio lanes that keep clicks apart from answers; which
session belongs to which tab (:class:`Visitors`)."""

from __future__ import annotations

import tempfile
import weakref
from pathlib import Path

from osprey.app.fair_share import whole_image
from osprey.app.guard import guarded, user_error
from osprey.app.layout import TASK_LABELS
from osprey.app.zerogpu import gpu


def view(s, message: str = "") -> tuple:
    """What the page shows of session ``s``: the canvas (its page draws the session, see
    osprey/app/canvas_page.py), state, region table, region pickers (values are region indices), and a
    message for the user."""
    import gradio as gr

    rows = [[n, r.category, r.caption, r.area] for n, r in zip(s.names(), s.regions)]
    choices = [(n, i) for i, n in enumerate(s.names())]
    return (
        s, s, rows, gr.update(choices=choices, value=[]),
        gr.update(choices=choices, value=None), message,
    )  # fmt: skip


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


def edit_handler(service, action, chat: bool = False):
    """A page handler: ``action(session, *inputs)``, then a redraw with its message (if a str),
    the session held meanwhile (one visitor's edits run one after the other, never interleaved:
    a rename and a delete at the same moment cannot meet a half-changed region list).
    ``chat``: the handler also shows the chat starting over when the regions were renumbered."""
    import gradio as gr

    def run(s, *args):
        with service.editing(s):
            revision = s.revision
            message = action(s, *args)
            shown = view(s, message if isinstance(message, str) else "")
            if not chat:
                return shown
            return (*shown, restarted_chat() if s.revision != revision else gr.skip())

    return guarded(run)


def restarted_chat(why: str = "The regions changed") -> list[dict]:
    """The chat as shown once it starts over (the model's history was cleared)."""
    return [{"role": "assistant", "content": f"({why}, so the chat starts over.)"}]


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


def region_index(value) -> int:
    from osprey.app.service import ServiceError

    if value is None or value == "":
        raise ServiceError("Pick a region in the list first.")
    return int(value)


def describe_handler(service, task: str):
    @guarded
    @gpu
    def run(selected, chat, s):
        answers = service.describe(s, task, [region_index(i) for i in selected or []])
        for name, text in answers:
            chat = [*chat, {"role": "user", "content": f"{TASK_LABELS[task]} of {name}"},
                    {"role": "assistant", "content": text}]  # fmt: skip
        return (chat, *view(s))

    return run


def send_handler(service):
    import gradio as gr

    @gpu
    def run(question, chat, s):
        chat = [*chat, {"role": "user", "content": question}, {"role": "assistant", "content": ""}]
        try:
            for reply in service.ask(s, question):
                text = reply.text or (f"(waiting for a free place: {reply.waiting} in line)"
                                      if reply.waiting else "")  # fmt: skip
                chat[-1] = {"role": "assistant", "content": text}
                yield chat, "", s
                if reply.note:
                    gr.Info(reply.note)
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
        return view(s, f"{n} masks found: switch the click mode to 'pick (everything)' to choose "
                       "one, or describe all.")  # fmt: skip

    return run


def _vocabulary(choice: str, custom: str) -> str:
    """The picker's vocabulary: a built-in name, or the custom text."""
    return custom if choice == "custom" else choice


def top5_handler(service):
    from osprey.app import top_classes

    @guarded
    @gpu
    def run(selected, chat, choice, custom, s):
        indices = [region_index(i) for i in selected or []]
        tops = top_classes.classify(
            service.osprey, s, _vocabulary(choice, custom), indices, top_k=5
        )
        for name, top in tops:
            text = " · ".join(f"{n} {p:.2f}" for n, p in top)
            chat = [*chat, {"role": "user", "content": f"Top-5 of {name}"},
                    {"role": "assistant", "content": text}]  # fmt: skip
        return (chat, [(name, dict(top)) for name, top in tops], *view(s))

    return run


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
