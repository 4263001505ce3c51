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
    trust_proxy: bool = False, video=None,
):  # fmt: skip
    """The page (layout, then wiring) and the API endpoints, over one RegionChat.
    ``examples``: photo files offered on the page (default: the checkout's ``examples/``);
    ``trust_proxy``: API clients' addresses from ``X-Forwarded-For`` (see fair_share.py);
    ``video``: a :class:`~osprey.app.video_service.VideoChat` for the video endpoints."""
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
        if video is not None:
            _video_api(service, video, lane)
    if video is not None:
        _video_page(demo, service, video, lanes(service))
    return demo


def _video_page(demo, service, video, lane: dict) -> None:
    """The video page at /video (osprey/app/video_page.py), apart from the image page."""
    from osprey.app.video_answers import VideoAnswers
    from osprey.app.video_page import build_video_page

    with demo.route("Video", "/video"):
        build_video_page(video, VideoAnswers(service, video), service.osprey.name, lane)


def _video_api(service, video, lane: dict) -> None:
    """The video endpoints (osprey/app/video_api.py) in their lanes."""
    import gradio as gr

    from osprey.app.video_answers import VideoAnswers
    from osprey.app.video_api import TRACK_LANE, VIDEO_LANES, VideoEndpoints

    api = VideoEndpoints(video, VideoAnswers(service, video), service.osprey.name)
    lanes = {**lane, "track": TRACK_LANE}
    for name in VideoEndpoints.NAMES:
        endpoint = guarded(gpu(getattr(api, name)))
        gr.api(endpoint, api_name=name, **lanes[VIDEO_LANES.get(name, "interactive")])
