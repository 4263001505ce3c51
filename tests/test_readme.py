"""The README's marked code blocks run as written (tiny models, in a fresh process each)."""

import ast
import os
import subprocess
import sys

import pytest

import app
from osprey.vocabulary import builtin
from tests.support.readme import blocks
from tests.support.servers import serving

REPO = app.REPO
BLOCKS = blocks()


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )  # fmt: skip


def test_the_marked_blocks_are_there():
    assert {"api", "python-api"} <= set(BLOCKS)
    assert all(lang == "python" for lang, _ in BLOCKS.values())


@pytest.fixture(scope="module")
def url(tiny_service):
    with serving(app.build_demo(tiny_service)) as address:
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
