"""A real browser for the tests and the browser benchmark: Debian's chromium through playwright,
and helpers that drive the canvas page (osprey/app/static/canvas.js) through its test contract:
``#canvas`` is the image the user opens and clicks, ``data-mask-version`` grows with every newly
drawn selection, ``data-hover-version`` with every hover preview, ``data-ready`` names the image
once the page can decode it (``data-preparing`` says what it waits for, ``data-queued`` how many
clicks wait), and ``window.ospreyCanvas`` reads the selected mask. Everything else is found by
its accessible name, as a user (or a screen reader) finds it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
        "--disable-sync"]  # fmt: skip
OVERLAY = "#canvas canvas.osc-overlay"
TOOLS = {"positive": "add", "negative": "subtract", "box": "box", "pick": "pick"}


@contextmanager
def app_url(service) -> Iterator[str]:
    """The app over ``service`` served on loopback, for a browser; skips (with the reason) where
    chromium or playwright is missing."""
    import pytest

    from osprey.app.demo import build_demo
    from tests.support.servers import serving

    if CHROMIUM is None:
        pytest.skip("Debian chromium is not installed (.ci/run installs it)")
    pytest.importorskip("playwright", reason="playwright is in requirements-dev.txt")
    with serving(build_demo(service)) as address:
        yield address


@contextmanager
def browser_page(url: str, timeout_ms: int = 60_000, phone: bool = False) -> Iterator:
    """A headless chromium page opened on ``url`` (desktop 1400x1000, or with ``phone`` a
    390x844 touch screen)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(**viewport(phone))
        page.set_default_timeout(timeout_ms)
        page.goto(url)
        yield page
        browser.close()


def viewport(phone: bool = False) -> dict:
    """A new page's options: a desktop window, or a phone's screen with touch."""
    if phone:
        return {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
                "is_mobile": True, "has_touch": True}  # fmt: skip
    return {"viewport": {"width": 1400, "height": 1000}}


def idle(page) -> None:
    """Wait until no component shows gradio's pending state (the last event has finished)."""
    page.wait_for_timeout(300)
    page.wait_for_function("() => document.querySelectorAll('.pending, .generating').length === 0")


def dataset(page) -> dict[str, str]:
    return page.evaluate("() => ({...document.querySelector('#canvas').dataset})")


def upload(page, path: str) -> str:
    """Open an image through the canvas's file input and wait until the page can decode it;
    returns its key."""
    page.wait_for_selector(OVERLAY, state="attached")
    page.wait_for_selector("#canvas[data-started]", state="attached")  # its script listens
    page.locator("#canvas input.osc-file").set_input_files(str(path))  # the page forgets "ready"
    return wait_ready(page)


def wait_ready(page, before: str | None = None) -> str:
    """Wait until the page can decode an image other than ``before``; returns its key. On a
    timeout the error says what the page showed (its state, status line, progress, messages)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(
            "prev => { const d = document.querySelector('#canvas')?.dataset;"
            " return d && d.ready && d.ready !== prev && d.decoder; }",
            arg=before or "",
        )
    except PlaywrightTimeout as exc:
        shown = page.evaluate(
            "() => [document.querySelector('#canvas .osc-status')?.innerText,"
            " document.querySelector('#canvas .osc-progress')?.innerText,"
            " [...document.querySelectorAll('.toast-body')].map((e) => e.innerText)]"
        )
        raise AssertionError(f"the page never got ready: {dataset(page)}, {shown}") from exc
    return dataset(page)["ready"]


def set_mode(page, mode: str) -> None:
    """Pick the canvas's tool for ``mode`` (positive, negative, box, pick)."""
    page.locator(f"#canvas .osc-tool[data-tool={TOOLS[mode.split()[0]]}]").click()


def add_region(page, name: str) -> None:
    """Keep the mask on the canvas as a region (the toolbar's button); wait for its chip."""
    page.get_by_role("button", name="Add region").click()
    page.wait_for_function(
        "n => document.querySelector('#regions').innerText.includes(n)", arg=name
    )


def ask(page, question: str) -> None:
    """Type a question and send it (Enter); wait until its answer has finished streaming."""
    page.locator("#question textarea").fill(question)
    page.locator("#question textarea").press("Enter")
    page.wait_for_function(
        "q => document.querySelector('#chat').innerText.includes(q)", arg=question
    )
    idle(page)


def open_panel(page, elem_id: str) -> None:
    """Open a collapsed panel (an accordion) by its id, if it is closed."""
    panel = page.locator(f"#{elem_id}")
    if not panel.locator("[data-testid=accordion-content]").is_visible():
        panel.locator("button.label-wrap").click()
        panel.locator("[data-testid=accordion-content]").wait_for()


def point(page, fx: float, fy: float) -> tuple[float, float]:
    """Client coordinates of a fraction of the displayed image (scrolled into view)."""
    page.locator(OVERLAY).scroll_into_view_if_needed()
    box = page.locator(OVERLAY).bounding_box()
    return box["x"] + fx * box["width"], box["y"] + fy * box["height"]


def wait_version(page, key: str, before: int) -> int:
    page.wait_for_function(
        "([k, v]) => Number(document.querySelector('#canvas').dataset[k] || 0) > v",
        arg=[key, before],
    )
    return int(dataset(page)[key])


def version(page, key: str = "maskVersion") -> int:
    return int(dataset(page).get(key, 0))


def click(page, fx: float, fy: float) -> tuple[int, int]:
    """Click at a fraction of the image and wait for the new mask; returns the image pixel the
    page mapped the click to."""
    before = version(page)
    page.mouse.click(*point(page, fx, fy))
    wait_version(page, "maskVersion", before)
    x, y, _ = page.evaluate("() => window.ospreyCanvas.prompt().clicks.at(-1)")
    return int(x), int(y)


def page_mask(page) -> np.ndarray:
    """The selected mask as the page drew it, bool (h, w) at display size."""
    w, h = page.evaluate("() => window.ospreyCanvas.shown()")
    runs = page.evaluate("() => window.ospreyCanvas.maskRuns()")
    values = np.zeros(len(runs), bool)
    values[1::2] = True
    return np.repeat(values, runs).reshape(h, w)


# What counts as a control a user sees: anything one can click, type in or tab to.
VISIBLE_CONTROLS = """() => [...document.querySelectorAll(
    'button, input, textarea, select, a[href], [role=button], [tabindex]:not([tabindex="-1"])')]
  .filter((e) => {
    const r = e.getBoundingClientRect(), style = getComputedStyle(e);
    return r.width > 0 && r.height > 0 && style.visibility !== 'hidden' && e.type !== 'hidden';
  })
  .map((e) => (e.getAttribute('aria-label') || e.innerText || e.querySelector('img')?.alt || e.title
    || e.tagName).trim())"""


def visible_controls(page) -> list[str]:
    """The names of the controls the page shows (buttons, fields, links, anything focusable)."""
    return page.evaluate(VISIBLE_CONTROLS)


class Walk:
    """A user's walk through the page, one counted action at a time: a click on a control (by
    its accessible name), on the image (at a fraction of it), a drag, a key, a tap."""

    def __init__(self, page):
        self.page, self.actions = page, 0

    def button(self, name: str, exact: bool = True) -> None:
        self.actions += 1
        self.page.get_by_role("button", name=name, exact=exact).click()

    def image(self, fx: float, fy: float, button: str = "left") -> None:
        self.actions += 1
        self.page.mouse.click(*point(self.page, fx, fy), button=button)

    def tap(self, fx: float, fy: float) -> None:
        self.actions += 1
        self.page.touchscreen.tap(*point(self.page, fx, fy))

    def drag(self, start: tuple[float, float], end: tuple[float, float]) -> None:
        self.actions += 1
        self.page.mouse.move(*point(self.page, *start))
        self.page.mouse.down()
        self.page.mouse.move(*point(self.page, *end), steps=6)
        self.page.mouse.up()

    def key(self, key: str) -> None:
        self.actions += 1
        self.page.keyboard.press(key)
