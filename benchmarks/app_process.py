"""``python app.py`` as its own process for the benchmarks that measure it from outside (no GIL
shared with the clients that drive it)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start_app(args: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``python app.py ARGS --port P`` on a free port and wait until it serves; returns
    the process and its URL. Its stderr is a pipe (read when it fails to start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
    argv = [sys.executable, "app.py", *args, "--port", str(port)]
    proc = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}/"
    for _ in range(600):
        try:
            with urllib.request.urlopen(url + "config", timeout=2) as response:
                if response.status == 200:
                    return proc, url
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"the app exited: {proc.stderr.read().decode()[-2000:]}"
                ) from None
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the app did not start")


def stop_app(proc: subprocess.Popen) -> None:
    """Ask the app to stop (Ctrl-C), then kill it if it lingers."""
    import signal

    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
