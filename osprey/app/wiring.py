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
    describe_all_handler,
    describe_handler,
    edit_handler,
    everything_handler,
    lanes,
    region_index,
    restarted_chat,
    send_handler,
    top5_handler,
    view,
    write_export,
)
from osprey.app.zerogpu import gpu


def wire(ui: SimpleNamespace, service, visitors) -> None:
    """Connect every event to one service call and a redraw."""

    lane = {k: {**v, "api_visibility": "private"} for k, v in lanes(service).items()}
    outs = [ui.canvas, ui.state, ui.table, ui.selected, ui.pick, ui.status]
    _wire_image(ui, service, visitors, outs, lane)

    def edit(action, chat: bool = False):
        return edit_handler(service, action, chat)

    fast = lane["interactive"]
    _wire_canvas(ui, service, edit, outs, fast)
    ui.clear_clicks.click(edit(service.clear_prompt), [ui.state], outs, **fast)
    rename = edit(lambda s, i, name: service.rename(s, region_index(i), name))
    ui.rename.click(rename, [ui.state, ui.pick, ui.new_name], outs, **fast)
    delete = edit(lambda s, i: service.delete(s, region_index(i)), chat=True)
    ui.delete.click(delete, [ui.state, ui.pick], [*outs, ui.chat], **fast)
    for button, action in ((ui.undo, service.undo), (ui.redo, service.redo),
                           (ui.clear_all, service.clear_regions)):  # fmt: skip
        button.click(edit(action, chat=True), [ui.state], [*outs, ui.chat], **fast)
    for task, button in ui.tasks.items():
        button.click(describe_handler(service, task), [ui.selected, ui.chat, ui.state],
                     [ui.chat, *outs], **lane["answer"])  # fmt: skip
    send = {"fn": send_handler(service), "inputs": [ui.question, ui.chat, ui.state],
            "outputs": [ui.chat, ui.question, ui.state], **lane["answer"]}  # fmt: skip
    ui.send.click(**send)
    ui.question.submit(**send)
    ui.stop.click(
        lambda s: service.stop(s), [ui.state], None, queue=False, api_visibility="private"
    )
    _wire_labels(ui, service, outs, lane["answer"])
    ui.export_json.click(guarded(lambda s: write_export("regions.json", json.dumps(service.export(s), indent=2))),
                         [ui.state], ui.export_file, **fast)  # fmt: skip
    ui.export_zip.click(guarded(lambda s: write_export("regions.zip", service.export_masks_zip(s))),
                        [ui.state], ui.export_file, **fast)  # fmt: skip


def _wire_image(ui: SimpleNamespace, service, visitors, outs: list, lane: dict) -> None:
    """Opening an image (upload, example) and segment everything (clicks: the canvas page)."""
    import gradio as gr

    from osprey.app.uploads import read_upload
    from osprey.core.errors import ServiceError

    @guarded
    def on_upload(s, path, request: gr.Request):
        # Gradio's component gives the upload's path; it is read like any upload (inside the
        # upload folder, a regular file, bounded) and kept in memory, never reopened.
        data = read_upload({"path": path} if isinstance(path, str) else path, "image")
        visitors.opened(s, service.open_image(s, data), request)
        return (*view(s), restarted_chat("A new image"))

    @guarded
    def on_example(s, evt: gr.SelectData, request: gr.Request):
        index = evt.index if isinstance(evt.index, int) else -1
        if not 0 <= index < len(ui.example_paths):
            raise ServiceError("There is no such example.")
        data = Path(ui.example_paths[index]).read_bytes()  # the app's own file, chosen by index
        visitors.opened(s, service.open_image(s, data), request)
        return (*view(s), restarted_chat("A new image"))

    ui.upload.upload(on_upload, [ui.state, ui.upload], [*outs, ui.chat], **lane["encode"])
    ui.examples.select(on_example, [ui.state], [*outs, ui.chat], **lane["encode"])
    ui.everything.click(everything_handler(service), [ui.state], outs, **lane["encode"])


def _wire_canvas(ui: SimpleNamespace, service, edit, outs: list, fast: dict) -> None:
    """The canvas page decodes clicks itself (osprey/app/canvas_page.py); the server replays its prompt when
    a region is added, and decodes for the page when it cannot ('decode')."""
    import gradio as gr

    def add_from_page(s, value):
        ui.page.apply(s, value)
        service.add_region(s)

    @guarded
    @gpu
    def decode(s, evt: gr.EventData):
        return ui.page.preview(s, evt._data)

    ui.add.click(edit(add_from_page), [ui.state, ui.canvas], outs, **fast)
    # Off the queue (no event stream: about half the latency); ZeroGPU needs queued GPU calls.
    lane = (
        fast if os.environ.get("SPACES_ZERO_GPU") else {"queue": False, "api_visibility": "private"}
    )
    ui.canvas.decode(decode, [ui.state], [ui.canvas], **lane)


def _wire_labels(ui: SimpleNamespace, service, outs: list, answer_lane: dict) -> None:
    """Top-5 over the picked vocabulary, and describe-all (optionally labelled by it): LLM work,
    in the answer lane."""
    ui.top5.click(
        top5_handler(service), [ui.selected, ui.chat, ui.vocab, ui.custom_vocab, ui.state],
        [ui.chat, ui.tops, *outs], **answer_lane,
    )  # fmt: skip
    ui.describe_all.click(
        describe_all_handler(service), [ui.state, ui.label_all, ui.vocab, ui.custom_vocab],
        [ui.auto_table, *outs], **answer_lane,
    )  # fmt: skip
