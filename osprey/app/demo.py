"""The demo as Gradio Blocks: the page (layout, then wiring) and the typed HTTP API, over one
:class:`~osprey.app.service.RegionChat`. :func:`build_demo` builds it without launching it."""

# No ``from __future__ import annotations``: Gradio reads handlers' annotations (gr.Request,
# gr.SelectData, gr.EventData) as real types to know what to inject.

from collections.abc import Sequence

from osprey.app.guard import guarded
from osprey.app.handlers import API_LANES, Visitors, lanes
from osprey.app.layout import build_layout, default_examples
from osprey.app.wiring import wire
from osprey.app.zerogpu import gpu

CACHE_TTL_S = 900  # files in Gradio's cache are deleted after this many seconds


IDLE_SESSION_S = 7200


def build_demo(
    service, cache_ttl: int = CACHE_TTL_S, examples: Sequence[str] | None = None,
    trust_proxy: bool = False,
):  # fmt: skip
    """The page (layout, then wiring) and the API endpoints, over one RegionChat.
    ``examples``: photo files offered on the page (default: the checkout's ``examples/``);
    ``trust_proxy``: API clients' addresses from ``X-Forwarded-For`` (see fair_share.py)."""
    import gradio as gr

    from osprey.app.http_api import Endpoints
    from osprey.app.session import Session

    visitors = Visitors(service)
    # Gradio's cache (drawn images, exports; uploads are deleted once decoded): files older than
    # cache_ttl seconds go, checked every cache_ttl / 4; a visitor's session is freed when the
    # tab closes, or after two idle hours.
    cleanup = (max(1, cache_ttl // 4), cache_ttl)

    def forget(s) -> None:
        # A plain function, not the bound method: Gradio deep-copies the page's config (the State
        # and its callback included) for every page load and API client, and a bound method's
        # copy is a copy of the service with the model in it.
        visitors.forget(s)

    with gr.Blocks(
        title="Osprey: point and describe", delete_cache=cleanup, fill_width=True
    ) as demo:
        state = gr.State(Session(), time_to_live=IDLE_SESSION_S, delete_callback=forget)
        shown = default_examples() if examples is None else list(examples)
        ui = build_layout(service, state, shown)  # the Session is deep-copied for each visitor
        wire(ui, service, visitors)

        def on_leave(request: gr.Request):
            visitors.left(request)

        demo.unload(on_leave)
        api, lane = Endpoints(service, trust_proxy), lanes(service)
        for name in Endpoints.NAMES:
            endpoint = guarded(gpu(getattr(api, name)))
            gr.api(endpoint, api_name=name, **lane[API_LANES.get(name, "interactive")])
    return demo
