"""The app's video operations (osprey/app/video_service.py, video_answers.py, video_export.py)
with the tiny tracker and the tiny Osprey on a real clip (a camera panning over the coffee
photo, as MP4): clicks, boxes and negative clicks on any frame, tracking both ways with
progress, a stop, corrections, questions about a frame, "describe over time", and the exports
read back (pycocotools frame by frame, the PNG zip, the MP4)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from pycocotools import mask as mask_utils

pytest.importorskip("av", reason="PyAV decodes clips (requirements.txt)")

from osprey.app.service import RegionChat
from osprey.app.video_answers import VideoAnswers, keyframes, spans
from osprey.app.video_export import to_json, to_mp4, to_zip
from osprey.app.video_service import VideoChat
from osprey.app.video_session import Track, VideoSession
from osprey.core.errors import ServiceError
from osprey.core.masks import decode_rle, encode_rle
from osprey.core.video import VideoLimits
from tests.support.clips import encode, pan, photo


@pytest.fixture(scope="module")
def tracker():
    from sam_bridge.tracker import VideoTracker

    return VideoTracker.tiny()


@pytest.fixture(scope="module")
def clip_bytes():
    return encode(pan(photo("coffee.jpg"), 8, (320, 240), step=10), fps=4)  # 2 s


@pytest.fixture
def video(tracker, tiny_osprey):
    from sam_bridge import SamBridge

    chat = RegionChat(tiny_osprey, SamBridge.tiny(family="sam2"), max_new_tokens=6)
    service = VideoChat(tracker, VideoLimits(fps=2))
    return service, VideoAnswers(chat, service)


@pytest.fixture
def tracked(video, clip_bytes):
    """A clip with two tracks (a click on frame 1, a box on frame 2), tracked both ways."""
    service, _ = video
    vs = VideoSession()
    service.open_video(vs, clip_bytes)
    service.click(vs, 1, 160, 120)
    assert service.click(vs, 2, 40, 40, "box") is None  # the first corner
    service.click(vs, 2, 200, 180, "box", track=1)
    reports = list(service.track(vs))
    return vs, reports


def test_open_gives_the_sampled_frames(video, clip_bytes):
    service, _ = video
    vs = VideoSession()
    clip = service.open_video(vs, clip_bytes)
    assert (len(clip), clip.width, clip.height) == (4, 320, 240)
    assert clip.times == pytest.approx([0, 0.5, 1.0, 1.5]) and vs.id and not vs.tracks


def test_clicks_boxes_and_tracking_both_ways(video, tracked):
    service, _ = video
    vs, reports = tracked
    assert [t.label for t in vs.tracks] == ["track1", "track2"]
    assert sorted(vs.tracks[0].prompts) == [1] and vs.tracks[1].prompts[2].box == (40, 40, 200, 180)
    # forward from frame 1 (the first prompt): 1, 2, 3; then back: 0
    assert [(r.done, r.total) for r in reports] == [(1, 4), (2, 4), (3, 4), (4, 4), (4, 4)]
    assert [r.frame for r in reports[:-1]] == [1, 2, 3, 0] and reports[-1].finished
    assert not reports[-1].stopped and vs.progress == (4, 4)
    for track in vs.tracks:  # the tiny tracker sees its objects on every frame
        assert track.visible() == [0, 1, 2, 3] and track.runs() == [(0, 3)]
    timeline = service.timeline(vs)
    assert timeline[1]["prompted"] == [2] and timeline[0]["runs"] == [(0, 3)]


def test_a_correction_retracks_from_its_frame(video, tracked):
    service, _ = video
    vs, _ = tracked
    before = {f: vs.tracks[0].masks[f] for f in range(4)}
    mask = service.click(vs, 3, 20, 20, "negative", track=0)  # a click on a tracked frame
    assert mask.shape == (240, 320) and vs.tracks[0].prompts[3].points == [(20.0, 20.0, 0)]
    reports = list(service.track(vs, start=3, direction="forward"))
    assert [r.frame for r in reports] == [3, 3] and reports[-1].finished
    assert vs.tracks[0].masks[3] != before[3]  # the correction holds after tracking again
    assert vs.tracks[0].masks[0] == before[0]  # frames before it are not tracked again


def test_stop_ends_a_run_at_the_next_frame(video, clip_bytes):
    service, _ = video
    vs = VideoSession()
    service.open_video(vs, clip_bytes)
    service.click(vs, 0, 160, 120)
    run = service.track(vs, direction="forward")
    first = next(run)
    with pytest.raises(ServiceError, match="being tracked"):  # no prompt during a run
        service.click(vs, 2, 10, 10, track=0)
    service.stop(vs)
    rest = list(run)
    assert first.done == 1 and rest[-1].finished and rest[-1].stopped
    assert sorted(vs.tracks[0].masks) == [0]
    assert list(service.track(vs, start=1, direction="forward"))[-1].done == 3  # free again


def test_a_client_that_stops_reading_leaves_the_clip_usable(video, clip_bytes):
    service, _ = video
    vs = VideoSession()
    service.open_video(vs, clip_bytes)
    service.click(vs, 0, 160, 120)
    run = service.track(vs)
    next(run)
    run.close()  # what Gradio does when the client goes away
    assert not vs.busy.locked()
    service.close(vs)
    assert vs.clip is None and vs.tracking is None


def test_a_track_that_vanishes_is_absent_not_an_error(video, tracked, tmp_path):
    service, answers = video
    vs, _ = tracked
    empty = encode_rle(np.zeros((240, 320), bool))
    vs.tracks[0].masks[2] = empty  # as the tracker reports an object it no longer sees
    vs.tracks[0].masks[3] = None
    assert vs.tracks[0].visible() == [0, 1] and vs.tracks[0].runs() == [(0, 1)]
    data = to_json(vs, "tiny-random", True)
    assert data["annotations"][0]["segmentations"][2:] == [None, None]
    assert data["annotations"][0]["areas"][2:] == [None, None]
    to_mp4(vs, tmp_path / "out.mp4")  # drawn without it
    assert [name for name, _ in answers.describe(vs, 3, "category")] == ["track2"]
    assert service.timeline(vs)[0]["runs"] == [(0, 1)]


def test_questions_about_a_frame_use_its_tracks(video, tracked):
    _, answers = video
    vs, _ = tracked
    got = answers.describe(vs, 2, "category")
    assert [name for name, _ in got] == ["track1", "track2"] and all(
        isinstance(a, str) for _, a in got
    )
    replies = list(answers.ask(vs, 2, "What is track2 doing?"))
    assert replies[-1].done and "Read 'track2' as region2" in replies[-1].note
    top = answers.classify(vs, 2, "cup, saucer, spoon", 2)
    assert len(top) == 2 and len(top[0][1]) == 2
    assert abs(sum(p for _, p in answers.classify(vs, 2, "cup, saucer", 2)[0][1]) - 1) < 1e-4
    with pytest.raises(ServiceError, match="Frame 7 is outside the clip"):
        answers.describe(vs, 7, "short")


def test_describe_over_time_keyframes_and_spans(video, tracked):
    _, answers = video
    vs, _ = tracked
    out = answers.describe_over_time(vs, every=2)
    assert [o["name"] for o in out] == ["track1", "track2"]
    for o, track in zip(out, vs.tracks):
        frames = [c["frame"] for c in o["captions"]]
        assert (frames == keyframes(track, 2) and frames[:2] == [0, 2]) or frames[0] == 0
        assert o["spans"][0]["start"] == 0 and o["spans"][-1]["end"] == 3
        assert track.captions == o["captions"]
    with pytest.raises(ServiceError, match="every must be a whole number"):
        answers.describe_over_time(vs, every=0)


def test_spans_merge_consecutive_keyframes_that_say_the_same():
    track = Track(1, "car", (1, 2, 3))
    for f in range(10):
        track.masks[f] = encode_rle(np.ones((4, 4), bool))
    said = [("car", "a red car"), ("Car", "A red car."), ("truck", "a truck"), ("car", "a car")]
    captions = [{"frame": f, "category": c, "caption": s} for f, (c, s) in zip((0, 3, 6, 8), said)]
    got = [(s.start, s.end, s.category, s.keyframes) for s in spans(track, captions)]
    assert got == [(0, 5, "car", [0, 3]), (6, 7, "truck", [6]), (8, 9, "car", [8])]


def test_keyframes_add_where_the_mask_changes_most():
    track = Track(1, "ball", (1, 2, 3))
    for f in range(9):
        m = np.zeros((20, 20), bool)
        m[2:8, 2:8] = True
        if f >= 5:  # the ball jumps at frame 5
            m = np.roll(m, 10, axis=1)
        track.masks[f] = encode_rle(m)
    assert keyframes(track, 4) == [0, 4, 5, 8]


def test_exports_read_back(video, tracked, tmp_path):
    vs, _ = tracked
    data = json.loads(json.dumps(to_json(vs, "tiny-random", True)))  # JSON-ready
    video_info = data["videos"][0]
    assert (video_info["width"], video_info["height"], video_info["length"]) == (320, 240, 4)
    for ann, track in zip(data["annotations"], vs.tracks):
        assert ann["video_id"] == 1 and ann["name"] == track.label
        for f, seg in enumerate(ann["segmentations"]):  # frame by frame, with pycocotools
            rle = {"size": seg["size"], "counts": seg["counts"].encode()}
            mask = mask_utils.decode(rle).astype(bool)
            assert mask.shape == (240, 320) and np.array_equal(mask, decode_rle(track.mask(f)))
            assert ann["areas"][f] == int(mask_utils.area(rle)) == int(mask.sum())
            x, y, w, h = ann["bboxes"][f]
            assert mask[y : y + h, x : x + w].sum() == mask.sum()
    with zipfile.ZipFile(io.BytesIO(to_zip(vs, data))) as zf:
        assert sorted(zf.namelist())[:2] == ["masks/00000.png", "masks/00001.png"]
        from PIL import Image

        ids = np.asarray(Image.open(io.BytesIO(zf.read("masks/00002.png"))))
        assert set(np.unique(ids)) <= {0, 1, 2} and (ids == 2).sum() > 0
        assert np.array_equal(ids == 2, decode_rle(vs.tracks[1].mask(2)))
        assert json.loads(zf.read("tracks.json"))["videos"][0]["length"] == 4
    import av

    with av.open(str(to_mp4(vs, tmp_path / "tracks.mp4"))) as container:
        codec = container.streams.video[0].codec_context.name
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert codec == "h264" and len(frames) == 4 and frames[0].shape == (240, 320, 3)
    drawn = vs.tracks[1].color  # track2's fill tints its mask
    inside = frames[2][decode_rle(vs.tracks[1].mask(2)) & ~decode_rle(vs.tracks[0].mask(2))]
    assert np.abs(inside.mean(0) - photo_mean(vs, 2)).sum() > 10 and len(drawn) == 3


def photo_mean(vs, frame):
    return vs.clip.rgb(frame).reshape(-1, 3).mean(0)


def test_close_frees_the_tracking_state(video, tracked):
    service, _ = video
    vs, _ = tracked
    tracking = vs.tracking
    assert tracking.state_bytes() > 0
    service.close(vs)
    assert tracking.state_bytes() == 0 and vs.clip is None and not vs.tracks


def test_bad_requests_each_get_one_line(video, clip_bytes):
    service, _ = video
    vs = VideoSession()
    with pytest.raises(ServiceError, match="Open a video first"):
        service.click(vs, 0, 1, 1)
    service.open_video(vs, clip_bytes)
    cases = [
        (lambda: service.click(vs, 4, 10, 10), "Frame 4 is outside the clip: it has 4 frames"),
        (lambda: service.click(vs, -1, 10, 10), "Frame -1 is outside the clip"),
        (lambda: service.click(vs, 1.5, 10, 10), "Frame must be a whole number"),
        (lambda: service.click(vs, 0, 400, 10), "outside the 320x240 frame"),
        (lambda: service.click(vs, 0, 10, 10, "erase"), "Unknown click mode"),
        (lambda: service.click(vs, 0, 10, 10, track=3), "There is no track 3"),
        (lambda: service.prompt(vs, 0, [], None, None), "at least one point or a box"),
        (lambda: service.prompt(vs, 0, [(1, 1)], [1, 0]), "1 points but 2 labels"),
        (lambda: service.prompt(vs, 0, box=(50, 50, 50, 90)), "zero area"),
        (lambda: list(service.track(vs)), "Click on an object first"),
        (lambda: service.rename(vs, 0, "x"), "There is no track 0"),
    ]
    for call, message in cases:
        with pytest.raises(ServiceError, match=message):
            call()
    assert not vs.tracks  # failed first prompts leave no empty track behind
    service.click(vs, 0, 10, 10)
    with pytest.raises(ServiceError, match="already named"):
        service.new_track(vs, "track1")
    with pytest.raises(ServiceError, match="cannot be used: the video is"):
        VideoChat(service.tracker, VideoLimits(max_seconds=1)).open_video(
            VideoSession(), clip_bytes
        )
    with pytest.raises(ServiceError, match=r"needs SAM 2\.1"):
        VideoChat(None).open_video(VideoSession(), clip_bytes)
