"""The canvas page in a real browser (chromium, tiny models): SAM's decoder runs in the page
(onnxruntime-web), so hover, clicks, negative clicks, boxes, candidates and undo are drawn there;
its masks agree with the server's; a region made in the page gets the same answer as the API
gives for the same prompts; and with ``?decoder=server`` the page falls back to the server."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import REPO
from tests.support.browser import (
    OVERLAY,
    add_region,
    app_url,
    ask,
    browser_page,
    click,
    dataset,
    idle,
    page_mask,
    point,
    set_mode,
    upload,
    version,
    wait_version,
)
from tests.support.page_decoder import iou

pytestmark = pytest.mark.browser
PHOTO = REPO / "examples" / "coffee.jpg"
QUESTION = "What is region1?"


@pytest.fixture(scope="module")
def url(tiny_service):
    with app_url(tiny_service) as address:
        yield address


def _server_mask(service, rgb, clicks, shown) -> np.ndarray:
    """The server's mask at display size for the same clicks (replayed as the app does)."""
    from osprey.app.canvas_page import replay
    from osprey.app.session import Session

    s = Session(image=service.osprey.set_image(rgb))
    replay(service.masks, s, clicks, mask_size=(shown[1], shown[0]))
    return s.current_mask()


def _requests(page, action) -> list[str]:
    """The URLs the page requests while ``action()`` runs."""
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))
    action()
    page.wait_for_timeout(300)
    return seen


def test_page_decodes_hover_clicks_boxes_candidates_and_undo(url, tiny_service):
    from osprey.core.images import load_image

    rgb = load_image(PHOTO)
    with browser_page(url) as page:
        upload(page, PHOTO)
        assert dataset(page)["decoder"] == "page"
        # the app's headers make the page cross-origin isolated: the decoder may use threads
        assert page.evaluate("() => self.crossOriginIsolated")
        cores = page.evaluate("() => navigator.hardwareConcurrency")
        assert int(dataset(page)["threads"]) == min(4, cores)
        shown = page.evaluate("() => window.ospreyCanvas.shown()")

        # hover: a preview is drawn, with no request to the server
        hovered = version(page, "hoverVersion")
        sent = _requests(page, lambda: page.mouse.move(*point(page, 0.5, 0.5)))
        wait_version(page, "hoverVersion", hovered)
        assert not [u for u in sent if "gradio_api" in u]

        # a click: SAM's three candidates, decoded here, equal to the server's (IoU >= 0.99)
        sent = _requests(page, lambda: click(page, 0.5, 0.5))
        assert not [u for u in sent if "gradio_api" in u]
        page.locator("#canvas .osc-thumb").nth(2).wait_for()
        clicks = page.evaluate("() => window.ospreyCanvas.prompt().clicks")
        assert iou(page_mask(page), _server_mask(tiny_service, rgb, clicks, shown)) >= 0.99

        # picking a candidate is local and redraws
        before = version(page)
        page.locator("#canvas .osc-thumb").nth(2).click()
        wait_version(page, "maskVersion", before)
        assert page.evaluate("() => window.ospreyCanvas.prompt().candidate") == 2

        # a negative click refines (one candidate); the page and the server agree again
        set_mode(page, "negative")
        click(page, 0.2, 0.25)
        prompt = page.evaluate("() => window.ospreyCanvas.prompt()")
        assert [c[2] for c in prompt["clicks"]] == ["positive", "negative"]
        assert prompt["candidates"] == 1
        mask = _server_mask(tiny_service, rgb, prompt["clicks"], shown)
        assert iou(page_mask(page), mask) >= 0.99

        # region1 from these clicks; a question about it, answered as the API answers it
        add_region(page, "region1")
        ask(page, QUESTION)
        answer = page.locator("#chat .message.bot, #chat [data-testid='bot']").last.inner_text()
        assert answer.strip() == _api_answer(url, prompt["clicks"]).strip()

        # a box: two clicks, one mask; add it as region2; undo removes it (the canvas redraws)
        set_mode(page, "box")
        click(page, 0.1, 0.1)
        assert "opposite corner" in page.locator("#canvas .osc-status").inner_text()
        click(page, 0.6, 0.7)
        box = page.evaluate("() => window.ospreyCanvas.prompt().clicks")
        assert iou(page_mask(page), _server_mask(tiny_service, rgb, box, shown)) >= 0.99
        add_region(page, "region2")
        before = version(page)
        page.get_by_role("button", name="Undo the last region edit").click()
        wait_version(page, "maskVersion", before)
        page.wait_for_function(
            "() => !document.querySelector('#regions').innerText.includes('region2')"
        )


def _api_answer(url: str, clicks) -> str:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    client.predict(handle_file(str(PHOTO)), api_name="/session_open")
    for x, y, mode in clicks:
        client.predict(x, y, mode, api_name="/session_click")
    client.predict(api_name="/session_add")
    return client.predict(QUESTION, api_name="/session_ask")


def test_keyboard_clicks_and_undoes_and_clear_clicks(url):
    with browser_page(url) as page:
        upload(page, PHOTO)
        page.locator(OVERLAY).focus()
        before = version(page)
        page.keyboard.press("ArrowRight")
        page.keyboard.press("Enter")
        wait_version(page, "maskVersion", before)
        assert len(page.evaluate("() => window.ospreyCanvas.prompt().clicks")) == 1
        before = version(page)
        page.keyboard.press("Backspace")
        wait_version(page, "maskVersion", before)
        assert page.evaluate("() => window.ospreyCanvas.prompt().clicks") == []
        click(page, 0.3, 0.3)  # the toolbar's 'Clear clicks' clears the page's prompt
        before = version(page)
        page.get_by_role("button", name="Clear clicks").click()
        wait_version(page, "maskVersion", before)
        assert page.evaluate("() => window.ospreyCanvas.prompt().clicks") == []


def test_fallback_decodes_on_the_server(url, tiny_service):
    """Without the in-page decoder the page says so once and each click asks the server, whose
    display-size answer is drawn; adding the region works the same."""
    from osprey.core.images import load_image

    with browser_page(url + "?decoder=server") as page:
        upload(page, PHOTO)
        assert dataset(page)["decoder"] == "server"
        page.wait_for_function(  # once Osprey has read the photo too (it says so meanwhile)
            "() => document.querySelector('#canvas .osc-status').innerText"
            ".includes('decoded on the server')"
        )
        shown = page.evaluate("() => window.ospreyCanvas.shown()")
        sent = _requests(page, lambda: click(page, 0.5, 0.5))
        assert [u for u in sent if "gradio_api" in u]  # this time the click went to the server
        page.locator("#canvas .osc-thumb").nth(2).wait_for()
        clicks = page.evaluate("() => window.ospreyCanvas.prompt().clicks")
        mask = _server_mask(tiny_service, load_image(PHOTO), clicks, shown)
        assert np.array_equal(page_mask(page), mask)
        add_region(page, "region1")


def _nested_masks(height: int, width: int) -> list[np.ndarray]:
    """Three nested masks (largest first, as SAM's generator returns them): an ellipse, the
    rectangle around it, and the whole image."""
    import cv2

    ellipse = np.zeros((height, width), np.uint8)
    cv2.ellipse(ellipse, (width // 2, height // 2), (width // 6, height // 5), 0, 0, 360, 1, -1)
    rect = np.zeros((height, width), bool)
    rect[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = True
    return [np.ones((height, width), bool), rect, ellipse.astype(bool)]


def test_pick_mode_is_local_and_adds_the_servers_mask(url, tiny_service, monkeypatch):
    """'Segment everything' sends its masks once (an index map at display size); picking one is
    local (the smallest mask under the click); adding it replays the pick at full resolution.
    (The tiny SAM's own generator finds nothing and takes a minute: its masks are given here.)"""
    from types import SimpleNamespace

    from osprey.core.images import load_image
    from osprey.core.masks import encode_rle, mask_box

    rgb = load_image(PHOTO)
    masks = _nested_masks(*rgb.shape[:2])
    found = [SimpleNamespace(rle=encode_rle(m), score=0.9, area=int(m.sum()), box=mask_box(m))
             for m in masks]  # fmt: skip
    monkeypatch.setattr(tiny_service.sam, "everything", lambda image, **options: found)
    added, real_add = [], tiny_service.add_region

    def add_region_seen(s, *args, **kwargs):
        added.append(s.current_mask())
        return real_add(s, *args, **kwargs)

    monkeypatch.setattr(tiny_service, "add_region", add_region_seen)
    with browser_page(url) as page:
        upload(page, PHOTO)
        before = version(page)
        page.get_by_role("button", name="Segment everything", exact=True).click()
        wait_version(page, "maskVersion", before)  # the image with the masks drawn
        idle(page)
        set_mode(page, "pick")
        for fx, fy, expected in (
            (0.05, 0.05, masks[0]),
            (0.5, 0.5, masks[2]),
            (0.3, 0.3, masks[1]),
        ):
            sent = _requests(page, lambda fx=fx, fy=fy: click(page, fx, fy))
            assert not [u for u in sent if "gradio_api" in u]
            assert np.array_equal(page_mask(page), expected)  # coffee.jpg is shown at its size
        add_region(page, "region1")
        assert np.array_equal(added[-1], masks[1])  # the rectangle, replayed at full resolution
