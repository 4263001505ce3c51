"""The regions as chips beside the chat, a Gradio ``gr.HTML`` component: each region in its
colour with its name (edited in place), a tick to ask about it, and × to delete it; undo, redo
and "Clear all" above them. Its page is ``osprey/app/static/chips.js`` with ``chips.css``.

Its value on the way out is :func:`osprey.app.canvas_page.region_chips` of the session; on the
way in the page adds the ticked chips' ids under ``ticked``. Events (wired in
:mod:`osprey.app.wiring`): ``rename_region`` and ``remove_region`` (a chip's ``id``, and the
name), ``undo_edit``, ``redo_edit`` and ``clear_all``. Hovering (or focusing) a chip asks the
canvas to highlight the region's mask (a DOM event in the page, no request).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

STATIC = Path(__file__).resolve().parent / "static"

TEMPLATE = """<div class="orc orc-none">
  <div class="orc-head">
    <h2 class="orc-title">Regions</h2>
    <span class="orc-hint">Tick some to ask about them (none ticked: the mask or all)</span>
    <span class="orc-edits">
      <button type="button" class="orc-undo" aria-label="Undo the last region edit" title="Undo (Ctrl+Z)">↶</button>
      <button type="button" class="orc-redo" aria-label="Redo" title="Redo (Ctrl+Shift+Z)">↷</button>
      <button type="button" class="orc-clear" title="Delete every region and the chat, and what this browser kept">Clear all</button>
    </span>
  </div>
  <ul class="orc-list" aria-label="Regions"></ul>
</div>"""


def chips(**kwargs: Any) -> gr.HTML:
    """The chips component (``kwargs`` go to ``gr.HTML``)."""
    return gr.HTML(
        value={"regions": [], "can_undo": False, "can_redo": False, "image": False},
        html_template=TEMPLATE,
        css_template=(STATIC / "chips.css").read_text(),
        js_on_load=(STATIC / "chips.js").read_text(),
        **kwargs,
    )
