"""Checkpoints never run code: a checkpoint folder whose tokenizer config points at its own module
(``auto_map``) loads with the stock classes, even when a user answers "y" at the terminal prompt
transformers shows for such folders. (Pickled weights are refused: test_checkpoint.py,
test_sam_checkpoints.py.)"""

import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
EVIL = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\n"


def _on_terminal(argv: list[str], answer: str = "y\n", timeout: float = 300) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal as stdin/stdout (so prompts ask), typing ``answer``."""
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=REPO, env=env)
    os.close(slave)
    os.write(master, answer.encode())
    out, deadline = b"", time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            out += os.read(master, 65536)
        except OSError:
            break
    proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    os.close(master)
    return proc.returncode, out.decode(errors="replace")


@pytest.fixture(scope="module")
def evil_checkpoint(tmp_path_factory, tiny_parts):
    """The tiny model saved in our format, its tokenizer config asking for its own code."""
    from osprey.model.checkpoint import save_osprey

    root = tmp_path_factory.mktemp("evil")
    path = save_osprey(*tiny_parts, root / "model")
    config = json.loads((path / "tokenizer_config.json").read_text())
    config.pop("tokenizer_class", None)  # so transformers must resolve the class from auto_map
    config["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", "evil.EvilTokenizer"]}
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    marker = root / "MARKER"
    (path / "evil.py").write_text(EVIL.format(marker=str(marker)))
    return path, marker


def test_the_harness_sees_code_run_when_transformers_is_asked_plainly(evil_checkpoint):
    """Control: a plain AutoTokenizer load of the folder, "y" typed at its prompt, runs evil.py."""
    path, marker = evil_checkpoint
    marker.unlink(missing_ok=True)
    code = f"from transformers import AutoTokenizer; AutoTokenizer.from_pretrained({str(path)!r})"
    _on_terminal([sys.executable, "-c", code])
    assert marker.exists()
    marker.unlink()


def test_describe_with_y_on_the_terminal_runs_no_checkpoint_code(evil_checkpoint, voc, tmp_path):
    path, marker = evil_checkpoint
    marker.unlink(missing_ok=True)
    Image.fromarray(voc["rgb"]).save(tmp_path / "photo.png")
    Image.fromarray(voc["masks"][0].astype(np.uint8) * 255).save(tmp_path / "m.png")
    argv = [sys.executable, "-m", "osprey", "describe", "--model", str(path), "--image",
            str(tmp_path / "photo.png"), "--mask", str(tmp_path / "m.png"), "--max-new-tokens", "4"]  # fmt: skip
    code, out = _on_terminal(argv)
    assert code == 0, out[-2000:]
    assert not marker.exists()
    assert "asks to run its own tokenizer code; it is ignored" in out


def test_the_stock_tokenizer_gives_the_weights_ids(evil_checkpoint, tiny_parts):
    from osprey.model.llm import load_tokenizer

    path, marker = evil_checkpoint
    tok = load_tokenizer(path, 32000, 32001)
    text = "What is the category of <mask><pos>? Using only one word or phrase."
    assert tok(text)["input_ids"] == tiny_parts[1](text)["input_ids"] and not marker.exists()
