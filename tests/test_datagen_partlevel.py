"""Part-level data from a PACO-style file built on the real VOC masks: category questions straight
from the annotations, attribute questions through the (replayed) LLM."""

from __future__ import annotations

import json

import numpy as np
import pytest

from osprey.core.masks import encode_rle, mask_box
from osprey.datagen import templates
from osprey.datagen.cli import main
from osprey.datagen.partlevel import category_answer, part_regions
from osprey.datagen.records import validate_record
from osprey.datagen.sources import load_instances
from tests.support.replay_server import ReplayServer
from tests.support.voc_coco import write_json

ATTRIBUTES = {
    2: "brown", 3: "other(color)", 30: "plain", 31: "striped", 45: "fabric", 46: "wood",
    47: "plastic", 55: "opaque", 56: "transparent",
}  # fmt: skip
CATEGORIES = {1: "person", 2: "chair", 3: "bottle", 4: "person:head", 5: "chair:back"}
# (annotation id, category id, VOC instance, attribute ids, object id, keep rows)
ANNOTATIONS = [
    (10, 1, 16, [2, 31, 45, 55], 10, None),  # the man in the hat
    (11, 2, 5, [2, 46, 30, 55], 11, None),  # a chair
    (12, 3, 0, [56, 47, 3], 12, None),  # the bottle; "other(color)" is not a colour to say
    (13, 4, 16, [55, 45, 30, 2], 10, 0.3),  # his head: the top 30% of his mask
    (14, 5, 5, [], 11, 0.5),  # the chair's back, without attributes
]
ATTRIBUTE_REPLY = (
    "Question 1: What is the pattern of the clothing in <region1>?\n\nAnswer 1: Striped.\n\n"
    "Question 2: What material is <region2> made of?\n\nAnswer 2: Wood.\n\n"
    "Question 3: Is <region3> transparent?\n\nAnswer 3: Yes.\n\n"
    "Question 4: What part of the person is <region4>?\n\nAnswer 4: Head."
)


def _top(mask: np.ndarray, fraction: float | None) -> np.ndarray:
    if fraction is None:
        return mask
    _, y0, _, y1 = mask_box(mask)
    part = mask.copy()
    part[int(y0 + fraction * (y1 - y0)) :] = False
    return part


@pytest.fixture
def paco(voc, tmp_path):
    height, width = voc["rgb"].shape[:2]
    annotations = []
    for ann_id, category, k, attrs, obj, rows in ANNOTATIONS:
        mask = _top(voc["masks"][k], rows)
        x0, y0, x1, y1 = mask_box(mask)
        annotations.append({
            "id": ann_id, "image_id": 5, "category_id": category, "obj_ann_id": obj,
            "bbox": [x0, y0, x1 - x0, y1 - y0], "area": int(mask.sum()),
            "segmentation": encode_rle(mask), "attribute_ids": attrs,
        })  # fmt: skip
    data = {
        "images": [{"id": 5, "file_name": "000000000005.jpg", "height": height, "width": width}],
        "annotations": annotations,
        "categories": [{"id": i, "name": n} for i, n in CATEGORIES.items()],
        "attributes": [{"id": i, "name": n} for i, n in ATTRIBUTES.items()],
    }
    return write_json(tmp_path / "paco.json", data)


def test_category_answers():
    assert category_answer("spoon") == "Spoon."
    assert category_answer("spoon:bowl") == "Bowl of a spoon."
    assert category_answer("trash_can:inner_body") == "Inner body of a trash can."
    assert category_answer("car_(automobile):bumper") == "Bumper of a car."
    assert category_answer("umbrella:handle") == "Handle of an umbrella."


def test_regions_put_objects_first_and_keep_groups_whole(paco):
    (image,) = load_instances(paco).images
    names = [r.category for r in part_regions(image.instances, 10)]
    assert names == ["person", "chair", "bottle", "person:head", "chair:back"]
    # With room for 3, the chair and its back (2) do not fit after the person and his head.
    assert [r.category for r in part_regions(image.instances, 3)] == [
        "person",
        "bottle",
        "person:head",
    ]


def _argv(paco, tmp_path, *extra):
    out = tmp_path / "osprey_part_level.json"
    return [
        "part-level", "--instances", str(paco), "--out", str(out), "--model", "replay",
        "--quiet", *extra,
    ]  # fmt: skip


def test_categories_and_attributes_records(paco, tmp_path, capsys):
    with ReplayServer(lambda request: ATTRIBUTE_REPLY) as server:
        assert main(_argv(paco, tmp_path, "--base-url", server.base_url)) == 0
        assert server.count == 1
    request = server.requests[0]["messages"]
    assert request[0]["content"] == templates.PART_SYSTEM
    assert request[-1]["content"] == (
        "<region1> person: brown, striped, fabric, opaque\n"
        "<region2> chair: brown, plain, wood, opaque\n"
        "<region3> bottle: plastic, transparent\n"
        "<region4> person:head: brown, plain, fabric, opaque"
    )
    categories, attributes = json.loads((tmp_path / "osprey_part_level.json").read_text())
    for record in (categories, attributes):
        validate_record(record, "part-level")
        assert record["id"] == 5
    answers = [t["value"] for t in categories["conversations"][1::2]]
    assert answers == ["Person.", "Chair.", "Bottle.", "Head of a person.", "Back of a chair."]
    questions = [t["value"] for t in categories["conversations"][::2]]
    assert all(f"<region{k}>" in q for k, q in enumerate(questions, 1))
    assert len(attributes["annotation"]) == 4  # the chair's back has no attributes
    assert attributes["conversations"][-1] == {"from": "gpt", "value": "Head."}
    assert "records by kind: attributes 1, categories 1" in capsys.readouterr().out


def test_categories_alone_need_no_llm(paco, tmp_path):
    # No client is built for --qa categories: an item that needed the LLM would raise.
    assert main(_argv(paco, tmp_path, "--qa", "categories")) == 0
    (record,) = json.loads((tmp_path / "osprey_part_level.json").read_text())
    assert len(record["conversations"]) == 10


def test_a_bad_attribute_reply_is_rejected_without_losing_the_categories(paco, tmp_path, capsys):
    reply = ATTRIBUTE_REPLY + "\n\nQuestion 5: And <region5>?\n\nAnswer 5: A chair back."
    with ReplayServer(lambda request: reply) as server:
        main(_argv(paco, tmp_path, "--base-url", server.base_url))
    out = capsys.readouterr().out
    assert "part-level: 1 records" in out and "rejected replies: unknown_region 1" in out
    (record,) = json.loads((tmp_path / "osprey_part_level.json").read_text())
    assert record["conversations"][1]["value"] == "Person."
