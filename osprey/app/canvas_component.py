"""The canvas: the image the user clicks on, as a Gradio ``gr.HTML`` component whose page runs
SAM's decoder (``osprey/app/static/canvas.js`` + ``canvas.css``, onnxruntime-web vendored under
``osprey/app/static/vendor/``). Its value is a session, turned into the page's JSON view by
:class:`osprey.app.canvas_page.Page`; what the page sends back (its prompt) is in the value under ``page``.

Events: Gradio's own (``ui.canvas.change``, ...) and ``decode``, which the page triggers with
its prompt when it cannot run the decoder itself (:meth:`osprey.app.canvas_page.Page.preview` answers).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import gradio as gr

from osprey.app.canvas_page import Page, PageView
from osprey.app.session import Session

STATIC = Path(__file__).resolve().parent / "static"

TEMPLATE = """<div class="osc osc-empty">
  <div class="osc-stage">
    <img class="osc-base" alt="The image: click on an object to segment it">
    <canvas class="osc-overlay" tabindex="0" aria-label="Image: click to segment. Arrow keys
      move a cursor, Enter clicks there, Backspace undoes the last click, Escape clears."></canvas>
  </div>
  <div class="osc-placeholder">Upload an image (or pick an example) to start.</div>
  <div class="osc-status" role="status"></div>
  <div class="osc-thumbs" aria-label="SAM's candidates: part or whole"></div>
</div>"""


def static_paths(page: Page) -> list[Path]:
    """What the app must serve: the page's code and vendored runtime, and the page's files."""
    return [STATIC, page.assets.directory]


def canvas(page: Page, **kwargs: Any) -> gr.HTML:
    """The canvas component: a ``gr.HTML`` whose value is a :class:`Session` (or
    :class:`PageView`) on the way out, turned into the page's JSON view by ``page``, and the
    page's JSON (its prompt under ``page``) on the way in. ``kwargs`` go to ``gr.HTML``."""
    gr.set_static_paths(static_paths(page))
    html = gr.HTML(
        value=None,
        html_template=TEMPLATE,
        css_template=(STATIC / "canvas.css").read_text(),
        js_on_load=(STATIC / "canvas.js").read_text(),
        static_url=f"gradio_api/file={STATIC}",
        **kwargs,
    )
    # Set on the instance, not by subclassing: Gradio writes a .pyi stub next to the source of
    # every Component subclass when the class is created (an import-time write into the tree).
    html.postprocess = functools.partial(_view, page)
    return html


def _view(page: Page, value: Session | PageView | dict | None) -> dict[str, Any] | None:
    if isinstance(value, (Session, PageView)):
        return page.view(value)
    return value
