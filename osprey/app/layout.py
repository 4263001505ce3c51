"""The page's layout: every component of the demo, in page order, and the words on it. The
components are wired to the service in :mod:`osprey.app.wiring`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

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


UNTRAINED = (
    "**Development mode: tiny random models. The masks and answers are meaningless** (and "
    "'Segment everything' keeps every mask: its thresholds are 0 for the untrained SAM)."
)


INTRO = (
    "## Osprey — point and describe\nUpload an image, click on an object (SAM makes the mask), "
    "add it as a region, then ask for its category or a description, or chat about several "
    "regions by name (*region1*, *region2*, or the names you give them)."
)


def build_layout(service, state, examples: Sequence[str] = ()) -> SimpleNamespace:
    """Every component, in page order (``examples``: photo files offered under the image)."""
    import gradio as gr

    from osprey.app.canvas_component import canvas
    from osprey.app.canvas_page import Page

    ui = SimpleNamespace(state=state, page=Page(service.masks), example_paths=list(examples))
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
            ui.examples = gr.Dataset(components=["image"], samples=[[p] for p in examples],
                                     sample_labels=[Path(p).stem for p in examples], type="index",
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


def default_examples() -> list[str]:
    """The photos of a checkout's ``examples/`` (none when the package runs from a wheel)."""
    folder = Path(__file__).resolve().parents[2] / "examples"
    return sorted(str(p) for p in folder.glob("*.jpg"))
