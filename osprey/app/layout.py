"""The page's layout: every component of the demo, in page order, and the words on it. The
components are wired to the service in :mod:`osprey.app.wiring`.

One canvas with its tools on the left (the image is the drop, paste and click target; the
examples are thumbnails under it), and the conversation on the right: the regions as chips, the
chat, the quick actions at the chat input; "segment everything" with its vocabulary and table,
and the export, each in one collapsed panel. On a phone the two sides stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

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


INTRO = "# Osprey: point and describe\nClick an object in a photo, then ask what it is."

CHAT_HINT = (
    "**Ask about what you see.** Open a photo (or an example), click an object, then press "
    "*Category*, a description, *Top-5*, or type a question. Name regions in their chips and "
    "use the names in questions."
)

STATIC = Path(__file__).resolve().parent / "static"


def look() -> dict:
    """The page's theme and style sheet, for ``launch`` (Gradio 6 takes them there): one
    theme, light and dark, with local fonts only (the page loads nothing from elsewhere)."""
    import gradio as gr

    theme = gr.themes.Soft(
        primary_hue="indigo", neutral_hue="slate",
        font=["system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Consolas", "monospace"],
    ).set(  # text at WCAG AA contrast (4.5:1) in both modes
        body_text_color_subdued="*neutral_600", body_text_color_subdued_dark="*neutral_300",
        button_primary_background_fill="*primary_600", button_primary_background_fill_dark="*primary_600",
        button_primary_background_fill_hover="*primary_700",
        button_primary_background_fill_hover_dark="*primary_700",
        block_label_text_color="*primary_700",
    )  # fmt: skip
    return {"theme": theme, "css": (STATIC / "page.css").read_text()}


def build_layout(service, state, examples: Sequence[str] = ()) -> SimpleNamespace:
    """Every component, in page order (``examples``: photo files offered beside the image)."""
    import gradio as gr

    from osprey.app.canvas_component import canvas
    from osprey.app.canvas_page import Page
    from osprey.app.chips_component import chips

    ui = SimpleNamespace(state=state, page=Page(service.masks), example_paths=list(examples))
    ui.asking = gr.State([])  # the regions a quick action is about, between its steps
    gr.Markdown(INTRO, elem_id="intro")
    if service.untrained:
        gr.Markdown(UNTRAINED, elem_id="untrained")
    with gr.Row(elem_id="workspace", equal_height=False):
        with gr.Column(scale=3, min_width=340, elem_id="image-side"):
            ui.canvas = canvas(ui.page, examples, elem_id="canvas")
        with gr.Column(scale=2, min_width=300, elem_id="chat-side"):
            ui.chips = chips(elem_id="regions")
            ui.chat = gr.Chatbot(label="Conversation", elem_id="chat", placeholder=CHAT_HINT,
                                 height="var(--osprey-chat-height)", buttons=["copy"])  # fmt: skip
            _ask(ui)
            _everything_panel(ui)
            with gr.Accordion("Export", open=False, elem_id="export-panel"):
                with gr.Row():
                    ui.export_json = gr.Button(
                        "Export JSON (COCO RLE)", size="sm", elem_id="export-json"
                    )
                    ui.export_zip = gr.Button(
                        "Export masks (PNG zip)", size="sm", elem_id="export-zip"
                    )
                ui.export_file = gr.File(label="Exported file", elem_id="export-file")
    return ui


def _ask(ui: SimpleNamespace) -> None:
    """The chat input with the quick actions above it (Send turns into Stop while an answer
    streams)."""
    import gradio as gr

    with gr.Column(elem_id="ask", variant="compact"):
        with gr.Row(elem_id="quick"):
            ui.tasks = {
                task: gr.Button(label, size="sm", elem_id=f"ask-{task}", min_width=60)
                for task, label in TASK_LABELS.items()
            }
            ui.top5 = gr.Button("Top-5", size="sm", elem_id="ask-top5", min_width=60)
        ui.question = gr.Textbox(
            label="Your question", show_label=False, elem_id="question", lines=1, max_lines=5,
            placeholder="Ask about region1, your names for regions, or the photo",
            submit_btn="Send", stop_btn=False,
        )  # fmt: skip


def _everything_panel(ui: SimpleNamespace) -> None:
    """Segment everything, describe (and label) all, the vocabulary of Top-5 and of the labels,
    and the table of every mask."""
    import gradio as gr

    with gr.Accordion("Segment everything, describe all, vocabulary", open=False,
                      elem_id="everything-panel"):  # fmt: skip
        with gr.Row():
            ui.everything = gr.Button("Segment everything", size="sm", elem_id="everything")
            ui.describe_all = gr.Button("Describe all", size="sm", elem_id="describe-all")
        ui.label_all = gr.Checkbox(label="Describe all: also label each mask with its top-1 class "
                                   "of the vocabulary", elem_id="label-all")  # fmt: skip
        with gr.Row():
            ui.vocab = gr.Dropdown(VOCABULARIES, value="coco", label="Vocabulary (Top-5, labels)",
                                   elem_id="vocab")  # fmt: skip
            ui.custom_vocab = gr.Textbox(label="Custom classes", placeholder="dog, cat, traffic light",
                                         elem_id="custom-vocab")  # fmt: skip
        ui.auto_table = gr.Dataframe(headers=["mask", "category", "caption", "area", "label", "prob"],
                                     interactive=False, label="Describe all", elem_id="auto-table")  # fmt: skip


def default_examples() -> list[str]:
    """The photos of a checkout's ``examples/`` (none when the package runs from a wheel)."""
    folder = Path(__file__).resolve().parents[2] / "examples"
    return sorted(str(p) for p in folder.glob("*.jpg"))
