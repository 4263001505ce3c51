"""A real browser for the tests and the browser benchmark: Debian's chromium through playwright,
and helpers that drive the canvas page (osprey/app/static/canvas.js) through its test contract:
``#canvas`` is the image the user clicks, ``data-mask-version`` grows with every newly drawn
selection, ``data-hover-version`` with every hover preview, ``data-ready`` names the image once
the page can decode it, and ``window.ospreyCanvas`` reads the selected mask."""

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
def browser_page(url: str, timeout_ms: int = 60_000) -> Iterator:
    """A headless chromium page opened on ``url``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(timeout_ms)
        page.goto(url)
        yield page
        browser.close()


def idle(page) -> None:
    """Wait until no component shows gradio's pending state (the last event has finished)."""
    page.wait_for_timeout(300)
    page.wait_for_function("() => document.querySelectorAll('.pending, .generating').length === 0")


def dataset(page) -> dict[str, str]:
    return page.evaluate("() => ({...document.querySelector('#canvas').dataset})")


def upload(page, path: str) -> str:
    """Upload an image and wait until the page can decode it; returns its key."""
    page.wait_for_selector(OVERLAY, state="attached")
    before = dataset(page).get("ready")
    page.locator("#upload input[type=file]").set_input_files(str(path))
    page.wait_for_function(
        "prev => { const d = document.querySelector('#canvas')?.dataset;"
        " return d && d.ready && d.ready !== prev && d.decoder; }",
        arg=before or "",
    )
    return dataset(page)["ready"]


def set_mode(page, mode: str) -> None:
    page.locator("#mode label", has_text=mode).first.click()


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
