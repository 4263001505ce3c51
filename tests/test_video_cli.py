"""``python -m osprey track`` offline with the tiny models on the example clip: objects from
clicks, boxes and negative clicks, tracked, described over time, written as JSON, a PNG zip and
an MP4; every bad input one ``error:`` line before a model loads."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("av", reason="PyAV decodes clips (requirements.txt)")

from osprey.__main__ import main
from osprey.app import video_cli
from osprey.core.options import run

REPO = Path(__file__).resolve().parents[1]
CLIP = str(REPO / "examples" / "coffee_pan.mp4")  # 6 frames at 2 a second, 320x240


def test_track_writes_the_tracks_and_their_files(tmp_path, capsys):
    out = tmp_path / "tracks.json"
    argv = ["track", "--tiny", "--video", CLIP, "--point", "160,120,1", "--object", "cup",
            "--box", "20,20,200,200,3", "--point", "100,100,3,0", "--out", str(out),
            "--masks-zip", str(tmp_path / "m.zip"), "--mp4", str(tmp_path / "t.mp4"),
            "--describe-every", "3", "--direction", "both"]  # fmt: skip
    assert run(main, argv) == 0
    data = json.loads(out.read_text())
    names = [a["name"] for a in data["annotations"]]
    assert names == ["track1", "cup"] and data["videos"][0]["length"] == 6
    assert data["annotations"][1]["prompted_frames"] == [3] and data["info"]["untrained"]
    described = [c["frame"] for c in data["annotations"][0]["captions"]]
    assert described[0] == 0 and 3 in described  # every 3rd frame seen, and where it changes
    with zipfile.ZipFile(tmp_path / "m.zip") as zf:
        assert "masks/00005.png" in zf.namelist()
    assert (tmp_path / "t.mp4").stat().st_size > 1000
    stdout = capsys.readouterr().out.splitlines()
    assert stdout[0].startswith("track1\tframes 0-5") and stdout[1].startswith("cup\tframes")


def test_prompts_are_grouped_by_object_in_order():
    objects = video_cli.parse_prompts([
        ("point", "1,2,0"), ("point", "3,4,0,0"), ("box", "0,0,9,9,2"),
        ("object", "dog"), ("point", "5,6,1"),
    ])  # fmt: skip
    assert [o.name for o in objects] == ["", "dog"]
    assert objects[0].frames == {0: ([(1, 2), (3, 4)], [1, 0], None), 2: ([], [], (0, 0, 9, 9))}
    assert objects[1].frames == {1: ([(5, 6)], [1], None)}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--point", "160,120,9"], "frame 9 is outside the clip: it has 6 frames (0 to 5)"),
        (["--point", "400,120,0"], "(400, 120) on frame 0 is outside the 320x240 frames"),
        (["--point", "1,2"], "--point '1,2': expected X,Y,FRAME or X,Y,FRAME,LABEL"),
        (["--point", "1,2,0,3"], "the label is 1 (positive) or 0 (negative)"),
        (["--box", "1,2,3,4"], "--box '1,2,3,4': expected X0,Y0,X1,Y1,FRAME"),
        (["--point", "1,2,0.5"], "FRAME is a frame number"),
        ([], "track needs at least one --point"),
        (["--point", "1,1,0", "--max-video-seconds", "1"], "above the limit of 1.0 s"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_before_any_model(tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.setattr(video_cli, "_tracker", lambda args: pytest.fail("a model was loaded"))
    argv = ["track", "--tiny", "--video", CLIP, "--out", str(tmp_path / "o.json"), *extra]
    assert run(main, argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_an_image_is_not_a_video(tmp_path, capsys):
    argv = ["track", "--tiny", "--video", str(REPO / "examples" / "coffee.jpg"), "--point",
            "1,1,0", "--out", str(tmp_path / "o.json")]  # fmt: skip
    assert run(main, argv) == 1
    assert "this file is an image, not a video" in capsys.readouterr().err
