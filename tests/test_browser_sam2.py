"""The canvas page over SAM 2.1 in a real browser (chromium, the tiny SAM 2 and the tiny Osprey):
the page loads SAM 2's decoder and its image maps (packed float16, gunzipped in the page), and
clicks, negative clicks and boxes decoded there agree with the server's masks for the same
clicks; adding the region works as with SAM 1, and no click asks the server."""

from __future__ import annotations

import pytest

from sam_bridge import SamBridge
from tests.conftest import REPO
from tests.support.browser import (
    add_region,
    app_url,
    browser_page,
    click,
    dataset,
    page_mask,
    set_mode,
    upload,
)
from tests.support.page_decoder import iou

pytestmark = pytest.mark.browser
PHOTO = REPO / "examples" / "coffee.jpg"


@pytest.fixture(scope="module")
def service(tiny_osprey, tmp_path_factory):
    from osprey.app.service import RegionChat

    sam = SamBridge.tiny(family="sam2")
    sam.onnx_dir = tmp_path_factory.mktemp("onnx")
    return RegionChat(tiny_osprey, sam, max_new_tokens=6)


@pytest.fixture(scope="module")
def url(service):
    with app_url(service) as address:
        yield address


def _server_mask(service, rgb, clicks, shown):
    from osprey.app.canvas_page import replay
    from osprey.app.session import Session

    s = Session(image=service.osprey.set_image(rgb))
    replay(service.masks, s, clicks, mask_size=(shown[1], shown[0]))
    return s.current_mask()


def test_the_page_decodes_sam2_clicks_as_the_server_does(url, service):
    from osprey.core.images import load_image

    rgb = load_image(PHOTO)
    with browser_page(url) as page:
        seen: list[str] = []
        page.on("request", lambda r: seen.append(r.url))
        upload(page, PHOTO)
        assert dataset(page)["decoder"] == "page"
        loaded = page.evaluate("() => performance.getEntriesByType('resource').map(e => e.name)")
        assert any("/sam2_decoder.js?v=" in u for u in loaded)  # loaded with the page
        assert any(".f16.gz" in u for u in seen)  # the packed maps, with the image
        shown = page.evaluate("() => window.ospreyCanvas.shown()")
        seen.clear()
        click(page, 0.5, 0.5)
        page.locator("#canvas .osc-thumb").nth(2).wait_for()
        clicks = page.evaluate("() => window.ospreyCanvas.prompt().clicks")
        assert iou(page_mask(page), _server_mask(service, rgb, clicks, shown)) >= 0.99
        set_mode(page, "negative")
        click(page, 0.2, 0.25)
        prompt = page.evaluate("() => window.ospreyCanvas.prompt()")
        assert prompt["candidates"] == 1
        assert iou(page_mask(page), _server_mask(service, rgb, prompt["clicks"], shown)) >= 0.99
        set_mode(page, "box")
        click(page, 0.1, 0.1)
        click(page, 0.6, 0.7)
        clicks = page.evaluate("() => window.ospreyCanvas.prompt().clicks")
        assert iou(page_mask(page), _server_mask(service, rgb, clicks, shown)) >= 0.99
        assert not [u for u in seen if "gradio_api" in u and "file=" not in u]  # no decode request
        add_region(page, "region1")
