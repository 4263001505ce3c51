"""Generated data is training data: records written by ``osprey.datagen`` (the real VOC photo and
its real masks, an OpenAI-compatible loopback server replaying recorded replies) load through the
training loaders unchanged (same masks, the 724K prompt format) and train for a few steps."""

import json

import numpy as np
import pytest

from osprey.core import prompt_strings as P
from osprey.core.masks import decode_segmentation
from osprey.data.registry import build_source
from osprey.datagen.cli import main as datagen
from tests.support.replay_server import ReplayServer
from tests.support.voc_coco import voc_instances, write_images, write_json
from tests.test_datagen_pipeline import CONVERSATION_REPLIES, _image_of


@pytest.fixture(scope="module")
def generated(voc, tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    ids = [1, 5]
    captions = {
        "annotations": [
            {"image_id": i, "id": i, "caption": f"photo number {i}: lunch."} for i in ids
        ]
    }
    inputs = {
        "instances": write_json(root / "instances.json", voc_instances(voc, ids)),
        "captions": write_json(root / "captions.json", captions),
        "images": write_images(voc, root / "images", ids),
    }
    out = root / "Osprey-724K" / "osprey_conversation.json"
    argv = ["conversation", "--instances", str(inputs["instances"]), "--captions", str(inputs["captions"]),
            "--images", str(inputs["images"]), "--out", str(out), "--max-regions", "3", "--quiet"]  # fmt: skip
    with ReplayServer(lambda r: CONVERSATION_REPLIES[_image_of(r)]) as server:
        assert datagen([*argv, "--base-url", server.base_url, "--model", "replay"]) == 0
    return {"root": root, "out": out, **inputs}


def test_generated_records_load_through_the_training_loader(generated):
    records = json.loads(generated["out"].read_text())
    spec = {
        "type": "OspreyConversations",
        "ann_file": "Osprey-724K/osprey_conversation.json",
        "image_dir": "images",
    }
    source = build_source(spec, generated["root"])
    assert len(source) == len(records) == 2 and source.report()["rejected"] == {}
    rng = np.random.default_rng(0)
    for i, record in enumerate(records):
        sample = source.sample(i, rng)
        expected = [
            decode_segmentation(a["segmentation"], record["height"], record["width"])
            for a in record["annotation"]
        ]
        assert len(sample.masks) == len(expected) == 3
        assert all(np.array_equal(m, e) for m, e in zip(sample.masks, expected))
        first = sample.turns[0].user
        assert first.startswith(P.BEGIN + P.regions_sentence(3))
        asked = [c["value"].replace("<", "").replace(">", "") for c in record["conversations"][::2]]
        assert [t.user for t in sample.turns[1:]] == asked[1:] and first.endswith(asked[0])
        assert [t.assistant for t in sample.turns] == [
            c["value"].replace("<", "").replace(">", "") for c in record["conversations"][1::2]
        ]


def test_generated_file_trains_a_few_steps(generated, tmp_path):
    from osprey.model.checkpoint import save_osprey
    from osprey.model.tiny import build_tiny
    from osprey.train.train import main as train

    model, tok = build_tiny(seed=0)
    save_osprey(model, tok, tmp_path / "init")
    spec = {
        "type": "osprey_conversation",
        "ann_file": "Osprey-724K/osprey_conversation.json",
        "image_dir": "images",
    }
    config = {
        "stage": 3, "model_path": str(tmp_path / "init"), "data_root": str(generated["root"]), "datasets": [spec],
        "output_dir": str(tmp_path / "run"), "max_steps": 3, "learning_rate": 1e-3, "bf16": False,
        "gradient_checkpointing": False, "report_to": "none", "logging_steps": 1, "save_steps": 1000,
        "dataloader_num_workers": 0, "resume_from_checkpoint": None, "warmup_ratio": 0.0,
    }  # fmt: skip
    (tmp_path / "cfg.json").write_text(json.dumps(config))
    assert train(["--config", str(tmp_path / "cfg.json")]) == 0
    history = json.loads((tmp_path / "run" / "trainer_state.json").read_text())["log_history"]
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 3 and all(np.isfinite(losses)) and min(losses) > 0
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert (
        json.dumps(report).count("rejected") >= 1
    )  # the report is written, with its rejection counts
