"""Top-k classes where users get them: the app's operations (osprey/app/top_classes.py: regions, whole
image, describe-all labels, export), the HTTP API endpoint and the command line, tiny models."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from osprey.app import top_classes
from osprey.app.demo import build_demo
from osprey.app.service import ServiceError, Session
from osprey.inference.vocabularies import builtin
from tests.support.servers import serving
from tests.test_service import _with_regions

REPO = Path(__file__).resolve().parents[1]


def test_service_top_k_per_region_kept_and_exported(tiny_service, voc):
    s = _with_regions(tiny_service, voc, 3)
    out = top_classes.classify(tiny_service.osprey, s, "coco", [0, 2], top_k=4)
    assert [name for name, _ in out] == ["region1", "region3"]
    for _, top in out:
        assert len(top) == 4 and all(n in builtin("coco").names for n, _ in top)
    assert s.regions[0].top == tuple(out[0][1]) and s.regions[0].vocabulary == "coco"
    assert s.regions[1].top == ()  # not asked
    data = tiny_service.export(s)
    assert data["regions"][2]["top_k"] == [{"name": n, "prob": p} for n, p in out[1][1]]
    assert data["regions"][2]["vocabulary"] == "coco" and data["regions"][1]["top_k"] == []
    json.dumps(data)  # serialisable as exported


def test_service_whole_image_and_custom_vocabulary(tiny_service, voc):
    s = _with_regions(tiny_service, voc, 0)
    ((name, top),) = top_classes.classify(tiny_service.osprey, s, "dog, cat, sofa, person", top_k=2)
    assert name == "the image" and len(top) == 2
    assert {n for n, _ in top} <= {"dog", "cat", "sofa", "person"}


@pytest.mark.parametrize(
    "vocabulary,top_k,message",
    [
        ("", 5, "vocabulary is empty"),
        ("lvsi", 5, "unknown vocabulary"),
        (
            str(REPO / "osprey" / "inference" / "vocab" / "coco.txt"),
            5,
            "unknown vocabulary",
        ),  # no server paths
        ("dog, c\x07at", 5, "control character"),
        ("coco", 0, "whole number from 1 to 50"),
        ("coco", 51, "whole number from 1 to 50"),
    ],
)
def test_service_bad_input_gets_a_clear_message(tiny_service, voc, vocabulary, top_k, message):
    s = _with_regions(tiny_service, voc, 1)
    with pytest.raises(ServiceError, match=message):
        top_classes.classify(tiny_service.osprey, s, vocabulary, top_k=top_k)


def test_describe_all_labels_every_mask_with_its_top1(tiny_service, voc):
    s = Session()
    tiny_service.open_image(s, voc["rgb"])
    tiny_service.segment_everything(
        s, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    plain = tiny_service.describe_all(s, limit=3)
    assert "label" not in plain[0] and s.auto_labels == [r["category"] for r in plain]
    rows = top_classes.label_all(tiny_service.osprey, s, plain, "coco")
    assert rows and all(r["label"] in builtin("coco").names and 0 < r["prob"] <= 1 for r in rows)
    assert s.auto_labels == [f"{r['label']} {r['prob']:.2f}" for r in rows]
    top1 = tiny_service.osprey.classify(s.image, [a.mask for a in s.auto[:3]], "coco", 1)
    assert [r["label"] for r in rows] == [t[0][0] for t in top1]  # each row labels its own mask


# ---------------------------------------------------------------------------------------------
# the HTTP API


@pytest.fixture(scope="module")
def server(tiny_service):
    with serving(build_demo(tiny_service), max_size=32) as url:
        yield url


def test_api_classify_per_mask_and_whole_image(server, tmp_path, voc):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(server, verbose=False)
    assert "/classify" in client.view_api(return_format="dict")["named_endpoints"]
    img = tmp_path / "voc.png"
    Image.fromarray(voc["rgb"]).save(img)
    files = []
    for i in (0, 4):
        Image.fromarray(voc["masks"][i].astype(np.uint8) * 255).save(tmp_path / f"m{i}.png")
        files.append(handle_file(str(tmp_path / f"m{i}.png")))
    out = client.predict(handle_file(str(img)), files, "coco", 3, api_name="/classify")
    assert len(out) == 2 and all(len(top) == 3 for top in out)
    assert set(out[0][0]) == {"name", "prob"} and out[0][0]["prob"] >= out[0][1]["prob"]
    whole = client.predict(handle_file(str(img)), [], "dog, cat", 5, api_name="/classify")
    assert len(whole) == 1 and sum(t["prob"] for t in whole[0]) == pytest.approx(1.0)
    with pytest.raises(AppError, match="unknown vocabulary"):
        client.predict(handle_file(str(img)), files, "/etc/passwd", 5, api_name="/classify")
    with pytest.raises(AppError, match="whole number from 1 to 50"):
        client.predict(handle_file(str(img)), files, "coco", 0, api_name="/classify")
    rows = client.predict(handle_file(str(img)), 4, 0.0, 0.0, "coco", api_name="/describe_all")
    assert rows and {"label", "prob"} <= set(rows[0])


# ---------------------------------------------------------------------------------------------
# the command line


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "osprey", "classify", "--tiny", *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_cli_prints_top_k_lines_json_and_reads_a_vocabulary_file(tmp_path, voc):
    img = tmp_path / "voc.png"
    Image.fromarray(voc["rgb"]).save(img)
    masks = []
    for i in (0, 4):
        Image.fromarray(voc["masks"][i].astype(np.uint8) * 255).save(tmp_path / f"m{i}.png")
        masks += ["--mask", str(tmp_path / f"m{i}.png")]
    names = tmp_path / "mine.txt"
    names.write_text("# my classes\ndog\ncat\ntraffic light\n")
    out = _cli("--image", str(img), *masks, "--vocab", str(names), "--top-k", "2")
    assert out.returncode == 0, out.stderr
    lines = [ln.split("\t") for ln in out.stdout.splitlines()]
    assert [ln[0] for ln in lines] == ["region1", "region1", "region2", "region2"]
    assert all(ln[2] in ("dog", "cat", "traffic light") and 0 < float(ln[1]) <= 1 for ln in lines)
    out = _cli("--image", str(img), "--vocab", "lvis", "--top-k", "3", "--json")
    assert out.returncode == 0, out.stderr
    (top,) = json.loads(out.stdout)  # no mask: the whole image
    assert len(top) == 3 and all(t["name"] in builtin("lvis").names for t in top)
    out = _cli("--image", str(img), "--vocab", "lvsi")
    assert out.returncode == 1 and out.stderr.strip().endswith(
        "give a built-in name (coco, lvis, ade20k, cityscapes, paco), a file or several "
        "comma-separated class names"
    )
    assert "Traceback" not in out.stderr
