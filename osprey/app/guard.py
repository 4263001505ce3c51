"""The last line between a request and its visitor: whatever a handler raises reaches the
visitor (or API client) as one message in the app's words, and the server keeps serving. What
the app did not foresee is logged with an incident id that the visitor sees instead."""

from __future__ import annotations

import functools
import inspect
import logging
import uuid

LOG = logging.getLogger("osprey.app")


def user_error(exc: Exception):
    """The one message a user (or API client) sees for ``exc``: the app's own words for what
    they can fix; for anything else a line with an id, and the traceback in the server's log
    under that id (never an exception's name, text or a server path)."""
    import gradio as gr

    from osprey.core.errors import OspreyError

    if isinstance(exc, OspreyError):
        return gr.Error(str(exc), print_exception=False)
    if isinstance(exc, gr.Error):
        return exc
    if type(exc).__name__ == "OutOfMemoryError":
        import torch

        torch.cuda.empty_cache()
        return gr.Error(
            "The GPU ran out of memory for this request; try fewer regions or a smaller image."
        )
    incident = uuid.uuid4().hex[:8]
    LOG.error("request failed (incident %s)", incident, exc_info=exc)
    return gr.Error(
        f"Something went wrong on the server (incident {incident}); it was logged. Please try "
        "again, or report the incident id.",
        print_exception=False,
    )


def guarded(fn):
    """Errors reach the user (or API client) as one message; the server keeps serving. Keeps
    ``fn``'s signature (Gradio injects SelectData / Request and types endpoints by it) and its
    kind (a generator stays a generator, so answers still stream)."""
    if inspect.isgeneratorfunction(inspect.unwrap(fn)):

        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise user_error(exc) from exc

        return stream

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise user_error(exc) from exc

    return run
