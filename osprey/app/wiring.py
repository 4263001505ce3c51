"""The page's wiring: every component's events to their handlers (:mod:`osprey.app.handlers`),
each in its lane, with the outputs it redraws."""

# No ``from __future__ import annotations``: Gradio reads handlers' annotations (gr.Request,
# gr.SelectData, gr.EventData) as real types to know what to inject.

import json
import os
from pathlib import Path
from types import SimpleNamespace

from osprey.app.guard import guarded
from osprey.app.handlers import (
    asking_handler,
    chip_index,
    describe_all_handler,
    describe_handler,
    edit_handler,
    everything_handler,
    lanes,
    open_handler,
    send_handler,
    top5_handler,
    view,
    write_export,
)
from osprey.app.zerogpu import gpu

QUIET = {"show_progress": "hidden"}  # the canvas and the chips say themselves what is going on


def wire(ui: SimpleNamespace, service, visitors) -> None:
    """Connect every event to one service call and a redraw."""
    lane = {k: {**v, "api_visibility": "private"} for k, v in lanes(service).items()}
    outs = [ui.canvas, ui.state, ui.chips]
    _wire_image(ui, service, visitors, [*outs, ui.chat], lane["encode"])
    _wire_canvas(ui, service, outs, lane)
    _wire_chips(ui, service, outs, lane["interactive"])
    _wire_answers(ui, service, outs, lane["answer"])
    fast = lane["interactive"]
    ui.export_json.click(guarded(lambda s: write_export("regions.json", json.dumps(service.export(s), indent=2))),
                         [ui.state], ui.export_file, **fast)  # fmt: skip
    ui.export_zip.click(guarded(lambda s: write_export("regions.zip", service.export_masks_zip(s))),
                        [ui.state], ui.export_file, **fast)  # fmt: skip


def _wire_image(ui: SimpleNamespace, service, visitors, outs: list, lane: dict) -> None:
    """Opening an image: an upload, an example, or what this browser kept (a reload)."""
    import gradio as gr

    from osprey.app.uploads import read_upload
    from osprey.core.errors import ServiceError

    def read(data) -> bytes:
        """The bytes of the image the page names: an example (by index or name; the app's own
        file) or a file sent to the upload route."""
        names = [Path(p).stem for p in ui.example_paths]
        index = data.get("index")
        if data.get("example") in names:
            index = names.index(data["example"])
        if isinstance(index, int) and not isinstance(index, bool):
            if not 0 <= index < len(ui.example_paths):
                raise ServiceError("There is no such example.")
            return Path(ui.example_paths[index]).read_bytes()
        return read_upload({"path": data.get("path")}, "image")

    run = open_handler(service, visitors, read)

    def on_open(s, evt: gr.EventData, request: gr.Request):
        data = evt._data if isinstance(evt._data, dict) else {}
        yield from run(s, data, request)

    on_open = guarded(on_open)
    for event in (ui.canvas.open_file, ui.canvas.open_example, ui.canvas.restore):
        event(on_open, [ui.state], outs, **lane, **QUIET)


def _wire_canvas(ui: SimpleNamespace, service, outs: list, lane: dict) -> None:
    """The canvas page decodes clicks itself (osprey/app/canvas_page.py); the server replays its
    prompt when a region is added, and decodes for the page when it cannot ('decode')."""
    import gradio as gr

    def add_from_page(s, value):
        ui.page.apply(s, value)
        service.add_region(s)

    @guarded
    @gpu
    def decode(s, evt: gr.EventData):
        return ui.page.preview(s, evt._data)

    fast = {**lane["interactive"], **QUIET}
    ui.canvas.add_region(edit_handler(service, add_from_page), [ui.state, ui.canvas], outs, **fast)
    ui.canvas.everything(everything_handler(service), [ui.state], outs, **lane["encode"], **QUIET)
    ui.everything.click(everything_handler(service), [ui.state], outs, **lane["encode"])
    for target in (ui.canvas, ui.chips):  # the canvas's shortcuts and the chips' buttons
        target.undo_edit(
            edit_handler(service, service.undo, chat=True), [ui.state], [*outs, ui.chat], **fast
        )
        target.redo_edit(
            edit_handler(service, service.redo, chat=True), [ui.state], [*outs, ui.chat], **fast
        )
    # Off the queue (no event stream: about half the latency); ZeroGPU needs queued GPU calls.
    off_queue = {"queue": False, "api_visibility": "private"}
    ui.canvas.decode(
        decode,
        [ui.state],
        [ui.canvas],
        **(fast if os.environ.get("SPACES_ZERO_GPU") else off_queue),
    )


def _wire_chips(ui: SimpleNamespace, service, outs: list, fast: dict) -> None:
    """Renaming and deleting a region from its chip, and "Clear all" (which also clears the
    chat and what this browser kept)."""
    import gradio as gr

    def named(data) -> dict:
        return data if isinstance(data, dict) else {}

    rename = edit_handler(
        service, lambda s, d: service.rename(s, chip_index(s, d), named(d).get("name", ""))
    )
    remove = edit_handler(service, lambda s, d: service.delete(s, chip_index(s, d)), chat=True)

    def on_rename(s, evt: gr.EventData):
        return rename(s, evt._data)

    def on_remove(s, evt: gr.EventData):
        return remove(s, evt._data)

    def clear(s):
        service.clear_regions(s)
        s.chat = []

    ui.chips.rename_region(on_rename, [ui.state], outs, **fast, **QUIET)
    ui.chips.remove_region(on_remove, [ui.state], [*outs, ui.chat], **fast, **QUIET)
    clear_all = edit_handler(service, clear, chat=True, forget=True)
    ui.chips.clear_all(clear_all, [ui.state], [*outs, ui.chat], **fast, **QUIET)


def _wire_answers(ui: SimpleNamespace, service, outs: list, lane: dict) -> None:
    """Everything the LLM answers: the quick actions, a typed question, top-5 and describe all.
    An answer runs in steps: the regions it is about (a mask on the canvas becomes a region
    first), the answer streaming into the chat, then the page redrawn with the answer kept
    (the canvas is never left out of a streamed update: Gradio would swap it for a plain copy).
    While an answer streams, Stop takes Send's place at the chat input."""
    import gradio as gr

    fast = {**lanes(service)["interactive"], "api_visibility": "private"}
    asking = asking_handler(service, ui.page)
    redraw = guarded(lambda s: view(s))

    def answering(trigger, answer, inputs: list, outputs: list, ask: bool = True) -> None:
        busy = trigger(lambda: gr.Textbox(submit_btn=False, stop_btn="Stop"), None, ui.question,
                       queue=False, api_visibility="private")  # fmt: skip
        if ask:
            busy = busy.then(
                asking, [ui.chips, ui.state, ui.canvas], [ui.asking, *outs], **fast, **QUIET
            )
        done = busy.success(answer, inputs, outputs, **lane)
        done.then(redraw, [ui.state], outs, **fast, **QUIET).then(
            lambda: gr.Textbox(submit_btn="Send", stop_btn=False), None, ui.question,
            queue=False, api_visibility="private",
        )  # fmt: skip

    for task, button in ui.tasks.items():
        answering(button.click, describe_handler(service, task), [ui.asking, ui.state], [ui.chat])
    answering(ui.question.submit, send_handler(service), [ui.question, ui.state],
              [ui.chat, ui.question], ask=False)  # fmt: skip
    answering(ui.top5.click, top5_handler(service), [ui.asking, ui.state, ui.vocab, ui.custom_vocab],
              [ui.chat])  # fmt: skip
    ui.question.stop(
        lambda s: service.stop(s), [ui.state], None, queue=False, api_visibility="private"
    )
    ui.describe_all.click(
        describe_all_handler(service), [ui.state, ui.label_all, ui.vocab, ui.custom_vocab],
        [ui.auto_table, *outs], **lane,
    )  # fmt: skip
