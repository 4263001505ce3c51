"""A minimal video page (``/video``, a page of its own beside the image page, which it does not
touch): open a clip, scrub its frames, click objects (a new track or the chosen one; positive,
negative, box), track them with a progress bar and a Stop button, see where each track is
(timeline), ask about the frame, describe over time, export. Each handler is one call of the video
service and a redraw. The full video view (timeline under the player, the page's own decoder)
waits for the page's redesign.
"""

# No ``from __future__ import annotations``: Gradio reads handlers' annotations (gr.SelectData).
import tempfile
from pathlib import Path

import gradio as gr

from osprey.app.fair_share import whole_clip
from osprey.app.guard import guarded
from osprey.app.uploads import open_upload
from osprey.app.video_answers import VideoAnswers
from osprey.app.video_api import MAX_VIDEO_BYTES
from osprey.app.video_export import draw_frame, to_json, to_mp4, to_zip
from osprey.app.video_service import VideoChat
from osprey.app.video_session import VideoSession
from osprey.core.errors import ServiceError

NEW_TRACK = -1
TIMELINE_WIDTH = 60  # characters of a track's timeline


def timeline_text(vs: VideoSession) -> str:
    """Per track, one line: its name and where it is seen (``#``) across the clip."""
    if vs.clip is None or not vs.tracks:
        return "No track yet: click on an object in the frame."
    n, lines = len(vs.clip), []
    width = min(n, TIMELINE_WIDTH)
    for t in vs.tracks:
        seen = set(t.visible())
        cells = ["#" if seen & set(range(c * n // width, max((c + 1) * n // width, c * n // width + 1)))
                 else "." for c in range(width)]  # fmt: skip
        said = "; ".join(f"{s.start}-{s.end}: {s.category}" for s in t.spans)
        lines.append(f"{t.label:>12} |{''.join(cells)}| " + said)
    return "```\n" + "\n".join(lines) + "\n```"


def _view(vs: VideoSession, frame: int, message: str = ""):
    """What the page shows: the frame drawn, the slider, the track picker, the timeline."""
    if vs.clip is None:
        return (vs, None, gr.update(maximum=1, value=0), gr.update(choices=[("new track", NEW_TRACK)]),
                timeline_text(vs), message)  # fmt: skip
    frame = min(max(int(frame or 0), 0), len(vs.clip) - 1)
    choices = [("new track", NEW_TRACK)] + [(t.label, i) for i, t in enumerate(vs.tracks)]
    time_s = vs.clip.times[frame]
    return (vs, draw_frame(vs, frame), gr.update(maximum=max(len(vs.clip) - 1, 1), value=frame),
            gr.update(choices=choices), timeline_text(vs),
            message or f"Frame {frame} of {len(vs.clip)} ({time_s:.1f} s)")  # fmt: skip


def build_video_page(
    video: VideoChat, answers: VideoAnswers, model: str, lane: dict | None = None
) -> None:
    """The page's components and events (inside ``demo.route(...)``). ``lane``: the image
    page's Gradio lanes (osprey/app/handlers.py ``lanes``): opening a clip, clicks and exports
    go with new images, questions with answers, so the fair share counts them alike."""
    state = gr.State(VideoSession(), time_to_live=3600, delete_callback=lambda vs: video.close(vs))
    gr.Markdown("## Regions over time\nOpen a clip, click an object, **Track**, then ask.")
    with gr.Row():
        upload = gr.File(label="Video (MP4, MOV, WebM, MKV, AVI, GIF)", file_types=["video"],
                         elem_id="video-upload")  # fmt: skip
        with gr.Column():
            track = gr.Dropdown([("new track", NEW_TRACK)], value=NEW_TRACK, label="Track")
            mode = gr.Radio(["positive", "negative", "box"], value="positive", label="Click")
    image = gr.Image(label="Frame (click an object)", interactive=False, elem_id="video-frame")
    slider = gr.Slider(0, 1, step=1, value=0, label="Frame", elem_id="video-slider")
    message = gr.Markdown(elem_id="video-message")
    with gr.Row():
        run, stop = gr.Button("Track", variant="primary"), gr.Button("Stop")
    timeline = gr.Markdown(elem_id="video-timeline")
    with gr.Row():
        question = gr.Textbox(label="Ask about this frame (name tracks: track1, ...)", scale=3)
        task = gr.Radio(["category", "short", "detailed"], value="short", label="Describe")
    answer = gr.Markdown(elem_id="video-answer")
    with gr.Row():
        every = gr.Number(5, precision=0, minimum=1, label="Describe over time: every k frames")
        over, export = gr.Button("Describe over time"), gr.Button("Export")
    files = gr.File(label="Exports", file_count="multiple")
    outputs = [state, image, slider, track, timeline, message]
    _wire(video, answers, model, state, upload, track, mode, image, slider, run, stop, question,
          task, answer, every, over, export, files, outputs, lane or {})  # fmt: skip


def _wire(video, answers, model, state, upload, track, mode, image, slider, run, stop, question,
          task, answer, every, over, export, files, outputs, lane) -> None:  # fmt: skip
    encode, answering = lane.get("encode", {}), lane.get("answer", {})

    @guarded
    def on_open(vs, file):
        if file is None:
            raise ServiceError("Upload a video first.")
        # the page's file is a path Gradio stored in its upload folder: checked as an upload
        with open_upload({"path": str(file)}, "video", MAX_VIDEO_BYTES) as source:
            clip = video.open_video(vs, source)
        return _view(vs, 0, f"{len(clip)} frames of {clip.width}x{clip.height}. {clip.note}")

    @guarded
    def on_click(vs, frame, index, how, evt: gr.SelectData):
        x, y = evt.index
        tid = None if index in (None, NEW_TRACK) else int(index)
        mask = video.click(vs, int(frame), float(x), float(y), how, tid)
        return _view(vs, frame, "Now click the opposite corner." if mask is None else "")

    @whole_clip  # one tracking run per visitor (osprey/app/fair_share.py)
    @guarded
    def on_track(vs, frame, progress=gr.Progress()):  # noqa: B008 (Gradio injects it)
        for p in video.track(vs):  # the page's Stop (or leaving) ends it at the next frame
            progress((p.done, p.total), desc="tracking")
            said = "Stopped" if p.stopped else "Tracked"
            yield _view(vs, p.frame if not p.finished else frame,
                        f"{said} {p.done} of {p.total} frames.")  # fmt: skip

    @guarded
    def on_ask(vs, frame, text):
        replies = list(answers.ask(vs, int(frame), text))
        return replies[-1].text + (f"\n\n_{replies[-1].note}_" if replies[-1].note else "")

    @guarded
    def on_describe(vs, frame, which):
        return "\n".join(f"**{n}**: {a}" for n, a in answers.describe(vs, int(frame), which))

    @whole_clip
    @guarded
    def on_over(vs, frame, k):
        answers.describe_over_time(vs, int(k or 1))
        return _view(vs, frame, "Described over time (see the timeline).")

    @guarded
    def on_export(vs):
        video.clip(vs)
        folder = Path(tempfile.mkdtemp(prefix="osprey-video-"))
        data = to_json(vs, model, video.untrained)
        (folder / "tracks.zip").write_bytes(to_zip(vs, data))
        return [str(folder / "tracks.zip"), str(to_mp4(vs, folder / "tracks.mp4"))]

    upload.upload(on_open, [state, upload], outputs, **encode)
    image.select(on_click, [state, slider, track, mode], outputs, **encode)
    slider.release(guarded(lambda vs, f: _view(vs, f)), [state, slider], outputs)
    job = run.click(on_track, [state, slider], outputs, concurrency_id="track",
                    concurrency_limit=2)  # fmt: skip
    stop.click(guarded(lambda vs: video.stop(vs)), [state], None, cancels=[job])
    question.submit(on_ask, [state, slider, question], answer, **answering)
    task.select(on_describe, [state, slider, task], answer, **answering)
    over.click(on_over, [state, slider, every], outputs, **answering)
    export.click(on_export, [state], files, **encode)
