"""A real browser (Debian's chromium through playwright) drives the app with the tiny models:
upload a real photo, click it, see the overlay, ask for the category, see the answer and top-5
bars in the chat, add a second region, ask about both, export the JSON and check it decodes to
the masks shown."""

import json
import time
import urllib.request

import numpy as np
import pytest

from tests.conftest import REPO
from tests.support.browser import (
    ARGS,
    CHROMIUM,
    OVERLAY,
    add_region,
    app_url,
    ask,
    click,
    idle,
    open_panel,
    upload,
)

pytestmark = pytest.mark.browser
PHOTO = REPO / "examples" / "coffee.jpg"


@pytest.fixture(scope="module")
def url(tiny_service):
    with app_url(tiny_service) as address:
        yield address


@pytest.fixture(scope="module")
def browser(url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield chromium
        chromium.close()


def _open(browser, url):
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    pg.set_default_timeout(60_000)
    pg.goto(url)
    return pg


@pytest.fixture(scope="module")
def page(browser, url):
    pg = _open(browser, url)
    yield pg
    pg.close()


BUTTON_LABELS = """() => [...document.querySelectorAll('button')]
    .filter(b => b.offsetParent !== null)
    .map(b => (b.getAttribute('aria-label') || b.innerText || b.title || '').trim())"""


def test_every_visible_button_says_what_it_does(page):
    """No stray endpoint buttons ("Run") and no button without a name on the page."""
    upload(page, PHOTO)
    idle(page)
    labels = page.evaluate(BUTTON_LABELS)
    assert {"Add region", "Send", "Category", "Top-5", "Open another image"} <= set(labels)
    assert [t for t in labels if t in ("", "Run")] == []


def test_click_describe_chat_export(page, tiny_service, tmp_path):
    upload(page, PHOTO)
    idle(page)
    assert page.locator("#untrained").is_visible()

    # region 1: one click -> overlay and SAM's candidates; add it; ask for its category
    click1 = click(page, 0.5, 0.5)
    page.wait_for_function("() => document.querySelectorAll('#canvas .osc-thumb').length === 3")
    add_region(page, "region1")
    page.get_by_role("button", name="Category").click()
    page.wait_for_function(
        "() => document.querySelector('#chat').innerText.includes('Category of region1')"
    )
    idle(page)
    page.wait_for_function(  # the answer is kept on the region: its chip says it
        "() => document.querySelector('#regions .orc-name').title.startsWith('Category: ')"
    )
    # its top-5 over COCO: bars in the chat
    page.get_by_role("button", name="Top-5").click()
    page.wait_for_function(
        "() => document.querySelector('#chat').innerText.includes('Top-5 of region1')"
    )
    assert page.locator("#chat table").last.locator("tr").count() == 6  # a header and 5 classes

    # region 2 elsewhere; a question about both, streamed into the chat
    click2 = click(page, 0.2, 0.25)
    add_region(page, "region2")
    ask(page, "How is region1 related to region2?")
    assert page.locator("#question textarea").input_value() == ""

    # export: the JSON decodes to the masks SAM gives (at full resolution) for the clicked pixels
    open_panel(page, "export-panel")
    page.get_by_role("button", name="Export JSON (COCO RLE)").click()
    link = page.locator("#export-file a").first
    link.wait_for()
    data = json.loads(urllib.request.urlopen(link.get_attribute("href")).read())
    assert [r["name"] for r in data["regions"]] == ["region1", "region2"] and data["untrained"]
    from osprey.core.images import load_image
    from osprey.core.masks import decode_rle

    rgb = load_image(PHOTO)
    for region, xy in zip(data["regions"], (click1, click2)):
        exported = decode_rle(region["segmentation"])
        assert exported.shape == rgb.shape[:2] and exported.any()
        assert np.array_equal(
            exported, tiny_service.sam.predict(rgb, points=[xy]).candidates[0].mask
        )
    assert data["regions"][0]["category"]
    top = data["regions"][0]["top_k"]
    assert data["regions"][0]["vocabulary"] == "coco" and len(top) == 5
    assert [t["prob"] for t in top] == sorted((t["prob"] for t in top), reverse=True)
    assert data["chat"] and data["chat"][0]["question"] == "How is region1 related to region2?"


def test_an_example_opens_and_takes_clicks(browser, url):
    pg = _open(browser, url)
    pg.wait_for_selector(OVERLAY, state="attached")
    pg.get_by_role("button", name="coffee").click()
    pg.wait_for_function("() => document.querySelector('#canvas')?.dataset.ready")
    idle(pg)
    click(pg, 0.5, 0.5)
    pg.wait_for_function("() => document.querySelectorAll('#canvas .osc-thumb').length === 3")
    pg.close()


def test_closing_the_tab_frees_its_session_at_once(browser, url, tiny_service, monkeypatch):
    closed = []
    real_close = tiny_service.close
    monkeypatch.setattr(tiny_service, "close", lambda s: (closed.append(s), real_close(s)))
    pg = _open(browser, url)
    upload(pg, PHOTO)
    idle(pg)
    pg.close()
    for _ in range(100):  # the server learns of the closed tab through its heartbeat
        if closed:
            break
        time.sleep(0.1)
    assert len(closed) == 1 and closed[0].image is None and closed[0].regions == []
