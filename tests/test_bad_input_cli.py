"""Bad input on the command line ends in one ``error: ...`` line and a non-zero exit: never a
traceback, never a silent exit 0 (tiny models; in-process through ``osprey.core.options.run``, plus
real processes for the exit codes)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import app
from osprey.__main__ import main as osprey_main
from osprey.core.options import run
from sam_bridge.cli import main as sam_main
from tests.support.data import header_only_png

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory, voc):
    d = tmp_path_factory.mktemp("bad")
    Image.fromarray(voc["rgb"]).save(d / "photo.png")
    Image.fromarray(voc["masks"][0].astype(np.uint8) * 255).save(d / "mask.png")
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(d / "small_mask.png")
    (d / "zero.png").write_bytes(b"")
    (d / "text.png").write_text("this is not an image")
    Image.new("1", (20000, 20000)).save(d / "bomb.png")  # 400 MP, a few KB on disk
    # A PNG header saying 13370x13370 over garbage pixels: the size is read from the header
    # alone (decoding it would fail, or take 1.8 GB if it were real).
    (d / "header_only.png").write_bytes(header_only_png(13370, 13370))
    return d


def _error(capsys, main, argv) -> str:
    """Run a CLI; it must exit 1 with exactly one `error:` line (hints may follow, indented)."""
    code = run(main, argv)
    err = capsys.readouterr().err
    assert code == 1, err
    lines = err.strip().splitlines()
    assert lines[0].startswith("error: ") and "Traceback" not in err, err
    assert all(line.startswith("  ") for line in lines[1:]), err
    return lines[0]


def _describe(files, *extra):
    return ["describe", "--tiny", "--image", str(files / "photo.png"), *extra]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["describe", "--tiny", "--image", "missing.png", "--mask", "m.png"], "cannot read image"),
        (["--mask", "missing.png"], "cannot read mask"),
        (["--mask", "text.png"], "cannot read mask"),
        (
            ["--mask", "small_mask.png"],
            "mask small_mask.png (region 1) is 10x10, the image 500x375",
        ),
        (["--mask", "bomb.png"], "mask bomb.png (region 1) is far above the limit"),
        (["--mask", "header_only.png"], "is 13370x13370, the image 500x375"),
        ([], "describe needs regions: give --mask"),
        (["describe", "--tiny", "--image", "zero.png", "--mask", "mask.png"], "cannot read image"),
        (["describe", "--tiny", "--image", "bomb.png", "--mask", "mask.png"], "above the limit"),
        (["convert", "no/such/folder", "out"], "not an Osprey checkpoint"),
        (["info", "no-such-model"], "unknown model 'no-such-model'"),
        (["download", "no-such-model"], "not a downloadable model"),
    ],
)
def test_osprey_cli_errors(capsys, files, argv, expected, monkeypatch):
    monkeypatch.chdir(files)
    if not argv or argv[0].startswith("--"):
        argv = _describe(files, *argv)
    assert expected in _error(capsys, osprey_main, argv)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present here")
def test_a_device_that_is_not_there(capsys, files):
    argv = _describe(files, "--mask", str(files / "mask.png"), "--device", "cuda")
    assert "CUDA is not available" in _error(capsys, osprey_main, argv)


@pytest.mark.parametrize("flag", [["--dtype", "float99"], ["--max-new-tokens", "-5"]])
def test_usage_errors_exit_2(capsys, files, flag):
    with pytest.raises(SystemExit) as info:
        osprey_main(_describe(files, "--mask", str(files / "mask.png"), *flag))
    assert info.value.code == 2 and "error: argument" in capsys.readouterr().err


def test_sam_cli_missing_image(capsys, files):
    argv = [
        "segment",
        "--tiny",
        "--image",
        str(files / "none.png"),
        "--point",
        "1,1",
        "--out",
        str(files),
    ]
    assert "cannot read image" in _error(capsys, sam_main, argv)


def test_app_refuses_an_unknown_model_before_any_download(capsys, monkeypatch):
    from sam_bridge import SamBridge

    def no_download(*a, **k):
        raise AssertionError("SAM was fetched before the model name was checked")

    monkeypatch.setattr(SamBridge, "from_pretrained", classmethod(no_download))
    assert "is neither a checkpoint folder nor a known model" in _error(
        capsys, app.main, ["--model", "does-not-exist"]
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "osprey", "describe", "--tiny", "--image", "nope.png", "--mask", "nope.png"],
        ["app.py", "--model", "does-not-exist"],
    ],
)
def test_real_processes_exit_1_with_one_line(argv):
    out = subprocess.run(
        [sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 1 and out.stderr.startswith("error: "), out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
