"""osprey-open: point-and-describe demo. `python app.py --help` for the options.

A thin Gradio UI over osprey.service.RegionChat: layout, event wiring and drawing calls only.
Hugging Face Spaces (CPU, GPU and ZeroGPU) run this file as it is.
"""

try:  # ZeroGPU: `spaces` must be imported before torch; elsewhere @spaces.GPU is a no-op.
    import spaces

    GPU = spaces.GPU(duration=120)
except ImportError:  # pragma: no cover - spaces is in requirements.txt

    def GPU(fn):
        return fn


import argparse
import functools
import json
import os
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent
EXAMPLES = sorted(str(p) for p in (REPO / "examples").glob("*.jpg"))
MODES = ["positive", "negative", "box", "pick (everything)"]
UNTRAINED = "**Development mode: tiny random models. The masks and answers are meaningless.**"


# ---------------------------------------------------------------------------------------------
# command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description="Osprey point-and-describe demo (osprey-open)")
    p.add_argument(
        "--model",
        default=env("OSPREY_MODEL", "osprey-7b"),
        help="registry name (osprey-7b, osprey-chat-7b, ...) or checkpoint directory",
    )
    p.add_argument(
        "--sam-model-type",
        default=env("SAM_MODEL_TYPE", "vit_b"),
        choices=["vit_b", "vit_l", "vit_h"],
    )
    p.add_argument(
        "--sam-checkpoint",
        default=None,
        help="a SAM .pth file (default: downloaded into --checkpoints)",
    )
    p.add_argument(
        "--checkpoints",
        default=env("OSPREY_CHECKPOINTS"),
        help="weights directory (default: the repo's checkpoints/)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--dtype", default="auto", help="auto, bf16, fp16, fp32")
    p.add_argument(
        "--quantize",
        choices=["8bit", "4bit"],
        default=None,
        help="8-bit / 4-bit LLM weights (bitsandbytes) for small GPUs",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="static KV cache + torch.compile'd decode step (CUDA graphs on GPUs; compiles at "
        "start-up; not on ZeroGPU)",
    )
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--host", default=None, help="default: $GRADIO_SERVER_NAME or 127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default: $GRADIO_SERVER_PORT or 7860")
    p.add_argument("--share", action="store_true", help="create a public gradio.live link")
    p.add_argument(
        "--concurrency", type=int, default=1, help="requests running on the models at once"
    )
    p.add_argument(
        "--queue-size", type=int, default=64, help="waiting requests before new ones are refused"
    )
    p.add_argument(
        "--offline",
        action="store_true",
        help="never download; stop with instructions if weights are missing",
    )
    p.add_argument(
        "--tiny",
        action="store_true",
        help="tiny random models for development without downloads (meaningless answers)",
    )
    args = p.parse_args(argv)
    if args.compile and args.quantize:
        p.error("--compile does not combine with --quantize (bitsandbytes layers do not compile)")
    return args


def build_service(args: argparse.Namespace):
    from osprey.pipeline import Osprey
    from osprey.service import RegionChat
    from sam_bridge import SamBridge

    if args.tiny:
        osp = Osprey.tiny()
        if args.compile:
            osp.enable_static_decoding()
        return RegionChat(osp, SamBridge.tiny(), max_new_tokens=min(args.max_new_tokens, 48))
    ckpt = Path(args.checkpoints) if args.checkpoints else None
    sam = SamBridge.from_pretrained(
        args.sam_model_type,
        args.sam_checkpoint,
        ckpt,
        device=args.device,
        download=not args.offline,
    )
    compile_ = args.compile
    if compile_ and os.environ.get("SPACES_ZERO_GPU"):
        print(
            "--compile ignored on ZeroGPU (the GPU is not held between requests)", file=sys.stderr
        )
        compile_ = False
    osp = Osprey.from_pretrained(
        args.model,
        device=args.device,
        dtype=args.dtype,
        checkpoints_dir=ckpt,
        download=not args.offline,
        quantize=args.quantize,
        compile=compile_,
    )
    return RegionChat(osp, sam, max_new_tokens=args.max_new_tokens)


# ---------------------------------------------------------------------------------------------
# UI


def build_demo(service):
    """The page: one function on purpose, so the layout and its event wiring read together
    (each handler is a few lines over one RegionChat call)."""
    import gradio as gr

    from osprey.service import ServiceError, Session

    stops: dict[str, threading.Event] = {}

    def fail(exc: Exception):
        if isinstance(exc, ServiceError):
            return gr.Error(str(exc), print_exception=False)
        if type(exc).__name__ == "OutOfMemoryError":
            import torch

            torch.cuda.empty_cache()
            return gr.Error(
                "The GPU ran out of memory for this request; try fewer regions or a smaller image."
            )
        return gr.Error(f"Something went wrong: {type(exc).__name__}: {exc}")

    def views(s: Session):
        rows = [[n, r.category, r.caption, r.area] for n, r in zip(s.names(), s.regions)]
        cands = []
        if s.prediction is not None and s.image is not None and len(s.prediction.candidates) > 1:
            cands = [
                (service_overlay(s.image, c.mask), f"{c.score:.2f}")
                for c in s.prediction.candidates
            ]
        choices = s.names()
        return (
            service.render(s), s, rows, gr.update(choices=choices, value=[]), gr.update(choices=choices, value=None),
            cands, s.notice,
        )  # fmt: skip

    def service_overlay(image, mask):
        from osprey import viz

        return viz.contour(viz.blend(image, mask, (255, 215, 0), 0.5), mask, (255, 255, 255))

    def guarded(fn):
        @functools.wraps(fn)  # keeps the signature: gradio injects SelectData / Request by it
        def run(*args):
            try:
                return fn(*args)
            except Exception as exc:
                raise fail(exc) from exc

        return run

    # -- handlers (thin: one service call, then redraw) ----------------------------------------
    @guarded
    def on_upload(image, s):
        service.open_image(s, image)
        return views(s)

    @guarded
    @GPU
    def on_click(mode, s, evt: gr.SelectData):
        x, y = evt.index
        s.notice = ""
        if mode.startswith("pick"):
            service.pick_auto(s, x, y)
        else:
            service.click(s, x, y, mode)
        return views(s)

    @guarded
    def on_candidate(s, evt: gr.SelectData):
        service.choose_candidate(s, evt.index)
        return views(s)

    def edit(action):
        @guarded
        def run(s, *args):
            action(s, *args)
            return views(s)

        return run

    def index_of(name):
        if not name:
            raise ServiceError("Pick a region in the list first.")
        return int(name.split()[0].removeprefix("region")) - 1

    @guarded
    @GPU
    def on_describe(task, selected, chat, s):
        answers = service.describe(s, task, [index_of(n) for n in selected or []])
        label = {
            "category": "Category",
            "short": "Short description",
            "detailed": "Detailed description",
        }[task]
        for name, text in answers:
            chat = [
                *chat,
                {"role": "user", "content": f"{label} of {name}"},
                {"role": "assistant", "content": text},
            ]
        return (chat, *views(s))

    @GPU
    def on_send(question, chat, s, request: gr.Request):
        stop = stops.setdefault(request.session_hash if request else "-", threading.Event())
        stop.clear()
        s.notice = ""
        chat = [*chat, {"role": "user", "content": question}, {"role": "assistant", "content": ""}]
        try:
            for text in service.ask(s, question, stop):
                chat[-1] = {"role": "assistant", "content": text}
                yield chat, "", s
        except Exception as exc:
            raise fail(exc) from exc
        if s.notice:
            gr.Info(s.notice)

    def on_stop(request: gr.Request):
        stops.setdefault(request.session_hash if request else "-", threading.Event()).set()

    @guarded
    @GPU
    def on_everything(s):
        n = service.segment_everything(s)
        s.notice = f"{n} masks found: switch the click mode to 'pick (everything)' to choose one, or describe all."
        return views(s)

    @guarded
    @GPU
    def on_describe_all(s):
        rows = service.describe_all(s)
        table = [[r["mask"], r["category"], r["caption"], r["area"]] for r in rows]
        return (table, *views(s))

    @guarded
    def on_export_json(s):
        path = Path(tempfile.mkdtemp(prefix="osprey-export-")) / "regions.json"
        path.write_text(json.dumps(service.export(s), indent=2))
        return str(path)

    @guarded
    def on_export_zip(s):
        path = Path(tempfile.mkdtemp(prefix="osprey-export-")) / "regions.zip"
        path.write_bytes(service.export_masks_zip(s))
        return str(path)

    # -- API endpoints (plain inputs; they share the service with the UI) -----------------------
    @guarded
    @GPU
    def api_segment(image, points: str, labels: str, box: str):
        s = Session()
        service.open_image(s, image)
        service.prompt(
            s,
            json.loads(points or "[]"),
            json.loads(labels or "[]") or None,
            json.loads(box or "null"),
        )
        best = s.prediction.candidates[0]
        info = {
            "score": best.score,
            "area": int(best.mask.sum()),
            "box": list(best.box) if best.box else None,
        }
        return best.mask.astype("uint8") * 255, info

    @guarded
    @GPU
    def api_describe(image, mask_files, task: str, question: str):
        from sam_bridge.masks import load_mask_png

        s = Session()
        service.open_image(s, image)
        for f in mask_files or []:
            service.add_mask(s, load_mask_png(getattr(f, "name", f)))
        if question:
            return "".join(list(service.ask(s, question))[-1:])
        return json.dumps([text for _, text in service.describe(s, task or "short")])

    @guarded
    @GPU
    def api_describe_all(
        image, points_per_side: float, pred_iou_thresh: float, stability_score_thresh: float
    ):
        s = Session()
        service.open_image(s, image)
        service.segment_everything(
            s,
            int(points_per_side or 16),
            pred_iou_thresh=float(pred_iou_thresh),
            stability_score_thresh=float(stability_score_thresh),
        )
        return service.describe_all(s) if s.auto else []

    @GPU
    def session_click(x, y, mode, s):
        service.click(s, float(x), float(y), mode or "positive")
        from sam_bridge.masks import encode_rle

        return {"rle": encode_rle(service.current_mask(s)), "points": len(s.points)}, s

    @GPU
    def session_ask(question, s):
        return list(service.ask(s, question))[-1], s

    # -- layout --------------------------------------------------------------------------------
    with gr.Blocks(title="Osprey: point and describe") as demo:
        state = gr.State(Session())
        gr.Markdown(
            "## Osprey — point and describe\nUpload an image, click on an object (SAM makes the mask), "
            "add it as a region, then ask for its category or a description, or chat about several "
            "regions by name (*region1*, *region2*, or the names you give them)."
        )
        if service.untrained:
            gr.Markdown(UNTRAINED, elem_id="untrained")
        with gr.Row():
            with gr.Column(scale=3):
                canvas = gr.Image(
                    label="Image (click to segment)",
                    type="numpy",
                    sources=["upload", "clipboard"],
                    elem_id="canvas",
                )
                mode = gr.Radio(MODES, value="positive", label="Click adds", elem_id="mode")
                with gr.Row():
                    add_btn = gr.Button("Add region", variant="primary", elem_id="add")
                    clear_pts = gr.Button("Clear clicks", elem_id="clear-clicks")
                    everything_btn = gr.Button("Segment everything", elem_id="everything")
                    describe_all_btn = gr.Button("Describe all", elem_id="describe-all")
                candidates = gr.Gallery(
                    label="SAM candidates (click one: part vs whole)",
                    columns=3,
                    height=160,
                    allow_preview=False,
                    elem_id="candidates",
                )
                gr.Examples(EXAMPLES, inputs=canvas, label="Examples")
                status = gr.Markdown(elem_id="status")
            with gr.Column(scale=2):
                table = gr.Dataframe(
                    headers=["region", "category", "caption", "area"],
                    interactive=False,
                    elem_id="regions",
                )
                selected = gr.CheckboxGroup(
                    label="Describe (none ticked = all)", choices=[], elem_id="selected"
                )
                with gr.Row():
                    cat_btn = gr.Button("Category", elem_id="ask-category")
                    short_btn = gr.Button("Short description", elem_id="ask-short")
                    detail_btn = gr.Button("Detailed description", elem_id="ask-detailed")
                with gr.Row():
                    pick = gr.Dropdown(label="Region", choices=[], elem_id="pick")
                    new_name = gr.Textbox(label="Name", placeholder="e.g. dog", elem_id="new-name")
                with gr.Row():
                    rename_btn = gr.Button("Rename", elem_id="rename")
                    delete_btn = gr.Button("Delete", elem_id="delete")
                    undo_btn = gr.Button("Undo", elem_id="undo")
                    redo_btn = gr.Button("Redo", elem_id="redo")
                    clear_btn = gr.Button("Clear all", elem_id="clear-all")
                chat = gr.Chatbot(label="Chat", height=360, elem_id="chat")
                question = gr.Textbox(
                    placeholder="Ask about region1, region2, ... (or the whole image)",
                    show_label=False,
                    elem_id="question",
                )
                with gr.Row():
                    send_btn = gr.Button("Send", variant="primary", elem_id="send")
                    stop_btn = gr.Button("Stop", elem_id="stop")
                with gr.Row():
                    export_json = gr.Button("Export JSON (COCO RLE)", elem_id="export-json")
                    export_zip = gr.Button("Export masks (PNG zip)", elem_id="export-zip")
                export_file = gr.File(label="Export", elem_id="export-file")
                auto_table = gr.Dataframe(
                    headers=["mask", "category", "caption", "area"],
                    interactive=False,
                    label="Describe all",
                    elem_id="auto-table",
                )
        with gr.Row(visible=False):
            a_image = gr.Image(type="numpy")
            a_points, a_labels, a_box, a_task, a_question = (gr.Textbox() for _ in range(5))
            a_files = gr.File(file_count="multiple")
            a_pps, a_iou, a_stab = gr.Number(value=16), gr.Number(value=0.88), gr.Number(value=0.95)
            a_mask = gr.Image(type="numpy", format="png")
            a_info, a_rows = gr.JSON(), gr.JSON()
            a_text = gr.Textbox()
            a_btn = [gr.Button() for _ in range(3)]

        outs = [canvas, state, table, selected, pick, candidates, status]
        canvas.upload(on_upload, [canvas, state], outs, api_visibility="private")
        canvas.select(on_click, [mode, state], outs, api_visibility="private")
        candidates.select(on_candidate, [state], outs, api_visibility="private")
        add_btn.click(
            edit(lambda s: service.add_region(s)), [state], outs, api_visibility="private"
        )
        clear_pts.click(edit(service.clear_prompt), [state], outs, api_visibility="private")
        rename_btn.click(
            edit(lambda s, n, name: service.rename(s, index_of(n), name)),
            [state, pick, new_name],
            outs,
            api_visibility="private",
        )
        delete_btn.click(
            edit(lambda s, n: service.delete(s, index_of(n))),
            [state, pick],
            outs,
            api_visibility="private",
        )
        undo_btn.click(edit(service.undo), [state], outs, api_visibility="private")
        redo_btn.click(edit(service.redo), [state], outs, api_visibility="private")
        clear_btn.click(edit(service.clear_regions), [state], outs, api_visibility="private")
        for btn, task in ((cat_btn, "category"), (short_btn, "short"), (detail_btn, "detailed")):
            btn.click(
                lambda sel, c, s, t=task: on_describe(t, sel, c, s),
                [selected, chat, state],
                [chat, *outs],
                api_visibility="private",
            )
        send = {
            "fn": on_send,
            "inputs": [question, chat, state],
            "outputs": [chat, question, state],
            "api_visibility": "private",
        }
        send_btn.click(**send)
        question.submit(**send)
        stop_btn.click(on_stop, None, None, api_visibility="private", queue=False)
        everything_btn.click(on_everything, [state], outs, api_visibility="private")
        describe_all_btn.click(
            on_describe_all, [state], [auto_table, *outs], api_visibility="private"
        )
        export_json.click(on_export_json, [state], export_file, api_visibility="private")
        export_zip.click(on_export_zip, [state], export_file, api_visibility="private")
        a_btn[0].click(
            api_segment, [a_image, a_points, a_labels, a_box], [a_mask, a_info], api_name="segment"
        )
        a_btn[1].click(
            api_describe, [a_image, a_files, a_task, a_question], a_text, api_name="describe"
        )
        a_btn[2].click(
            api_describe_all, [a_image, a_pps, a_iou, a_stab], a_rows, api_name="describe_all"
        )
        # Per-session steps for scripted clients (the load test): the same service calls as the
        # UI, on the caller's own gr.State; undocumented because SelectData cannot be sent.
        steps = [gr.Button() for _ in range(5)]
        hidden = dict(api_visibility="undocumented")
        steps[0].click(
            guarded(lambda img, s: (service.open_image(s, img), s)[1]),
            [a_image, state],
            state,
            api_name="session_open",
            **hidden,
        )
        steps[1].click(
            guarded(session_click),
            [a_pps, a_iou, a_task, state],
            [a_info, state],
            api_name="session_click",
            **hidden,
        )
        steps[2].click(
            guarded(lambda s: (service.add_region(s), s.names(), s)[1:]),
            [state],
            [a_rows, state],
            api_name="session_add",
            **hidden,
        )
        steps[3].click(
            guarded(session_ask),
            [a_question, state],
            [a_text, state],
            api_name="session_ask",
            **hidden,
        )
        steps[4].click(
            guarded(lambda s: service.export(s)),
            [state],
            a_rows,
            api_name="session_export",
            **hidden,
        )
    return demo


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from osprey.hub import CheckpointNotFound
    from sam_bridge.errors import CheckpointError

    try:
        service = build_service(args)
    except (CheckpointNotFound, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    demo = build_demo(service)
    demo.queue(default_concurrency_limit=args.concurrency, max_size=args.queue_size)
    launch = {"share": args.share}
    if args.host:
        launch["server_name"] = args.host
    if args.port:
        launch["server_port"] = args.port
    demo.launch(**launch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
