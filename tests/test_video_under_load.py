"""Video under load (issue 27's rules applied to issue 30's endpoints): a visitor has one
tracking run or "describe over time" at a time (the fair share's whole-clip lane, HTTP 429),
other visitors track beside it; the upload janitor keeps a clip a running /video_open reads; a
drain stops tracking runs at their next frame and the videos close; the open videos are held
within a memory budget. The app runs on loopback with the tiny models and the tiny tracker on
the example clip (a camera panning over examples/coffee.jpg). SECURITY.md lists these cases."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("av", reason="PyAV decodes clips (requirements.txt)")

from osprey.app.budgets import MIB, VIDEO_MAX, VIDEO_MIN, plan_budgets
from osprey.app.demo import build_demo
from osprey.app.fair_share import FairShare
from osprey.app.serving import Policy
from osprey.app.video_api import VideoEndpoints
from osprey.app.video_service import VideoChat
from osprey.app.video_session import VideoSession
from osprey.core.errors import ServiceError
from osprey.core.video import VideoLimits
from tests.support.rest import Rest
from tests.support.servers import serving

CLIP = Path(__file__).resolve().parents[1] / "examples" / "coffee_pan.mp4"  # 6 frames at 2 fps
FRAME_WAIT_S = 5.0  # a held run waits this long after each frame unless it is stopped


@pytest.fixture(scope="module")
def tracker():
    from sam_bridge.tracker import VideoTracker

    return VideoTracker.tiny()


def _held_runs(video: VideoChat, started: threading.Event) -> None:
    """Tracking runs wait after each frame until stopped (the tiny tracker takes milliseconds a
    frame; a real one takes seconds), so a test can act while one goes."""
    run = video._run

    def held(vs, start, direction):
        for progress in run(vs, start, direction):
            started.set()
            yield progress
            vs.stop.wait(FRAME_WAIT_S)

    video._run = held


def _opened(rest: Rest) -> None:
    assert rest.call("video_open", rest.upload("pan.mp4", CLIP.read_bytes()))[0] == "complete"
    assert rest.call("video_click", 1, 160, 120, "positive", -1)[0] == "complete"


def _background(target) -> tuple[threading.Thread, dict]:
    out: dict = {}
    worker = threading.Thread(target=lambda: out.update(got=target()))
    worker.start()
    return worker, out


def test_video_jobs_are_whole_clip_jobs_of_the_fair_share(tracker):
    api = VideoEndpoints(VideoChat(tracker), answers=None)
    fair = FairShare(demo=None, per_visitor=3, api_names=VideoEndpoints.NAMES)
    calls = [("video_track", "track"), ("video_describe_over_time", "answer"),
             ("video_ask", "answer"), ("video_open", "encode")]  # fmt: skip
    lane = {n: fair.lane(SimpleNamespace(fn=getattr(api, n), concurrency_id=c)) for n, c in calls}
    assert lane == {"video_track": "whole clip", "video_describe_over_time": "whole clip",
                    "video_ask": "answer", "video_open": "encode"}  # fmt: skip
    assert fair.limit("whole clip") == 1 and fair.limit("answer") == 3


def test_one_tracking_run_per_visitor_and_others_track_beside_it(tiny_service, tracker):
    from gradio_client import Client, handle_file

    video = VideoChat(tracker, VideoLimits(fps=2))
    started = threading.Event()
    _held_runs(video, started)
    with serving(build_demo(tiny_service, video=video), concurrency=8) as url:
        client = Client(url, verbose=False)  # a visitor tracking; its raw calls share its session
        client.predict(handle_file(str(CLIP)), api_name="/video_open")
        client.predict(1, 160, 120, "positive", -1, api_name="/video_click")
        job = client.submit(1, "forward", api_name="/video_track")
        assert started.wait(30)
        same = Rest(url, session_hash=client.session_hash)
        kind, (status, message) = same.call("video_track", 1, "forward")
        assert (kind, status) == ("http", 429) and "video being tracked" in message
        kind, (status, _) = same.call("video_describe_over_time", 2)  # the same lane
        assert (kind, status) == ("http", 429)
        other = Rest(url)  # another visitor opens, clicks and tracks meanwhile
        _opened(other)
        video._run = type(video)._run.__get__(video)  # its run is not held
        done = other.call("video_track", 1, "forward")
        assert done[0] == "complete" and done[1]["finished"] and not done[1]["stopped"]
        assert client.predict(api_name="/video_stop") is True
        assert job.result(timeout=60)["stopped"]
        again = client.predict(1, "forward", api_name="/video_track")  # its turn again
        assert again["finished"] and not again["stopped"]


def test_the_janitor_keeps_the_clip_a_running_open_reads(tiny_service, tracker, monkeypatch):
    video = VideoChat(tracker, VideoLimits(fps=2))
    reading, release = threading.Event(), threading.Event()
    open_video = video.open_video

    def slow_open(vs, source):
        reading.set()
        release.wait(30)
        return open_video(vs, source)

    monkeypatch.setattr(video, "open_video", slow_open)
    demo = build_demo(tiny_service, video=video)
    with serving(demo, concurrency=4, policy=Policy(upload_grace=0.0)) as url:
        rest = Rest(url)
        clip = rest.upload("kept.mp4", CLIP.read_bytes())
        worker, out = _background(lambda: rest.call("video_open", clip))
        assert reading.wait(30)
        demo.osprey_serving.janitor.sweep()
        assert Path(clip["path"]).is_file()  # named by the running call
        release.set()
        worker.join(60)
        assert out["got"][0] == "complete" and out["got"][1]["frames"] == 6
        demo.osprey_serving.janitor.sweep()
        assert not Path(clip["path"]).is_file()  # decoded and no longer named: gone


def test_a_drain_stops_tracking_runs_and_the_videos_close(tiny_service, tracker):
    video = VideoChat(tracker, VideoLimits(fps=2))
    started = threading.Event()
    _held_runs(video, started)
    demo = build_demo(tiny_service, video=video)
    with serving(demo, concurrency=8) as url:
        rest = Rest(url)
        _opened(rest)
        worker, out = _background(lambda: rest.call("video_track", 1, "forward"))
        assert started.wait(30)
        running = demo.osprey_serving
        running.on_drain.append(video.videos.stop_all)  # as osprey/app/main.py does
        # held for 5 s a frame, the run would take 25 s more; stopped, it ends at the next frame
        assert running.drain(FRAME_WAIT_S) == 0
        worker.join(30)
        assert out["got"][0] == "complete" and out["got"][1]["stopped"]
    assert video.close_all() == 1 and video.videos.open() == []
    assert video.videos.held_bytes() == 0


def test_close_all_stops_a_run_and_frees_every_video(tracker):
    video = VideoChat(tracker, VideoLimits(fps=2))
    a, b = VideoSession(), VideoSession()
    for vs in (a, b):
        video.open_video(vs, CLIP.read_bytes())
        video.click(vs, 1, 160, 120)
    run = video.track(a, 1, "forward")
    first = next(run)
    assert first.done == 1 and video.videos.held_bytes() > 0
    video.videos.stop_all()
    last = list(run)[-1]
    assert last.finished and last.stopped and last.done < last.total
    assert video.close_all() == 2
    assert a.clip is None and b.clip is None and video.videos.held_bytes() == 0


def test_open_videos_stay_within_their_budget(tracker):
    video = VideoChat(tracker, VideoLimits(fps=2), budget=1)  # one byte: one video at a time
    a, b = VideoSession(), VideoSession()
    video.open_video(a, CLIP.read_bytes())
    with pytest.raises(ServiceError, match="memory for videos"):
        video.open_video(b, CLIP.read_bytes())
    video.click(a, 1, 160, 120)
    assert list(video.track(a, 1, "forward"))[-1].finished  # its own state does not count
    video.open_video(a, CLIP.read_bytes())  # opening again replaces its own clip
    video.close(a)
    assert len(video.open_video(b, CLIP.read_bytes())) == 6  # room again


def test_the_memory_plan_gives_videos_a_share():
    small, large = plan_budgets(2 * 2**30), plan_budgets(64 * 2**30)
    assert small.videos == int(0.2 * 2 * 2**30) and large.videos == VIDEO_MAX
    assert plan_budgets(0).videos == VIDEO_MIN
    assert f"open videos up to {small.videos / MIB:.0f} MiB" in small.describe()


def test_the_app_gives_its_video_service_the_plan(capsys):
    from osprey.app.main import parse_args
    from osprey.app.startup import build_service, build_video

    args = parse_args(["--tiny", "--sam", "sam2.1-tiny", "--no-batching"])
    video = build_video(args, build_service(args))
    assert video.tracker is not None and video.videos.budget >= VIDEO_MIN
    assert "open videos up to" in capsys.readouterr().err
