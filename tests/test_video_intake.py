"""Clip intake (osprey/core/video.py): real pictures in every container the app reads, sampling by
time stamp (variable frame rates included), the phone's rotation, downscaling, frames kept as
JPEG bytes, and every bad file refused with one line, limits before decoding."""

from __future__ import annotations

import numpy as np
import pytest

from osprey.core import video as V
from osprey.core.video import VideoError, VideoLimits, clip_from_images, open_clip, probe_video
from tests.support.clips import encode, labelme_frames, pan, photo

pytest.importorskip("av", reason="PyAV decodes clips (requirements.txt)")


@pytest.fixture(scope="module")
def panned():
    """20 frames of a camera panning over the coffee photo (320x240)."""
    return pan(photo("coffee.jpg"), 20, (320, 240), step=8)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255**2 / max(mse, 1e-9))


def test_real_street_frames_survive_mp4_and_the_jpeg_kept():
    frames = labelme_frames()
    if frames is None:
        pytest.skip("labelme's frames were not fetched (python -m tests.support.clips fetch)")
    frames = [f[:562] for f in frames]  # H.264 4:2:0 wants even sizes
    clip = open_clip(encode(frames, fps=5), VideoLimits(fps=30))
    assert (len(clip), clip.width, clip.height) == (5, 1000, 562)
    assert clip.times == pytest.approx([0, 0.2, 0.4, 0.6, 0.8])
    assert clip.info.format == "MP4/MOV" and clip.info.codec == "h264"
    for i in range(5):
        assert clip.frames[i][:2] == b"\xff\xd8"  # kept compressed
        assert _psnr(clip.rgb(i), frames[i]) > 30
    assert clip.nbytes < 5 * 1000 * 562 * 3 / 5


@pytest.mark.parametrize(
    ("fmt", "codec", "kind"),
    [("mp4", "libx264", "MP4/MOV"), ("webm", "libvpx-vp9", "WebM/MKV"),
     ("avi", "mpeg4", "AVI"), ("mov", "libx264", "MP4/MOV"), ("gif", "gif", "GIF")],
)  # fmt: skip
def test_every_container_the_app_reads(panned, fmt, codec, kind):
    clip = open_clip(encode(panned, fmt, codec, fps=10), VideoLimits(fps=5))
    assert clip.info.format == kind
    assert len(clip) == 10 and clip.times[:3] == pytest.approx([0, 0.2, 0.4])
    assert (clip.width, clip.height) == (320, 240)
    assert _psnr(clip.rgb(4), panned[8]) > (14 if fmt == "gif" else 24)  # GIF: 256 colours


def test_sampling_downscaling_and_the_frame_index(panned):
    data = encode(panned, fps=10)  # 2 s
    clip = open_clip(data, VideoLimits(fps=2, max_side=160))
    assert clip.times == pytest.approx([0, 0.5, 1.0, 1.5])
    assert (clip.width, clip.height) == (160, 120) and clip.rgb(0).shape == (120, 160, 3)
    assert clip.nearest(1.2) == 2 and clip.nearest(99) == 3
    assert open_clip(data, VideoLimits(fps=1)).times == pytest.approx([0, 1.0])
    with pytest.raises(VideoError, match="frame 4 is outside the clip: it has 4 frames"):
        clip.handle(4)
    with pytest.raises(VideoError, match="whole number"):
        clip.check_index(1.5)
    assert clip.handle(1) is clip.handle(1) and not clip.handle(1).decoded


def test_variable_frame_rate_samples_by_time_stamp(panned):
    times = [0, 0.1, 0.15, 0.9, 1.0, 2.2]
    clip = open_clip(encode(panned[:6], times=times), VideoLimits(fps=2))
    assert clip.times == pytest.approx([0, 0.9, 1.0, 2.2])
    assert _psnr(clip.rgb(1), panned[3]) > 24  # the frame shown at 0.9 s


@pytest.mark.parametrize(("rotation", "k"), [(-90, -1), (90, 1), (180, 2)])
def test_the_rotation_a_phone_writes_is_applied(rotation, k):
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[:16, :16] = 255  # a white corner, top left as stored
    clip = open_clip(encode([rgb] * 3, rotation=rotation), VideoLimits(fps=10))
    shown = clip.rgb(0)
    expected = np.rot90(rgb, k)
    assert shown.shape == expected.shape and (clip.width, clip.height) == shown.shape[1::-1]
    assert np.abs(shown.astype(int) - expected).mean() < 8
    assert clip.rotation == rotation % 360


def test_limits_refuse_from_the_header_before_decoding(panned, monkeypatch):
    data = encode(panned, fps=10)  # 2 s, 20 frames, 320x240

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded despite the limit")

    monkeypatch.setattr(V, "_frames", no_decoding)
    with pytest.raises(VideoError, match=r"the video is 2\.0 s long, above the limit of 1\.0 s"):
        open_clip(data, VideoLimits(max_seconds=1))
    with pytest.raises(VideoError, match="gives 5 frames at 2 a second, above the limit of 4"):
        open_clip(data, VideoLimits(fps=2, max_frames=4))
    with pytest.raises(VideoError, match=r"320x240, above the limit of 0\.1 MP"):
        open_clip(data, VideoLimits(max_pixels=50_000))


def test_a_4k_ten_minute_clip_is_refused_before_decoding_it(monkeypatch):
    """Two 3840x2160 frames ten minutes apart: the header says 600 s."""
    big = np.zeros((2160, 3840, 3), np.uint8)
    data = encode([big, big], times=[0, 600])
    monkeypatch.setattr(V, "_frames", lambda *a: (_ for _ in ()).throw(AssertionError("decoded")))
    info = probe_video(data)
    assert (info.width, info.height) == (3840, 2160) and info.duration == pytest.approx(600, 0.01)
    with pytest.raises(VideoError, match=r"600 s long, above the limit of 120 s; trim it first"):
        open_clip(data)


def test_a_duration_the_header_hides_is_checked_while_decoding(panned, monkeypatch):
    data = encode(panned, fps=10)
    monkeypatch.setattr(V, "check_video", lambda info, limits: None)  # as if unknown
    with pytest.raises(VideoError, match=r"runs past the limit of 1\.0 s"):
        open_clip(data, VideoLimits(max_seconds=1, fps=30))


def test_bad_files_each_get_one_line(panned):
    mp4 = encode(panned, fps=10)
    audio = _audio_only()
    cases = {
        "image": (_jpeg(panned[0]), "this file is an image, not a video"),
        "audio": (audio, "no video stream (it holds audio only)"),
        "text": (b"not a video at all" * 50, "corrupt, truncated or not a video"),
        "empty": (b"", "corrupt, truncated or not a video"),
        "half": (mp4[: len(mp4) // 2], "corrupt, truncated or not a video"),
        "no decodable frame": (_blank_mdat(mp4), "no frame of the video could be decoded"),
    }  # fmt: skip
    for name, (data, message) in cases.items():
        with pytest.raises(VideoError) as info:
            open_clip(data)
        assert message in str(info.value), name
        assert "\n" not in str(info.value) and "/" not in str(info.value).replace("MP4/MOV", "")


def test_a_file_that_breaks_off_keeps_its_frames(panned):
    """A Matroska file cut at 60 %: the frames before the cut, and a note that says so."""
    data = encode(panned, "matroska", fps=10)
    clip = open_clip(data[: int(len(data) * 0.6)], VideoLimits(fps=10))
    assert 1 <= len(clip) < 20
    assert "truncated" in clip.note and "frames before are kept" in clip.note
    assert open_clip(data, VideoLimits(fps=10)).note == ""


def test_clips_from_images_share_one_size(panned):
    clip = clip_from_images(panned[:3], fps=2, max_side=160)
    assert clip.times == [0, 0.5, 1.0] and (clip.width, clip.height) == (160, 120)
    with pytest.raises(VideoError, match="share one size"):
        clip_from_images([panned[0], panned[0][:100]])


def test_limits_are_checked_themselves():
    with pytest.raises(VideoError, match="fps must be a positive number"):
        VideoLimits(fps=0)
    with pytest.raises(VideoError, match="max_frames must be a positive whole number"):
        VideoLimits(max_frames=0)


def _blank_mdat(mp4: bytes) -> bytes:
    """An MP4 whose header is intact and whose frame data are zeros: it opens, nothing decodes."""
    data = bytearray(mp4)
    at = data.find(b"mdat")
    size = int.from_bytes(data[at - 4 : at], "big")
    data[at + 4 : at - 4 + size] = bytes(size - 8)
    return bytes(data)


def _jpeg(rgb: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG")
    return buf.getvalue()


def _audio_only() -> bytes:
    import io

    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=44100)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 44100, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()
