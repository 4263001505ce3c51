"""``python app.py`` as its own process for the benchmarks that measure it from outside (no GIL
shared with the clients that drive it)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start_app(args: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``python app.py ARGS --port P`` on a free port and wait until it serves; returns
    the process and its URL. Its stderr goes to a temporary file (a pipe nobody reads would stop
    a long run once full), shown when it fails to start."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
    argv = [sys.executable, "app.py", *args, "--port", str(port)]
    log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)
    proc.log = log  # read with app_log(proc)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(600):
        try:
            with urllib.request.urlopen(url + "config", timeout=2) as response:
                if response.status == 200:
                    return proc, url
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"the app exited: {app_log(proc)[-2000:]}") from None
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the app did not start")


def app_log(proc: subprocess.Popen) -> str:
    """What the app started by :func:`start_app` wrote to stderr so far."""
    proc.log.seek(0)
    return proc.log.read().decode(errors="replace")


def stop_app(proc: subprocess.Popen) -> None:
    """Ask the app to stop (Ctrl-C), then kill it if it lingers."""
    import signal

    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
