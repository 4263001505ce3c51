"""The Gradio app: builds without launching, --help is instant, Spaces front matter, and the
named API endpoints through gradio_client against an in-process server (tiny models)."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from osprey.app.demo import build_demo
from osprey.app.main import parse_args
from osprey.app.serving import serve
from osprey.app.startup import build_service
from tests.support.servers import serving

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(tiny_service):
    with serving(build_demo(tiny_service), max_size=32) as url:
        yield url


def test_help_lists_the_options():
    """(How long --help takes is measured by benchmarks/startup_bench.py, not asserted here.)"""
    out = subprocess.run(
        [sys.executable, "app.py", "--help"], cwd=REPO, capture_output=True, text=True, check=True
    )
    for flag in (
        "--model",
        "--sam-model-type",
        "--sam-checkpoint",
        "--device",
        "--dtype",
        "--max-new-tokens",
        "--host",
        "--port",
        "--share",
        "--max-active",
        "--queue-size",
        "--no-batching",
        "--offline",
        "--tiny",
        "--quantize",
    ):
        assert flag in out.stdout, flag


def test_offline_without_weights_stops_with_one_clear_message(tmp_path):
    out = subprocess.run(
        [sys.executable, "app.py", "--offline", "--checkpoints", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert "error:" in out.stderr and "download" in out.stderr and "Traceback" not in out.stderr
    # every missing file in the one message: the Osprey model and SAM (auto on a CPU: SAM 2.1 tiny)
    assert "osprey-7b" in out.stderr and "sam2.1-hiera-tiny" in out.stderr
    assert "python -m sam_bridge download --sam sam2.1-tiny" in out.stderr


def test_spaces_front_matter_matches_the_pins():
    readme = (REPO / "README.md").read_text()
    front = readme.split("---")[1]
    pins = dict(re.findall(r"^([\w-]+)==([\w.]+)", (REPO / "requirements.txt").read_text(), re.M))
    assert re.search(r"^sdk: gradio$", front, re.M)
    assert re.search(rf"^sdk_version: {re.escape(pins['gradio'])}$", front, re.M)
    assert re.search(r"^app_file: app.py$", front, re.M)
    assert re.search(r"^python_version: \"?3\.11\"?$", front, re.M)


def test_api_segment_describe_describe_all(server, tmp_path, voc):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    assert {"/segment", "/describe", "/describe_all"} <= set(
        client.view_api(return_format="dict")["named_endpoints"]
    )
    img = tmp_path / "voc.png"
    Image.fromarray(voc["rgb"]).save(img)
    mask_path, info = client.predict(
        handle_file(str(img)), "[[250, 200]]", "[1]", "", api_name="/segment"
    )
    mask = np.asarray(Image.open(mask_path)) > 0
    assert mask.shape == (375, 500) and info["area"] == int(mask.sum()) > 0
    Image.fromarray(voc["masks"][0].astype(np.uint8) * 255).save(tmp_path / "m0.png")
    Image.fromarray(voc["masks"][1].astype(np.uint8) * 255).save(tmp_path / "m1.png")
    files = [handle_file(str(tmp_path / "m0.png")), handle_file(str(tmp_path / "m1.png"))]
    answers = client.predict(handle_file(str(img)), files, "category", "", api_name="/describe")
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    chat = client.predict(
        handle_file(str(img)), files, "", "How is region1 related to region2?", api_name="/describe"
    )
    assert isinstance(chat, str) and chat
    rows = client.predict(handle_file(str(img)), 4, 0.0, 0.0, api_name="/describe_all")
    assert rows and {"mask", "category", "caption", "area", "box"} <= set(rows[0])


def test_api_errors_reach_the_client_and_the_server_keeps_serving(server, tmp_path, voc):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(server, verbose=False)
    img = tmp_path / "voc.png"
    Image.fromarray(voc["rgb"]).save(img)
    with pytest.raises(AppError, match="outside"):
        client.predict(handle_file(str(img)), "[[9000, 1]]", "[1]", "", api_name="/segment")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(AppError):
        client.predict(handle_file(str(bad)), "[[1, 1]]", "[1]", "", api_name="/segment")
    _, info = client.predict(handle_file(str(img)), "[[250, 200]]", "[1]", "", api_name="/segment")
    assert info["area"] > 0


@pytest.mark.parametrize(
    "argv, zero_gpu, expected",
    [
        (["--quantize", "4bit"], None, {"quantize": "4bit", "compile": False}),
        (["--compile"], None, {"quantize": None, "compile": True}),
        ([], None, {"quantize": None, "compile": False}),
        (["--compile"], "true", {"quantize": None, "compile": False}),  # ZeroGPU: no compile
    ],
)
def test_model_options_reach_the_loaders(monkeypatch, argv, zero_gpu, expected):
    from osprey.inference.facade import Osprey
    from sam_bridge import SamBridge

    seen = {}
    monkeypatch.setattr(SamBridge, "from_pretrained", classmethod(lambda cls, *a, **k: cls.tiny()))

    def load(cls, name, **kwargs):
        seen.update(kwargs, name=name)
        return Osprey.tiny()

    monkeypatch.setattr(Osprey, "from_pretrained", classmethod(load))
    monkeypatch.setattr(
        "osprey.inference.hardware_fit.available_gib", lambda device: 64.0
    )  # a roomy machine
    if zero_gpu:
        monkeypatch.setenv("SPACES_ZERO_GPU", zero_gpu)
    else:
        monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    service = build_service(parse_args(["--model", "osprey-7b", "--dtype", "bf16", *argv]))
    assert seen["name"] == "osprey-7b" and seen["dtype"] == "bf16"
    assert {k: seen[k] for k in expected} == expected
    # batching runs unless the static decoder or ZeroGPU rule it out
    engine = service.osprey.generator.engine
    assert (engine is None) == bool(expected["compile"] or zero_gpu)
    service.osprey.generator.disable_batching()


@pytest.mark.parametrize(
    "free_gib, device, form, sam",
    [
        (24.0, "cpu", None, "sam2.1-tiny"),  # this development machine: bf16
        (15.5, "cpu", "8bit", "sam2.1-tiny"),  # Spaces CPU basic (16 GB)
        (11.5, "cpu", "4bit", "sam2.1-tiny"),
        (15.0, "cuda", "8bit", "sam2.1-large"),  # a T4
        (16.4, "cuda", None, "sam2.1-base-plus"),  # bf16 fits, the large SAM beside it does not
        (79.0, "cuda", None, "sam2.1-large"),  # an A100 80 GB
    ],
)
def test_the_app_picks_what_fits(free_gib, device, form, sam):
    from osprey.inference.hardware_fit import plan

    fit = plan(device, "auto", "auto", available=free_gib)
    assert (fit.quantize, fit.sam_model_type) == (form, sam) and fit.peak_gib < free_gib


def test_a_fixed_sam_is_kept_and_checked():
    from osprey.inference.hardware_fit import plan

    assert plan("cuda", "auto", "vit_h", available=79.0).sam_model_type == "vit_h"
    assert plan("cpu", "auto", "vit_b", available=24.0).sam_model_type == "vit_b"
    hub = plan("cuda", "auto", "someone/sam2-finetune", available=18.0)  # counted as ViT-H
    assert (hub.quantize, hub.sam_model_type) == ("8bit", "someone/sam2-finetune")


def test_sam_options_resolve_once_and_unknown_ones_are_usage_errors(capsys, monkeypatch):
    monkeypatch.delenv("OSPREY_SAM", raising=False)
    monkeypatch.delenv("SAM_MODEL_TYPE", raising=False)
    assert parse_args([]).sam == "auto"
    assert parse_args(["--sam", "sam2.1-small"]).sam == "sam2.1-small"
    assert parse_args(["--sam-model-type", "vit_l"]).sam == "vit_l"
    monkeypatch.setenv("OSPREY_SAM", "sam2.1-base-plus")
    assert parse_args([]).sam == "sam2.1-base-plus"
    for bad in (["--sam", "sam3"], ["--sam", "vit_b", "--sam-model-type", "vit_h"]):
        with pytest.raises(SystemExit) as info:
            parse_args(bad)
        assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown SAM 'sam3'" in err and "disagree" in err


def test_nothing_fits_is_one_clear_line():
    from osprey.core.errors import UsageError
    from osprey.inference.hardware_fit import plan

    with pytest.raises(UsageError, match=r"does not fit here: 6\.0 GiB free on cpu"):
        plan("cpu", "auto", "vit_b", available=6.0)


def test_compile_and_quantize_are_refused_together(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--compile", "--quantize", "8bit"])
    assert "--compile does not combine with --quantize" in capsys.readouterr().err


class _FlakyDemo:
    """A Blocks stand-in whose launch fails Gradio's start-up check ``fails`` times."""

    def __init__(self, fails: int, message: str = "When localhost is not accessible, ..."):
        self.fails, self.message, self.launches, self.closes = fails, message, [], 0

    def launch(self, **kwargs):
        self.launches.append(kwargs)
        if len(self.launches) <= self.fails:
            raise ValueError(self.message)

    def close(self):
        self.closes += 1


def test_a_missed_start_up_check_is_tried_again(capsys):
    demo = _FlakyDemo(fails=2)
    serving = serve(demo, {"server_port": 7861}, isolate=False)
    # serve returns once the server runs (the caller blocks and drains: wait_and_drain)
    assert [d["server_port"] for d in demo.launches] == [7861] * 3 and demo.closes == 2
    assert all(d["prevent_thread_lock"] for d in demo.launches)
    assert "theme" in demo.launches[0] and "css" in demo.launches[0]  # the page's look
    serving.janitor.stop()
    assert "trying again" in capsys.readouterr().err
    with pytest.raises(ValueError, match="localhost"):
        serve(_FlakyDemo(fails=3), {})
    other = _FlakyDemo(fails=1, message="port 7861 is taken")
    with pytest.raises(ValueError, match="taken"):  # other errors are not retried
        serve(other, {})
    assert len(other.launches) == 1


def test_serving_the_page_config_copies_no_model(tiny_service, monkeypatch):
    """Gradio deep-copies the page's config for every page load and API client (``/config``). It
    must hold nothing that leads to the model: a bound method of the service there (the session
    state's delete callback once was one) made every visitor copy every weight, or, for the 7B,
    try to allocate its 14 GB again."""
    import copy

    import torch
    from gradio.utils import safe_deepcopy

    copied = []
    original = torch.nn.Parameter.__deepcopy__

    def counting(self, memo):
        copied.append(self.shape)
        return original(self, memo)

    monkeypatch.setattr(torch.nn.Parameter, "__deepcopy__", counting)
    config = build_demo(tiny_service).config
    safe_deepcopy(config)  # what the /config route does
    assert copied == []
    copy.deepcopy(config)  # and plain deepcopy does not fail (no lock, no thread inside)


def test_a_space_isolates_the_page_through_its_front_matter(monkeypatch):
    """On a Space the platform adds the README's ``custom_headers`` (Spaces' config reference:
    COEP, COOP and CORP, names and values lowercase) to every response, so the page is
    cross-origin isolated there too; the app then sends none of its own (two different COEP
    values would cancel each other)."""
    import urllib.request

    import gradio as gr

    front = (REPO / "README.md").read_text().split("---")[1]
    block = re.search(r"^custom_headers:\n((?:  .+\n)+)", front, re.M)
    assert block, "custom_headers in the README's front matter"
    headers = dict(re.findall(r"^  ([\w-]+): (.+)$", block.group(1), re.M))
    assert headers == {h.lower(): v.lower() for h, v in headers.items()}
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert headers["cross-origin-embedder-policy"] in ("require-corp", "credentialless")
    assert headers["cross-origin-resource-policy"] == "cross-origin"
    monkeypatch.setenv("SPACE_ID", "someone/osprey")
    with gr.Blocks() as plain:
        gr.Markdown("plain")
    with serving(plain) as url, urllib.request.urlopen(url) as response:
        assert "Cross-Origin-Embedder-Policy" not in response.headers


def test_the_page_is_cross_origin_isolated_unless_asked_not_to_be(server):
    """Every response (the page, the API, the page's decoder files) carries the headers that let
    the page's WebAssembly decoder use threads; ``--no-isolation`` sends none."""
    import urllib.request

    import gradio as gr

    from tests.support.servers import serving

    for path in ("", "config", "gradio_api/info"):
        with urllib.request.urlopen(server + path) as response:
            assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
            assert response.headers["Cross-Origin-Embedder-Policy"] == "credentialless"
    assert parse_args(["--tiny", "--no-isolation"]).no_isolation
    with gr.Blocks() as plain:
        gr.Markdown("plain")
    with serving(plain, isolate=False) as url, urllib.request.urlopen(url) as response:
        assert "Cross-Origin-Embedder-Policy" not in response.headers


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("0", False), ("", False),
                                             ("false", False), ("off", False)])  # fmt: skip
def test_on_off_environment_variables_read_0_and_false_as_off(monkeypatch, value, expected):
    monkeypatch.setenv("OSPREY_NO_BATCHING", value)
    monkeypatch.setenv("OSPREY_NO_ISOLATION", value)
    args = parse_args(["--tiny"])
    assert args.no_batching is expected and args.no_isolation is expected
