"""Data generation against a REAL OpenAI-compatible server on loopback (llama.cpp serving
SmolLM2-135M-Instruct): the real VOC photo with its real instance masks in, records out. A 135M
model rarely follows the format, so what is checked is the pipeline: every image gets a request,
each reply is either kept as a valid record or rejected with a counted reason, and the real token
usage is reported."""

import json
import re

import pytest

from osprey.datagen.cli import main
from osprey.datagen.records import validate_record
from tests.support.llama_server import llama_server_url  # noqa: F401  (fixture)
from tests.support.voc_coco import voc_instances, write_images, write_json


@pytest.mark.slow
@pytest.mark.parametrize("task", ["conversation", "description"])
def test_real_server_end_to_end(task, llama_server_url, voc, tmp_path, capsys):  # noqa: F811
    ids = [1, 2]
    captions = {
        "annotations": [
            {"image_id": i, "id": i, "caption": "people having lunch at a table."} for i in ids
        ]
    }
    out = tmp_path / f"{task}.json"
    argv = [
        task,
        "--instances", str(write_json(tmp_path / "instances.json", voc_instances(voc, ids))),
        "--captions", str(write_json(tmp_path / "captions.json", captions)),
        "--images", str(write_images(voc, tmp_path / "images", ids)),
        "--out", str(out), "--max-regions", "2", "--max-tokens", "192", "--temperature", "0",
        "--base-url", llama_server_url, "--model", "smollm2", "--quiet",
    ]  # fmt: skip
    assert main(argv) == 0
    summary = capsys.readouterr().out
    kept = int(re.search(rf"{task}: (\d+) records", summary).group(1))
    rejected = sum(
        int(n) for n in re.findall(r"(\d+)", summary.split("rejected replies:")[1].split("\n")[0])
    )
    assert kept + rejected == len(ids)  # every image was asked, every reply accounted for
    prompt_tokens = int(
        re.search(r"tokens this run: ([\d,]+) prompt", summary).group(1).replace(",", "")
    )
    assert (
        prompt_tokens > 500
    )  # the real server's usage counts, the system prompt and example included
    for record in json.loads(out.read_text()):
        validate_record(record, task, image_root=tmp_path / "images")
