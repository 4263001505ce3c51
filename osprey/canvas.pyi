"""The canvas: the image the user clicks on, as a Gradio ``gr.HTML`` component whose page runs
SAM's decoder (``osprey/static/canvas.js`` + ``canvas.css``, onnxruntime-web vendored under
``osprey/static/vendor/``). Its value is a session, turned into the page's JSON view by
:class:`osprey.page.Page`; what the page sends back (its prompt) is in the value under ``page``.

Events: Gradio's own (``ui.canvas.change``, ...) and ``decode``, which the page triggers with
its prompt when it cannot run the decoder itself (:meth:`osprey.page.Page.preview` answers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from osprey.page import Page, PageView
from osprey.session import Session

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

class Canvas(gr.HTML):
    """``gr.HTML`` whose value is a :class:`Session` (or :class:`PageView`) on the way out and
    the page's JSON (with its prompt under ``page``) on the way in."""

    def __init__(self, page: Page, **kwargs: Any):
        self._page = page  # not `self.page`: Gradio would put it in the page's config
        gr.set_static_paths(static_paths(page))
        super().__init__(
            value=None,
            html_template=TEMPLATE,
            css_template=(STATIC / "canvas.css").read_text(),
            js_on_load=(STATIC / "canvas.js").read_text(),
            static_url=f"gradio_api/file={STATIC}",
            **kwargs,
        )

    def postprocess(self, value: Session | PageView | dict | None) -> dict[str, Any] | None:  # type: ignore[override]
        if isinstance(value, (Session, PageView)):
            return self._page.view(value)
        return value

    def preprocess(self, payload: Any) -> Any:
        return payload
    from collections.abc import Callable, Sequence
    from typing import TYPE_CHECKING, Any, Literal

    from gradio.blocks import Block

    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component
