"""Serve a Gradio app in-process on a free loopback port, for client and browser tests."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(demo, isolate: bool = True, policy=None, **launch: object):
    """``demo.launch`` on a free loopback port through ``serve`` (its gate, its cross-origin
    isolation headers unless ``isolate`` is off, Gradio's start-up check retried); returns
    (port, the :class:`~osprey.app.serving.Serving`)."""
    from osprey.app.serving import serve

    port = free_port()
    running = serve(demo, {"server_name": "127.0.0.1", "server_port": port, "quiet": True,
                           **launch}, isolate=isolate, policy=policy)  # fmt: skip
    return port, running


@contextlib.contextmanager
def serving(
    demo, concurrency: int = 2, max_size: int | None = None, isolate: bool = True,
    policy=None, **launch: object,
) -> Iterator[str]:  # fmt: skip
    """Launch ``demo`` (queued) on 127.0.0.1 and yield its URL; closed on exit. ``policy``: an
    :class:`osprey.app.serving.Policy`; ``launch``: more options of ``demo.launch``
    (``max_file_size``, ...)."""
    demo.queue(default_concurrency_limit=concurrency, max_size=max_size)
    port, running = start(demo, isolate, policy, **launch)
    demo.osprey_serving = running  # for tests that drain it or sweep its uploads
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        running.janitor.stop()
        demo.close()
