"""The README's marked code blocks run as written (tiny models, in a fresh process each)."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from osprey.app.demo import build_demo
from osprey.inference.vocabularies import builtin
from tests.support.readme import blocks
from tests.support.servers import serving

REPO = Path(__file__).resolve().parents[1]
BLOCKS = blocks()


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )  # fmt: skip


def test_the_marked_blocks_are_there():
    """Blocks that need real weights or data (training, evaluation, data generation, downloads)
    are plain ``` blocks; everything that runs offline is marked and runs here."""
    assert {"api", "python-api", "cli", "sam-python", "video-api", "video-cli"} <= set(BLOCKS)
    assert {lang for lang, _ in BLOCKS.values()} == {"python", "bash"}


def test_cli_session_runs():
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", BLOCKS["cli"][1]], cwd=REPO, capture_output=True,
        text=True, timeout=600,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "mask_0.png" in out.stdout
    assert "model.vision_tower.vision_tower.visual.trunk.stem.0.weight\t192,3,4,4" in out.stdout
    top = re.findall(r"^([01]\.\d{4})\t(cup|mug|saucer|spoon|table)$", out.stdout, re.M)
    assert len(top) == 3 and len({name for _, name in top}) == 3  # classify: the top-3 lines


def test_sam_python_example_runs():
    out = _run(BLOCKS["sam-python"][1])
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.fixture(scope="module")
def url(tiny_service):
    with serving(build_demo(tiny_service)) as address:
        yield address


def test_api_example_runs_against_the_app(url):
    out = _run(BLOCKS["api"][1], OSPREY_URL=url)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in out.stdout.splitlines() if not line.startswith("Loaded as API")]
    assert "'area'" in lines[0] and lines[-3] == "['region1']" and lines[-1] == "region1"
    top = ast.literal_eval(lines[-4])  # /classify: the mask's top-3 COCO classes
    assert len(top) == 3 and all(name in builtin("coco").names for name, _ in top)


def test_python_api_example_runs():
    out = _run(BLOCKS["python-api"][1])
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(out.stdout.splitlines()) >= 5


def test_video_cli_example_runs():
    import json

    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", BLOCKS["video-cli"][1]], cwd=REPO, capture_output=True,
        text=True, timeout=600,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(Path("/tmp/osprey-tracks.json").read_text())
    assert [a["name"] for a in data["annotations"]] == ["track1", "saucer"]
    assert out.stdout.splitlines()[1].startswith("saucer\tframes")


@pytest.fixture(scope="module")
def video_url(tiny_service):
    pytest.importorskip("av", reason="PyAV decodes clips (requirements.txt)")
    from osprey.app.video_service import VideoChat
    from osprey.core.video import VideoLimits
    from sam_bridge.tracker import VideoTracker

    video = VideoChat(VideoTracker.tiny(), VideoLimits(fps=2))
    with serving(build_demo(tiny_service, video=video)) as address:
        yield address


def test_video_api_example_runs_against_the_app(video_url):
    out = _run(BLOCKS["video-api"][1], OSPREY_URL=video_url)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in out.stdout.splitlines() if not line.startswith("Loaded as API")]
    assert lines[0] == "6 320 240" and "6/6" in lines and lines[-1] == "6 True"
