"""osprey-open: point-and-describe demo. `python app.py --help` for the options.

Layout and wiring only: each handler is one call of the service (``osprey/service.py``) and one
redraw through the viewer (``osprey/viz.py``); the HTTP API is ``osprey/api.py`` registered with
``gr.api``. Hugging Face Spaces (CPU, GPU and ZeroGPU) run this file as it is.
"""

try:  # ZeroGPU: `spaces` must be imported before torch; elsewhere @spaces.GPU is a no-op.
    import spaces

    GPU = spaces.GPU(duration=120)
except ImportError:  # pragma: no cover - spaces is in requirements.txt

    def GPU(fn):
        return fn


import argparse
import functools
import inspect
import json
import logging
import os
import sys
import tempfile
import uuid
import weakref
from pathlib import Path
from types import SimpleNamespace

from osprey.options import env_flag, generation_options, model_options
from sam_bridge.names import resolve_choice, tiny_family

REPO = Path(__file__).resolve().parent
LOG = logging.getLogger("osprey.app")
EXAMPLES = sorted(str(p) for p in (REPO / "examples").glob("*.jpg"))
MODES = ["positive", "negative", "box", "pick (everything)"]
TASK_LABELS = {
    "category": "Category",
    "short": "Short description",
    "detailed": "Detailed description",
}
VOCABULARIES = [
    ("COCO (80)", "coco"), ("LVIS (1,203)", "lvis"), ("ADE20K (150)", "ade20k"),
    ("Cityscapes (19)", "cityscapes"), ("PACO parts (531)", "paco"), ("Custom (below)", "custom"),
]  # fmt: skip
CACHE_TTL_S = 900  # files in Gradio's cache are deleted after this many seconds
IDLE_SESSION_S = 7200
# The tiny SAM is untrained: at SAM's thresholds (0.88 / 0.95) "segment everything" keeps nothing.
TINY_EVERYTHING = {"points_per_side": 8, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
UNTRAINED = (
    "**Development mode: tiny random models. The masks and answers are meaningless** (and "
    "'Segment everything' keeps every mask: its thresholds are 0 for the untrained SAM)."
)
INTRO = (
    "## Osprey — point and describe\nUpload an image, click on an object (SAM makes the mask), "
    "add it as a region, then ask for its category or a description, or chat about several "
    "regions by name (*region1*, *region2*, or the names you give them)."
)


# ---------------------------------------------------------------------------------------------
# command line and service


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(
        description="Osprey point-and-describe demo (osprey-open)",
        parents=[model_options(), generation_options()],
    )
    p.add_argument("--sam", default=env("OSPREY_SAM"), metavar="NAME",
                   help="auto (default: SAM 2.1 large on a GPU where it fits beside the LLM, SAM "
                   "2.1 tiny on a CPU), sam2.1-tiny, -small, -base-plus, -large, vit_b, vit_l, "
                   "vit_h, or the Hub id of a SAM 2 checkpoint (env OSPREY_SAM)")  # fmt: skip
    p.add_argument("--sam-model-type", default=env("SAM_MODEL_TYPE"), metavar="NAME",
                   help="the older name of --sam (env SAM_MODEL_TYPE)")  # fmt: skip
    p.add_argument("--sam-checkpoint", default=None,
                   help="SAM weights: a .pth for vit_*, a folder with config.json + "
                   "model.safetensors for SAM 2 (default: downloaded into --checkpoints)")  # fmt: skip
    p.add_argument("--compile", action="store_true",
                   help="static KV cache + torch.compile'd decode step (CUDA graphs on GPUs; "
                   "compiles at start-up; not on ZeroGPU)")  # fmt: skip
    p.add_argument("--host", default=None, help="default: $GRADIO_SERVER_NAME or 127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default: $GRADIO_SERVER_PORT or 7860")
    p.add_argument("--share", action="store_true", help="create a public gradio.live link")
    p.add_argument("--cache-ttl", type=int, default=int(env("OSPREY_CACHE_TTL", str(CACHE_TTL_S))),
                   help="seconds drawn images and exports stay in the server's cache")  # fmt: skip
    p.add_argument("--max-file-size", default=env("OSPREY_MAX_FILE_SIZE", "50mb"),
                   help="largest upload the server accepts, e.g. 50mb (env OSPREY_MAX_FILE_SIZE)")  # fmt: skip
    p.add_argument("--max-active", type=int, default=int(env("OSPREY_MAX_ACTIVE", "32")),
                   help="answers decoded together (continuous batching; env OSPREY_MAX_ACTIVE)")  # fmt: skip
    p.add_argument("--queue-size", type=int, default=int(env("OSPREY_QUEUE_SIZE", "64")),
                   help="answers waiting for a place before new ones are refused")  # fmt: skip
    p.add_argument("--no-batching", action="store_true", default=env_flag("OSPREY_NO_BATCHING"),
                   help="answer one request at a time (no continuous batching)")  # fmt: skip
    p.add_argument("--no-isolation", action="store_true", default=env_flag("OSPREY_NO_ISOLATION"),
                   help="send no cross-origin isolation headers (the page's decoder then runs on "
                        "one thread; env OSPREY_NO_ISOLATION)")  # fmt: skip
    p.set_defaults(quantize=env("OSPREY_QUANTIZE", "auto"))
    args = p.parse_args(argv)
    try:
        args.sam = resolve_choice(args.sam, args.sam_model_type)  # "auto" is decided in _fit
    except ValueError as exc:
        p.error(str(exc))
    if args.compile and args.quantize in ("8bit", "4bit"):
        p.error("--compile does not combine with --quantize (bitsandbytes layers do not compile)")
    return args


def build_service(args: argparse.Namespace):
    from osprey.options import checkpoints_dir, model_name
    from osprey.pipeline import Osprey
    from osprey.service import RegionChat
    from sam_bridge import SamBridge

    compile_ = args.compile and not _zero_gpu("--compile is ignored")
    if args.tiny:
        sam = SamBridge.tiny(family=tiny_family(args.sam))  # --tiny alone: the tiny SAM 1
        osp, extra = Osprey.tiny(), {"everything": TINY_EVERYTHING}
        extra["max_new_tokens"] = min(args.max_new_tokens, 48)
        kv_budget = 256 * 2**20
    else:
        fit = _fit(args)
        compile_ = compile_ and fit.quantize is None
        ckpt = checkpoints_dir(args)
        sam = SamBridge.from_pretrained(
            fit.sam_model_type, args.sam_checkpoint, ckpt, device=args.device,
            download=not args.offline,
        )  # fmt: skip
        osp = Osprey.from_pretrained(
            model_name(args), device=args.device, dtype=args.dtype, checkpoints_dir=ckpt,
            clip_path=args.clip, download=not args.offline, quantize=fit.quantize,
            compile=compile_,
        )  # fmt: skip
        extra = {"max_new_tokens": args.max_new_tokens}
        kv_budget = _kv_budget(fit, osp)
    if compile_ and args.tiny:
        osp.enable_static_decoding()
    if not (args.no_batching or compile_ or _zero_gpu("answers are generated per request")):
        osp.generator.enable_batching(
            max_active=args.max_active, max_waiting=args.queue_size, kv_budget=kv_budget
        )
    return RegionChat(osp, sam, **extra)


def _zero_gpu(consequence: str) -> bool:
    """On ZeroGPU Spaces the GPU is lent per request (no background thread can hold it)."""
    if os.environ.get("SPACES_ZERO_GPU"):
        print(f"ZeroGPU: {consequence} (the GPU is not held between requests)", file=sys.stderr)
        return True
    return False


def _fit(args: argparse.Namespace):
    """The LLM's form and SAM's size for this machine (osprey.hardware), printed once."""
    from osprey.devices import resolve_device
    from osprey.hardware import plan

    fit = plan(resolve_device(args.device).type, args.quantize, args.sam)
    print(fit.describe(), file=sys.stderr)
    return fit


def _kv_budget(fit, osp) -> int:
    from osprey.engine import default_kv_budget
    from osprey.hardware import kv_budget_bytes

    return kv_budget_bytes(fit, default_kv_budget(osp.model.device))


# ---------------------------------------------------------------------------------------------
# the page


def build_demo(service, cache_ttl: int = CACHE_TTL_S):
    """The page (layout, then wiring) and the API endpoints, over one RegionChat."""
    import gradio as gr

    from osprey.api import Endpoints
    from osprey.session import Session

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

    with gr.Blocks(title="Osprey: point and describe", delete_cache=cleanup) as demo:
        state = gr.State(Session(), time_to_live=IDLE_SESSION_S, delete_callback=forget)
        ui = _layout(service, state)  # the Session is deep-copied for each visitor
        _wire(ui, service, visitors)

        def on_leave(request: gr.Request):
            visitors.left(request)

        demo.unload(on_leave)
        api, lane = Endpoints(service), lanes(service)
        for name in Endpoints.NAMES:
            endpoint = guarded(GPU(getattr(api, name)))
            gr.api(endpoint, api_name=name, **lane[API_LANES.get(name, "interactive")])
    return demo


def _layout(service, state) -> SimpleNamespace:
    """Every component, in page order."""
    import gradio as gr

    from osprey.canvas import canvas
    from osprey.page import Page

    ui = SimpleNamespace(state=state, page=Page(service.masks))
    gr.Markdown(INTRO)
    if service.untrained:
        gr.Markdown(UNTRAINED, elem_id="untrained")
    with gr.Row():
        with gr.Column(scale=3):
            # type="filepath": the app decodes uploads itself (size checked from the header first)
            ui.upload = gr.Image(label="Image", type="filepath", sources=["upload", "clipboard"],
                                 height=160, elem_id="upload")  # fmt: skip
            ui.canvas = canvas(ui.page, elem_id="canvas")  # the image the user clicks on
            ui.mode = gr.Radio(MODES, value="positive", label="Click adds", elem_id="mode",
                               interactive=True)  # read by the canvas page  # fmt: skip
            with gr.Row():
                ui.add = gr.Button("Add region", variant="primary", elem_id="add")
                ui.clear_clicks = gr.Button("Clear clicks", elem_id="clear-clicks")
                ui.everything = gr.Button("Segment everything", elem_id="everything")
                ui.describe_all = gr.Button("Describe all", elem_id="describe-all")
            ui.examples = gr.Dataset(components=["image"], samples=[[p] for p in EXAMPLES],
                                     sample_labels=[Path(p).stem for p in EXAMPLES], type="index",
                                     label="Examples (click one to open it)", elem_id="examples")  # fmt: skip
            ui.status = gr.Markdown(elem_id="status")
        with gr.Column(scale=2):
            _chat_column(ui)
    return ui


def _chat_column(ui: SimpleNamespace) -> None:
    import gradio as gr

    ui.table = gr.Dataframe(headers=["region", "category", "caption", "area"], interactive=False,
                            elem_id="regions")  # fmt: skip
    ui.selected = gr.CheckboxGroup(
        label="Describe (none ticked = all)", choices=[], elem_id="selected"
    )
    with gr.Row():
        ui.tasks = {
            task: gr.Button(label, elem_id=f"ask-{task}") for task, label in TASK_LABELS.items()
        }
        ui.top5 = gr.Button("Top-5", elem_id="ask-top5")
    _vocabulary_row(ui)
    with gr.Row():
        ui.pick = gr.Dropdown(label="Region", choices=[], elem_id="pick")
        ui.new_name = gr.Textbox(label="Name", placeholder="e.g. dog", elem_id="new-name")
    with gr.Row():
        ui.rename = gr.Button("Rename", elem_id="rename")
        ui.delete = gr.Button("Delete", elem_id="delete")
        ui.undo = gr.Button("Undo", elem_id="undo")
        ui.redo = gr.Button("Redo", elem_id="redo")
        ui.clear_all = gr.Button("Clear all", elem_id="clear-all")
    ui.chat = gr.Chatbot(label="Chat", height=360, elem_id="chat")
    ui.question = gr.Textbox(placeholder="Ask about region1, region2, ... (or the whole image)",
                             show_label=False, elem_id="question")  # fmt: skip
    with gr.Row():
        ui.send = gr.Button("Send", variant="primary", elem_id="send")
        ui.stop = gr.Button("Stop", elem_id="stop")
    with gr.Row():
        ui.export_json = gr.Button("Export JSON (COCO RLE)", elem_id="export-json")
        ui.export_zip = gr.Button("Export masks (PNG zip)", elem_id="export-zip")
    ui.export_file = gr.File(label="Export", elem_id="export-file")
    ui.label_all = gr.Checkbox(label="Describe all: also label each mask with its top-1 class "
                               "of the vocabulary", elem_id="label-all")  # fmt: skip
    ui.auto_table = gr.Dataframe(headers=["mask", "category", "caption", "area", "label", "prob"],
                                 interactive=False, label="Describe all", elem_id="auto-table")  # fmt: skip


def _vocabulary_row(ui: SimpleNamespace) -> None:
    """The vocabulary picker and, after "Top-5", one bar chart (gr.Label) per region."""
    import gradio as gr

    with gr.Row():
        ui.vocab = gr.Dropdown(VOCABULARIES, value="coco", label="Vocabulary (Top-5, label all)",
                               elem_id="vocab")  # fmt: skip
        ui.custom_vocab = gr.Textbox(label="Custom classes", placeholder="dog, cat, traffic light",
                                     elem_id="custom-vocab")  # fmt: skip
    ui.tops = gr.State([])

    @gr.render(inputs=ui.tops)
    def _top_labels(tops):
        with gr.Row(elem_id="top-k"):
            for name, probs in tops:
                gr.Label(dict(probs), label=f"Top-5 of {name}", elem_classes="top-k-label")


# ---------------------------------------------------------------------------------------------
# views and handlers


def view(s, message: str = "") -> tuple:
    """What the page shows of session ``s``: the canvas (its page draws the session, see
    osprey/page.py), state, region table, region pickers (values are region indices), and a
    message for the user."""
    import gradio as gr

    rows = [[n, r.category, r.caption, r.area] for n, r in zip(s.names(), s.regions)]
    choices = [(n, i) for i, n in enumerate(s.names())]
    return (
        s, s, rows, gr.update(choices=choices, value=[]),
        gr.update(choices=choices, value=None), message,
    )  # fmt: skip


def _user_error(exc: Exception):
    """The one message a user (or API client) sees for ``exc``: the app's own words for what
    they can fix; for anything else a line with an id, and the traceback in the server's log
    under that id (never an exception's name, text or a server path)."""
    import gradio as gr

    from osprey.errors import OspreyError

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
                raise _user_error(exc) from exc

        return stream

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise _user_error(exc) from exc

    return run


def lanes(service) -> dict[str, dict]:
    """Gradio concurrency groups, so that a click never queues behind an answer: ``interactive``
    (clicks, candidates, region edits, exports: SAM's decoder, milliseconds), ``encode`` (a new
    image: SAM's encoder and the vision tower, seconds on a CPU) and ``answer`` (anything the LLM
    generates: as many at once as the batching engine takes plus its line; one without it)."""
    engine = service.osprey.generator.engine
    answers = engine.admission.max_active + engine.admission.max_waiting if engine else 1
    return {
        "interactive": {"concurrency_id": "interactive", "concurrency_limit": 4},
        "encode": {"concurrency_id": "encode", "concurrency_limit": 1},
        "answer": {"concurrency_id": "answer", "concurrency_limit": answers},
    }


API_LANES = {"segment": "encode", "describe": "answer", "describe_all": "answer",
             "session_open": "encode", "session_ask": "answer", "classify": "answer"}  # fmt: skip


def edit_handler(service, action, chat: bool = False):
    """A page handler: ``action(session, *inputs)``, then a redraw with its message (if a str),
    the session held meanwhile (one visitor's edits run one after the other, never interleaved:
    a rename and a delete at the same moment cannot meet a half-changed region list).
    ``chat``: the handler also shows the chat starting over when the regions were renumbered."""
    import gradio as gr

    def run(s, *args):
        with service.editing(s):
            revision = s.revision
            message = action(s, *args)
            shown = view(s, message if isinstance(message, str) else "")
            if not chat:
                return shown
            return (*shown, restarted_chat() if s.revision != revision else gr.skip())

    return guarded(run)


def restarted_chat(why: str = "The regions changed") -> list[dict]:
    """The chat as shown once it starts over (the model's history was cleared)."""
    return [{"role": "assistant", "content": f"({why}, so the chat starts over.)"}]


def _wire(ui: SimpleNamespace, service, visitors) -> None:
    """Connect every event to one service call and a redraw."""

    lane = {k: {**v, "api_visibility": "private"} for k, v in lanes(service).items()}
    outs = [ui.canvas, ui.state, ui.table, ui.selected, ui.pick, ui.status]
    _wire_image(ui, service, visitors, outs, lane)

    def edit(action, chat: bool = False):
        return edit_handler(service, action, chat)

    fast = lane["interactive"]
    _wire_canvas(ui, service, edit, outs, fast)
    ui.clear_clicks.click(edit(service.clear_prompt), [ui.state], outs, **fast)
    rename = edit(lambda s, i, name: service.rename(s, _index(i), name))
    ui.rename.click(rename, [ui.state, ui.pick, ui.new_name], outs, **fast)
    delete = edit(lambda s, i: service.delete(s, _index(i)), chat=True)
    ui.delete.click(delete, [ui.state, ui.pick], [*outs, ui.chat], **fast)
    for button, action in ((ui.undo, service.undo), (ui.redo, service.redo),
                           (ui.clear_all, service.clear_regions)):  # fmt: skip
        button.click(edit(action, chat=True), [ui.state], [*outs, ui.chat], **fast)
    for task, button in ui.tasks.items():
        button.click(_describe_handler(service, task), [ui.selected, ui.chat, ui.state],
                     [ui.chat, *outs], **lane["answer"])  # fmt: skip
    send = {"fn": _send_handler(service), "inputs": [ui.question, ui.chat, ui.state],
            "outputs": [ui.chat, ui.question, ui.state], **lane["answer"]}  # fmt: skip
    ui.send.click(**send)
    ui.question.submit(**send)
    ui.stop.click(
        lambda s: service.stop(s), [ui.state], None, queue=False, api_visibility="private"
    )
    _wire_labels(ui, service, outs, lane["answer"])
    ui.export_json.click(guarded(lambda s: _write("regions.json", json.dumps(service.export(s), indent=2))),
                         [ui.state], ui.export_file, **fast)  # fmt: skip
    ui.export_zip.click(guarded(lambda s: _write("regions.zip", service.export_masks_zip(s))),
                        [ui.state], ui.export_file, **fast)  # fmt: skip


def _wire_image(ui: SimpleNamespace, service, visitors, outs: list, lane: dict) -> None:
    """Opening an image (upload, example) and segment everything (clicks: the canvas page)."""
    import gradio as gr

    from osprey.errors import ServiceError
    from osprey.uploads import read_upload

    @guarded
    def on_upload(s, path, request: gr.Request):
        # Gradio's component gives the upload's path; it is read like any upload (inside the
        # upload folder, a regular file, bounded) and kept in memory, never reopened.
        data = read_upload({"path": path} if isinstance(path, str) else path, "image")
        visitors.opened(s, service.open_image(s, data), request)
        return (*view(s), restarted_chat("A new image"))

    @guarded
    def on_example(s, evt: gr.SelectData, request: gr.Request):
        index = evt.index if isinstance(evt.index, int) else -1
        if not 0 <= index < len(EXAMPLES):
            raise ServiceError("There is no such example.")
        data = Path(EXAMPLES[index]).read_bytes()  # the app's own file, chosen by index
        visitors.opened(s, service.open_image(s, data), request)
        return (*view(s), restarted_chat("A new image"))

    ui.upload.upload(on_upload, [ui.state, ui.upload], [*outs, ui.chat], **lane["encode"])
    ui.examples.select(on_example, [ui.state], [*outs, ui.chat], **lane["encode"])
    ui.everything.click(_everything_handler(service), [ui.state], outs, **lane["encode"])


def _wire_canvas(ui: SimpleNamespace, service, edit, outs: list, fast: dict) -> None:
    """The canvas page decodes clicks itself (osprey/page.py); the server replays its prompt when
    a region is added, and decodes for the page when it cannot ('decode')."""
    import gradio as gr

    def add_from_page(s, value):
        ui.page.apply(s, value)
        service.add_region(s)

    @guarded
    @GPU
    def decode(s, evt: gr.EventData):
        return ui.page.preview(s, evt._data)

    ui.add.click(edit(add_from_page), [ui.state, ui.canvas], outs, **fast)
    # Off the queue (no event stream: about half the latency); ZeroGPU needs queued GPU calls.
    lane = (
        fast if os.environ.get("SPACES_ZERO_GPU") else {"queue": False, "api_visibility": "private"}
    )
    ui.canvas.decode(decode, [ui.state], [ui.canvas], **lane)


class Visitors:
    """Which session belongs to which browser tab, so that a tab that closes frees its session at
    once (Gradio itself keeps a closed tab's state for an hour)."""

    def __init__(self, service):
        self.service = service
        self._sessions: weakref.WeakValueDictionary = weakref.WeakValueDictionary()

    def opened(self, s, _handle, request) -> None:
        if request is not None and request.session_hash:
            self._sessions[request.session_hash] = s

    def left(self, request) -> None:
        s = self._sessions.pop(request.session_hash, None) if request is not None else None
        if s is not None:
            self.service.close(s)

    def forget(self, s) -> None:
        """gr.State's delete callback (an idle session expired)."""
        self.service.close(s)

    def __len__(self) -> int:
        return len(self._sessions)


def _index(value) -> int:
    from osprey.service import ServiceError

    if value is None or value == "":
        raise ServiceError("Pick a region in the list first.")
    return int(value)


def _describe_handler(service, task: str):
    @guarded
    @GPU
    def run(selected, chat, s):
        answers = service.describe(s, task, [_index(i) for i in selected or []])
        for name, text in answers:
            chat = [*chat, {"role": "user", "content": f"{TASK_LABELS[task]} of {name}"},
                    {"role": "assistant", "content": text}]  # fmt: skip
        return (chat, *view(s))

    return run


def _send_handler(service):
    import gradio as gr

    @GPU
    def run(question, chat, s):
        chat = [*chat, {"role": "user", "content": question}, {"role": "assistant", "content": ""}]
        try:
            for reply in service.ask(s, question):
                text = reply.text or (f"(waiting for a free place: {reply.waiting} in line)"
                                      if reply.waiting else "")  # fmt: skip
                chat[-1] = {"role": "assistant", "content": text}
                yield chat, "", s
                if reply.note:
                    gr.Info(reply.note)
        except Exception as exc:
            raise _user_error(exc) from exc

    return run


def _everything_handler(service):
    @guarded
    @GPU
    def run(s):
        n = service.segment_everything(s)
        if not n:
            return view(s, "Segment everything found no mask; try a denser grid.")
        return view(s, f"{n} masks found: switch the click mode to 'pick (everything)' to choose "
                       "one, or describe all.")  # fmt: skip

    return run


def _wire_labels(ui: SimpleNamespace, service, outs: list, answer_lane: dict) -> None:
    """Top-5 over the picked vocabulary, and describe-all (optionally labelled by it): LLM work,
    in the answer lane."""
    ui.top5.click(
        _top5_handler(service), [ui.selected, ui.chat, ui.vocab, ui.custom_vocab, ui.state],
        [ui.chat, ui.tops, *outs], **answer_lane,
    )  # fmt: skip
    ui.describe_all.click(
        _describe_all_handler(service), [ui.state, ui.label_all, ui.vocab, ui.custom_vocab],
        [ui.auto_table, *outs], **answer_lane,
    )  # fmt: skip


def _vocabulary(choice: str, custom: str) -> str:
    """The picker's vocabulary: a built-in name, or the custom text."""
    return custom if choice == "custom" else choice


def _top5_handler(service):
    from osprey import topk

    @guarded
    @GPU
    def run(selected, chat, choice, custom, s):
        indices = [_index(i) for i in selected or []]
        tops = topk.classify(service.osprey, s, _vocabulary(choice, custom), indices, top_k=5)
        for name, top in tops:
            text = " · ".join(f"{n} {p:.2f}" for n, p in top)
            chat = [*chat, {"role": "user", "content": f"Top-5 of {name}"},
                    {"role": "assistant", "content": text}]  # fmt: skip
        return (chat, [(name, dict(top)) for name, top in tops], *view(s))

    return run


def _describe_all_handler(service):
    from osprey import topk

    @guarded
    @GPU
    def run(s, label, choice, custom):
        vocabulary = topk.user_vocabulary(_vocabulary(choice, custom)) if label else None
        rows = service.describe_all(s)
        if vocabulary is not None:
            rows = topk.label_all(service.osprey, s, rows, vocabulary)
        table = [[r["mask"], r["category"], r["caption"], r["area"], r.get("label", ""),
                  r.get("prob", "")] for r in rows]  # fmt: skip
        return (table, *view(s))

    return run


def _write(name: str, data: str | bytes) -> str:
    path = Path(tempfile.mkdtemp(prefix="osprey-export-")) / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


# ---------------------------------------------------------------------------------------------
# main


def check_options(args: argparse.Namespace) -> None:
    """Everything the options can get wrong, found before any download or model load: the
    model's name, the device, the dtype; offline, every missing file at once."""
    from osprey.devices import parse_dtype, resolve_device
    from osprey.errors import CheckpointNotFound
    from osprey.hub import DEFAULT_CHECKPOINTS, check_model_name, missing_downloads
    from osprey.options import checkpoints_dir, model_name
    from sam_bridge.loading import missing_files

    if args.tiny:
        return
    check_model_name(model_name(args))
    resolve_device(args.device)
    parse_dtype(args.dtype)
    if not args.offline:
        return
    ckpt = checkpoints_dir(args) or DEFAULT_CHECKPOINTS
    missing = missing_downloads(model_name(args), ckpt)
    missing += missing_files(_planned_sam(args), args.sam_checkpoint, ckpt)
    if missing:
        lines = "\n".join(f"  {what}: {fetch}" for what, fetch in missing)
        raise CheckpointNotFound(f"offline, and these weights are missing (fetch them where the "
                                 f"network is reachable):\n{lines}")  # fmt: skip


def _planned_sam(args: argparse.Namespace) -> str:
    """The SAM ``--sam`` names, ``auto`` decided as :func:`_fit` will (quietly)."""
    if args.sam != "auto":
        return args.sam
    from osprey.devices import resolve_device
    from osprey.errors import UsageError
    from osprey.hardware import plan
    from sam_bridge.names import auto_choice

    device = resolve_device(args.device).type
    try:
        return plan(device, args.quantize, "auto").sam_model_type
    except UsageError:  # nothing fits: said when the models load; the files are what we check
        return auto_choice(device)


def main(argv: list[str] | None = None) -> int:
    from osprey.memory import limit_malloc_arenas

    args = parse_args(argv)
    check_options(args)
    limit_malloc_arenas()  # freed photos go back to the system (osprey/memory.py)
    service = build_service(args)
    demo = build_demo(service, cache_ttl=args.cache_ttl)
    demo.queue(max_size=4 * args.queue_size)  # each event's lane limits how many run at once
    launch = {"share": args.share, "max_file_size": args.max_file_size}
    if args.host:
        launch["server_name"] = args.host
    if args.port:
        launch["server_port"] = args.port
    serve(demo, launch, isolate=not args.no_isolation)
    return 0


class CrossOriginIsolation:
    """ASGI middleware: every HTTP response carries ``Cross-Origin-Opener-Policy: same-origin``
    and ``Cross-Origin-Embedder-Policy: credentialless``, which make a top-level page cross-origin
    isolated, so the page's WebAssembly decoder can run on several threads (onnxruntime-web needs
    SharedArrayBuffer). ``credentialless`` still loads cross-origin resources (without their
    cookies) where ``require-corp`` would block those that do not opt in. Inside a Space's iframe
    the page cannot be isolated (huggingface.co is not) and runs one thread, as it does in a
    browser without ``credentialless`` (Safari). Pure ASGI: streamed responses pass untouched."""

    HEADERS = (
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"cross-origin-embedder-policy", b"credentialless"),
    )

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_isolated(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.HEADERS]}
            await send(message)

        return await self.app(scope, receive, send_isolated)


def serve(demo, launch: dict, attempts: int = 3, isolate: bool = True) -> None:
    """``demo.launch(**launch)`` behind :class:`~osprey.api_gate.ApiGate` (calls to the API
    checked before Gradio runs them) and, unless ``isolate`` is off, with
    :class:`CrossOriginIsolation`'s headers. Gradio gives up when its own page does not answer
    within 3 s of starting ("localhost is not accessible"), which happens on a busy small
    machine: try again rather than fail to start."""
    from starlette.middleware import Middleware

    middleware = [m for m in (_api_gate(demo),) if m is not None]
    if isolate:
        middleware.append(Middleware(CrossOriginIsolation))
    options = dict(launch)
    if middleware:
        options["app_kwargs"] = {**launch.get("app_kwargs", {}), "middleware": middleware}
    for attempt in range(attempts):
        try:
            demo.launch(**options)
            return
        except ValueError as exc:
            if "localhost is not accessible" not in str(exc) or attempt == attempts - 1:
                raise
            print("The page did not answer within Gradio's start-up check; trying again.",
                  file=sys.stderr)  # fmt: skip
            demo.close()


def _api_gate(demo):
    """The gate's middleware for ``demo``'s API endpoints (see osprey/api_gate.py); None for a
    demo without them."""
    from starlette.middleware import Middleware

    from osprey.api import Endpoints
    from osprey.api_gate import ApiGate, endpoint_params

    fns = dict(getattr(demo, "fns", {}))
    endpoints = {f.api_name: endpoint_params(f.fn) for f in fns.values()
                 if f.api_name in Endpoints.NAMES}  # fmt: skip
    if not endpoints:
        return None
    return Middleware(ApiGate, endpoints=endpoints,
                      fn_names=lambda index: getattr(fns.get(index), "api_name", None))  # fmt: skip


if __name__ == "__main__":
    from osprey.options import run

    sys.exit(run(main))
