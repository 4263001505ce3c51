"""The canvas: the image the user opens, clicks, drags and zooms, with its tools, as a Gradio
``gr.HTML`` component. Its page is ``osprey/app/static/canvas.js`` (the interaction) with
``canvas.css``; SAM's decoder runs in ``static/decoder.js`` (onnxruntime-web, vendored under
``static/vendor/``). Its value is a session, turned into the page's JSON view by
:class:`osprey.app.canvas_page.Page`; what the page sends back (its prompt) is in the value under
``page``.

Events the page triggers (wired in :mod:`osprey.app.wiring`): ``open_file`` (an upload's path),
``open_example`` (an example's index), ``restore`` (what this browser kept, after a reload),
``decode`` (a prompt, when the page cannot run the decoder itself; :meth:`Page.preview`
answers), ``add_region``, ``everything``, ``undo_edit`` and ``redo_edit`` (shortcuts).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from osprey.app.canvas_page import Page, PageView
from osprey.app.session import Session

STATIC = Path(__file__).resolve().parent / "static"
MODULES = ("canvas.js", "decoder.js", "prompts.js", "viewport.js", "store.js", "sam2_decoder.js")

TOOLS = (("add", "Add", "+", "Add: click adds a point (right-click or Alt-click subtracts)"),
         ("subtract", "Subtract", "−", "Subtract: click removes (S toggles)"),
         ("box", "Box", "▭", "Box: drag, or click two corners (B)"),
         ("pick", "Pick", "◎", "Pick a mask of 'segment everything' (P)"))  # fmt: skip

SHORTCUTS = (
    ("Click", "add a point"), ("Right-click, Alt-click", "subtract a point"),
    ("Drag", "draw a box"), ("Wheel, + and −, pinch", "zoom (0: fit)"),
    ("Space + drag, middle button, two fingers", "pan"), ("A", "add the mask as a region"),
    ("Esc", "clear the clicks"), ("Backspace", "undo the last click"),
    ("Ctrl+Z, Ctrl+Shift+Z", "undo, redo"), ("1, 2, 3", "pick a candidate"),
    ("S", "toggle subtract"), ("B, P", "box, pick tool"), ("E", "segment everything"),
    ("O", "open an image"), ("Arrows, Enter", "move a cursor on the image, click there"),
    ("?", "this list"),
)  # fmt: skip


def _template() -> str:
    """The canvas's HTML: a toolbar, the stage (image, overlay, drop zone, progress), the
    status line and SAM's candidates, the examples, the shortcuts popover (static: the page
    fills it in; no ``${`` or ``{{`` here, Gradio reads the template as one)."""
    tools = "".join(
        f'<button type="button" class="osc-tool" data-tool="{key}" aria-pressed="false" '
        f'title="{tip}"><span aria-hidden="true">{icon}</span> <span class="osc-word">{name}</span></button>'
        for key, name, icon, tip in TOOLS
    )
    keys = "".join(f"<dt>{k}</dt><dd>{what}</dd>" for k, what in SHORTCUTS)
    return f"""<div class="osc osc-empty">
  <div class="osc-bar" role="toolbar" aria-label="Image tools">
    <div class="osc-tools" role="group" aria-label="Click tool">{tools}</div>
    <button type="button" class="osc-add-region osc-primary" title="Keep the mask as the next region (A)">Add region</button>
    <button type="button" class="osc-clear" aria-label="Clear clicks" title="Clear the clicks (Esc)">Clear</button>
    <button type="button" class="osc-everything" aria-label="Segment everything" title="Segment everything (E)">Everything</button>
    <span class="osc-gap"></span>
    <button type="button" class="osc-open" aria-label="Open another image" title="Open another image (O), or drop or paste one">Open…</button>
    <button type="button" class="osc-help" aria-expanded="false" aria-controls="osc-keys" aria-label="Keyboard shortcuts" title="Keyboard shortcuts (?)">?</button>
  </div>
  <div class="osc-stage">
    <div class="osc-world">
      <img class="osc-base" alt="">
      <canvas class="osc-overlay" tabindex="0" aria-label="The image: click on an object to segment it. Arrow keys move a cursor, Enter clicks there."></canvas>
    </div>
    <div class="osc-drop">
      <p class="osc-drop-title">Drop a photo here, paste one, or</p>
      <button type="button" class="osc-open osc-primary">Open an image</button>
      <p class="osc-drop-hint">Then click an object and ask what it is.</p>
    </div>
    <div class="osc-progress" role="status" aria-live="polite"></div>
    <div class="osc-zoom" role="group" aria-label="Zoom">
      <button type="button" class="osc-zoom-in" aria-label="Zoom in" title="Zoom in (+, wheel, pinch)">+</button>
      <button type="button" class="osc-zoom-out" aria-label="Zoom out" title="Zoom out (−)">−</button>
      <button type="button" class="osc-zoom-fit" aria-label="Fit the image" title="Fit (0)">⤢</button>
    </div>
  </div>
  <div class="osc-foot">
    <div class="osc-status" role="status" aria-live="polite"></div>
    <div class="osc-thumbs" role="group" aria-label="SAM's candidates: part or whole"></div>
  </div>
  <div class="osc-examples" role="group" aria-label="Examples"></div>
  <input type="file" class="osc-file" accept="image/*" hidden>
  <div class="osc-keys" id="osc-keys" role="dialog" aria-label="Keyboard shortcuts" hidden><dl>{keys}</dl></div>
</div>"""


def static_paths(page: Page) -> list[Path]:
    """What the app must serve: the page's code and vendored runtime, and the page's files."""
    return [STATIC, page.assets.directory]


def canvas(page: Page, examples: Sequence[str] = (), **kwargs: Any) -> gr.HTML:
    """The canvas component: a ``gr.HTML`` whose value is a :class:`Session` (or
    :class:`PageView`) on the way out, turned into the page's JSON view by ``page``, and the
    page's JSON (its prompt under ``page``) on the way in. ``examples``: photo files offered as
    thumbnails (by their names). ``kwargs`` go to ``gr.HTML``."""
    files = [Path(p).resolve() for p in examples]
    gr.set_static_paths([*static_paths(page), *files])
    html = gr.HTML(
        value=None,
        html_template=_template(),
        css_template=(STATIC / "canvas.css").read_text(),
        js_on_load=(STATIC / "canvas.js").read_text(),
        static_url=f"gradio_api/file={STATIC}",
        version=_version(),
        examples=[{"name": p.stem, "url": f"gradio_api/file={p}"} for p in files],
        **kwargs,
    )
    # Set on the instance, not by subclassing: Gradio writes a .pyi stub next to the source of
    # every Component subclass when the class is created (an import-time write into the tree).
    html.postprocess = functools.partial(_view, page)
    html.value = page.view(None)  # the first view already names the decoder: it loads at once
    return html


def _version() -> str:
    """A digest of the page's modules: their URLs change with them (no stale cached code)."""
    digest = hashlib.sha1()
    for name in MODULES:
        digest.update((STATIC / name).read_bytes())
    return digest.hexdigest()[:12]


def _view(page: Page, value: Session | PageView | dict | None) -> dict[str, Any] | None:
    if isinstance(value, (Session, PageView)):
        return page.view(value)
    return value
