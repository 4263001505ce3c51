"""The minimal video page (/video, osprey/app/video_page.py) in a real Chromium with the tiny
models: upload the example clip, click an object, Track (progress, then every frame tracked),
scrub, ask; and the page's timeline text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av", reason="PyAV decodes clips (requirements.txt)")

from osprey.app.video_page import timeline_text
from osprey.app.video_session import Span, Track, VideoSession
from osprey.core.masks import encode_rle
from osprey.core.video import clip_from_images
from tests.support.browser import CHROMIUM, browser_page, idle

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "examples" / "coffee_pan.mp4"


def test_the_timeline_shows_where_each_track_is_seen():
    vs = VideoSession()
    vs.clip = clip_from_images([np.zeros((16, 16, 3), np.uint8)] * 4)
    assert "No track yet" in timeline_text(vs)
    car = Track(1, "car", (1, 2, 3))
    for f in (0, 1, 3):
        car.masks[f] = encode_rle(np.ones((16, 16), bool))
    car.spans = [Span(0, 3, "car", "a car", [0])]
    vs.tracks = [car]
    assert "car |##.#| 0-3: car" in timeline_text(vs)


@pytest.mark.browser
def test_upload_click_track_and_ask_in_the_page(tiny_service):
    if CHROMIUM is None:
        pytest.skip("Debian chromium is not installed (.ci/run installs it)")
    pytest.importorskip("playwright", reason="playwright is in requirements-dev.txt")
    from osprey.app.demo import build_demo
    from osprey.app.video_service import VideoChat
    from osprey.core.video import VideoLimits
    from sam_bridge.tracker import VideoTracker
    from tests.support.servers import serving

    video = VideoChat(VideoTracker.tiny(), VideoLimits(fps=2))
    with serving(build_demo(tiny_service, video=video)) as url, browser_page(url + "video") as page:
        page.set_input_files("#video-upload input[type=file]", str(CLIP))
        page.wait_for_function(
            "() => document.querySelector('#video-message').innerText.includes('6 frames')"
        )
        idle(page)
        page.locator("#video-frame img").click(position={"x": 150, "y": 100})
        page.wait_for_function(
            "() => document.querySelector('#video-timeline').innerText.includes('track1')"
        )
        idle(page)
        page.get_by_role("button", name="Track").click()
        page.wait_for_function(
            "() => document.querySelector('#video-message').innerText.includes('Tracked 6 of 6')",
            timeout=300_000,
        )
        assert "track1 |######|" in page.inner_text("#video-timeline")
        page.get_by_label("Ask about this frame (name tracks: track1, ...)").fill("What is track1?")
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.querySelector('#video-answer').innerText.length > 0")
