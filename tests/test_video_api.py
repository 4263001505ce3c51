"""The video endpoints through gradio_client against an in-process server (tiny models, the real
example clip): open, clicks and prompts, tracking streamed, questions, describe over time,
exports read back; and hostile calls, each answered with one line while the server keeps
serving (a path instead of an upload, an image as a video, frames outside the clip, a client
that goes away mid-tracking)."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

pytest.importorskip("av", reason="PyAV decodes clips (requirements.txt)")

from gradio_client import Client, handle_file

from osprey.app.demo import build_demo
from osprey.app.video_service import VideoChat
from osprey.core.video import VideoLimits
from tests.support.servers import serving

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "examples" / "coffee_pan.mp4"  # 3 s, 320x240: 6 frames at 2 a second


@pytest.fixture(scope="module")
def url(tiny_service):
    from sam_bridge.tracker import VideoTracker

    video = VideoChat(VideoTracker.tiny(), VideoLimits(fps=2))
    with serving(build_demo(tiny_service, video=video), concurrency=4) as address:
        yield address


def _client(url: str) -> Client:
    return Client(url, verbose=False)


def test_a_clip_tracked_asked_about_and_exported(url, tmp_path):
    client = _client(url)
    opened = client.predict(handle_file(str(CLIP)), api_name="/video_open")
    assert (opened["frames"], opened["width"], opened["height"]) == (6, 320, 240)
    assert opened["source"]["format"] == "MP4/MOV" and opened["times"][1] == 0.5
    first = client.predict(2, 160, 120, "positive", -1, api_name="/video_click")
    assert first["track"] == 0 and first["name"] == "track1" and first["rle"]["size"] == [240, 320]
    assert client.predict(3, 20, 20, "box", -1, api_name="/video_click")["rle"] is None
    boxed = client.predict(3, 200, 200, "box", 1, api_name="/video_click")
    assert boxed["track"] == 1 and boxed["rle"] is not None
    job = client.submit(2, "both", api_name="/video_track")
    reports = list(job)
    final = job.result()
    assert final["finished"] and not final["stopped"] and final["done"] == final["total"] == 6
    assert len(reports) >= 2 and reports[0]["done"] <= reports[-1]["done"]
    timeline = client.predict(api_name="/video_timeline")
    assert [t["name"] for t in timeline] == ["track1", "track2"] and timeline[0]["runs"]
    described = client.predict(4, "category", api_name="/video_describe")
    assert [d["track"] for d in described] == ["track1", "track2"]
    assert isinstance(client.predict(4, "What is track1?", api_name="/video_ask"), str)
    top = client.predict(4, "cup, saucer, table", 2, api_name="/video_classify")
    assert len(top) == 2 and len(top[0]["top"]) == 2
    over_time = client.predict(3, api_name="/video_describe_over_time")
    assert over_time[0]["captions"][0]["frame"] == 0 and over_time[0]["spans"]

    data = client.predict(api_name="/video_export")
    assert data["videos"][0]["length"] == 6 and len(data["annotations"]) == 2
    for ann in data["annotations"]:
        for seg in ann["segmentations"]:
            if seg is not None:
                mask = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})
                assert mask.shape == (240, 320)
    assert data["annotations"][0]["captions"] == over_time[0]["captions"]
    archive = client.predict("zip", api_name="/video_export_file")
    with zipfile.ZipFile(archive) as zf:
        assert len([n for n in zf.namelist() if n.startswith("masks/")]) == 6
    movie = client.predict("mp4", api_name="/video_export_file")
    assert Path(movie).stat().st_size > 1000
    assert client.predict(api_name="/video_close") is True
    assert client.predict(api_name="/video_close") is False


def test_each_client_has_its_own_video(url):
    a, b = _client(url), _client(url)
    a.predict(handle_file(str(CLIP)), api_name="/video_open")
    with pytest.raises(Exception, match="Open a video first"):
        b.predict(0, 10, 10, "positive", -1, api_name="/video_click")
    a.predict(api_name="/video_close")


def test_hostile_calls_get_one_line_and_the_server_keeps_serving(url, tmp_path):
    client = _client(url)
    photo = handle_file(str(REPO / "examples" / "coffee.jpg"))
    with pytest.raises(Exception, match="this file is an image, not a video"):
        client.predict(photo, api_name="/video_open")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(CLIP.read_bytes()[: CLIP.stat().st_size // 3])
    with pytest.raises(Exception, match="corrupt, truncated or not a video"):
        client.predict(handle_file(str(broken)), api_name="/video_open")
    client.predict(handle_file(str(CLIP)), api_name="/video_open")
    cases = [
        ((9, 10, 10, "positive", -1), "/video_click", "Frame 9 is outside the clip: it has 6"),
        ((1.5, 10, 10, "positive", -1), "/video_click", "frame must be a whole number"),
        ((0, 10, 10, "positive", 5), "/video_click", "track must be a whole number from -1 to 0"),
        ((0, "left", 10, "positive", -1), "/video_click", "x must be a finite number"),
        ((0, "[[1, 1]]", "[1]", "", "x"), "/video_prompt", "track must be a whole number"),
        ((0, "[[1e9, 1]]", "[1]", "", -1), "/video_prompt", "outside the 320x240"),
        ((-1, "sideways"), "/video_track", "direction must be one of"),
        ((-1, "both"), "/video_track", "Click on an object first"),
        ((0, "  "), "/video_ask", "Type a question"),
        ((0,), "/video_describe_over_time", "every must be a whole number from 1"),
        (("gif",), "/video_export_file", "format must be one of"),
    ]
    for args, name, message in cases:
        with pytest.raises(Exception, match=message):
            job = client.submit(*args, api_name=name)
            job.result()
    assert client.predict(0, 160, 120, "positive", -1, api_name="/video_click")["track"] == 0
    client.predict(api_name="/video_close")


def test_a_path_is_not_an_upload(url):
    import requests

    r = requests.post(f"{url}gradio_api/call/video_open", json={"data": ["/etc/passwd"]},
                      timeout=30)  # fmt: skip
    assert r.status_code == 422 and "uploaded" in r.json()["error"]


def test_a_client_that_goes_away_mid_tracking_stops_it(url):
    client = _client(url)
    client.predict(handle_file(str(CLIP)), api_name="/video_open")
    client.predict(0, 160, 120, "positive", -1, api_name="/video_click")
    job = client.submit(0, "forward", api_name="/video_track")
    while not job.outputs():
        time.sleep(0.05)
    job.cancel()
    deadline = time.monotonic() + 60
    while True:  # the run stops at its next frame and lets go of the clip
        try:
            mask = client.predict(1, 100, 100, "negative", 0, api_name="/video_click")
            break
        except Exception as exc:
            assert "being tracked" in str(exc)
            assert time.monotonic() < deadline, "the abandoned run never stopped"
            time.sleep(0.5)
    assert mask["track"] == 0
    done = client.predict(1, "forward", api_name="/video_track")
    assert done["finished"] and np.isfinite(done["done"])
    client.predict(api_name="/video_close")


def test_idle_and_surplus_videos_are_closed():
    from osprey.app.video_api import VideoSessions

    closed = []
    sessions = VideoSessions(closed.append, ttl=3600, capacity=2)
    a, b = sessions.get("a"), sessions.get("b")
    assert sessions.get("a") is a and not closed
    c = sessions.get("c")  # a third client: the least recently used (b) is closed
    assert closed == [b] and len(sessions) == 2
    sessions.ttl = 0
    time.sleep(0.01)
    d = sessions.get("d")  # every idle one goes
    assert {id(v) for v in closed} == {id(a), id(b), id(c)} and sessions.pop("d") is d
