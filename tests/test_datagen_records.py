"""The record contract: valid records of every task pass, and each way the training loader would
break or silently mis-read a record is rejected with its reason."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
from PIL import Image

from osprey.core.masks import encode_rle
from osprey.datagen.records import (
    OUTPUT_FILES,
    TASKS,
    RecordError,
    loader_image_name,
    validate_record,
)
from tests.support.voc_coco import mask_polygons

REGIONS = (0, 15, 18)  # bottle, person, dining table of the VOC photo


@pytest.fixture(scope="module")
def base(voc):
    height, width = voc["rgb"].shape[:2]
    annotation = [
        {"bbox": [0, 0, 1, 1], "segmentation": encode_rle(voc["masks"][k])} for k in REGIONS
    ]
    annotation[1]["segmentation"] = mask_polygons(voc["masks"][REGIONS[1]])
    return {"id": 1, "file_name": "000000000001.jpg", "annotation": annotation,
            "height": height, "width": width}  # fmt: skip


def _turns(*values):
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(values)]


@pytest.fixture(scope="module")
def records(base):
    conversation = base | {"conversations": _turns(
        "What is <region1> standing on?", "The bottle stands on <region3>.",
        "Who is <region2>?", "A person eating lunch.",
    )}  # fmt: skip
    return {
        "conversation": conversation,
        "short-form": conversation,
        "part-level": conversation,
        "description": base | {"description": [
            "<region1>: A plastic water bottle with a blue cap.",
            "<region2>: A woman in a beige shirt, seen from the side.",
            "<region3>: A round cafeteria table with trays of food.",
        ]},
        "positive-negative": base | {"conversations": _turns(
            "Is the category of <region1> bottle?", "Yes, it is.",
            "Does this area <region2> belong to category chair?", "No, it isn't.",
            "The category of <region3> is diningtable, right?", "Yes.",
        )},
    }  # fmt: skip


def _reason(record, task, **kw):
    with pytest.raises(RecordError) as info:
        validate_record(record, task, **kw)
    return info.value.reason


def test_valid_records_of_every_task_pass(records):
    assert set(records) == set(TASKS) == set(OUTPUT_FILES)
    for task, record in records.items():
        validate_record(record, task)


def test_unknown_task_is_a_programming_error(records):
    with pytest.raises(ValueError, match="unknown task"):
        validate_record(records["conversation"], "conversations")


# ---------------------------------------------------------------------------------------------
# header: file name, size, masks


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"file_name": ""}, "file_name"),
        ({"file_name": "/abs/000000000001.jpg"}, "file_name"),
        ({"file_name": "my_photo.jpg"}, "file_name"),  # the loader would open "photo.jpg"
        ({"height": "375"}, "size"),
        ({"width": True}, "size"),
        ({"height": 0}, "size"),
        ({"height": 376}, "mask"),  # RLE masks are 375 high
        ({"annotation": []}, "annotation"),
        ({"annotation": [{"bbox": [0, 0, 1, 1]}]}, "annotation"),
    ],
)
def test_header_violations(records, change, reason):
    assert _reason(records["conversation"] | change, "conversation") == reason


def test_mask_violations(records, voc):
    height, width = voc["rgb"].shape[:2]
    bad = {
        "empty": encode_rle(np.zeros((height, width), bool)),
        "other size": encode_rle(np.ones((height, width + 1), bool)),
        "degenerate polygon": [[1.0, 2.0, 3.0, 4.0]],
        "corrupt rle": {"size": [height, width], "counts": "!!not-rle"},
    }
    for name, segmentation in bad.items():
        record = copy.deepcopy(records["conversation"])
        record["annotation"][2]["segmentation"] = segmentation
        assert _reason(record, "conversation") == "mask", name


def test_file_names_follow_the_loader_rules(records):
    coco2014 = records["conversation"] | {"file_name": "COCO_train2014_000000000001.jpg"}
    validate_record(coco2014, "conversation")
    assert loader_image_name(coco2014, "conversation") == "000000000001.jpg"
    # The positive/negative loader uses file_name as it is, folders and underscores included.
    nested = records["positive-negative"] | {"file_name": "train2017/my_photo.jpg"}
    validate_record(nested, "positive-negative")
    assert loader_image_name(nested, "positive-negative") == "train2017/my_photo.jpg"


def test_image_root_checks_existence_and_size(records, voc, tmp_path):
    record = records["conversation"] | {"file_name": "COCO_train2014_000000000001.jpg"}
    assert _reason(record, "conversation", image_root=tmp_path) == "image_missing"
    Image.fromarray(voc["rgb"][:, :400]).save(tmp_path / "000000000001.jpg")
    assert _reason(record, "conversation", image_root=tmp_path) == "image_size"
    Image.fromarray(voc["rgb"]).save(tmp_path / "000000000001.jpg")
    validate_record(record, "conversation", image_root=tmp_path)


# ---------------------------------------------------------------------------------------------
# conversations


@pytest.mark.parametrize(
    ("turns", "reason"),
    [
        ([], "conversations"),
        (_turns("What is <region1>?"), "conversations"),
        (_turns("What is <region1>?", "A bottle.", "And <region2>?"), "conversations"),
        (
            [{"from": "gpt", "value": "A bottle."}, {"from": "human", "value": "What?"}],
            "conversations",
        ),
        (
            [{"from": "human", "value": "What?"}, {"from": "assistant", "value": "A."}],
            "conversations",
        ),
        (_turns("What is <region1>?", "  "), "empty_turn"),
        (_turns("What is <region1>?", None), "empty_turn"),
        (_turns("What is <region4>?", "Nothing."), "unknown_region"),
        (_turns("What is <region0>?", "Nothing."), "unknown_region"),
        (_turns("<image>\nWhat is <region1>?", "A bottle."), "bad_tag"),
        (_turns("What is <mask><pos>?", "A bottle."), "bad_tag"),
        (_turns("Is <region1> taller than 5 cm?", "Yes, > 5 cm."), "bad_tag"),
        (_turns("What is <Region 1>?", "A bottle."), "bad_tag"),
    ],
)
@pytest.mark.parametrize("task", ["conversation", "short-form", "part-level"])
def test_conversation_violations(records, task, turns, reason):
    assert _reason(records[task] | {"conversations": turns}, task) == reason


# ---------------------------------------------------------------------------------------------
# descriptions


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        (["<region1>: A bottle.", "<region2>: A woman."], "description"),  # 3 regions
        (["<region1>: A bottle.", "<region3>: A table.", "<region2>: A woman."], "description"),
        (["<region1> A bottle.", "<region2>: A woman.", "<region3>: A table."], "description"),
        (["<region1>: A bottle.\nOn a tray.", "<region2>: A.", "<region3>: A."], "description"),
        (["<region1>: Next to <region2>.", "<region2>: A.", "<region3>: A."], "bad_tag"),
        (["<region1>: a <b>: c", "<region2>: A.", "<region3>: A."], "bad_tag"),
        (["<region1>:  ", "<region2>: A.", "<region3>: A."], "empty_turn"),
        ("<region1>: A bottle.", "description"),
    ],
)
def test_description_violations(records, entries, reason):
    assert _reason(records["description"] | {"description": entries}, "description") == reason


def test_valid_descriptions_read_back_through_the_original_loader_regex(records):
    for k, entry in enumerate(records["description"]["description"], 1):
        text = re.findall(r"<.*>:\ (.*)", entry)[0]  # osprey_724k.py's extraction
        assert entry == f"<region{k}>: {text}"


# ---------------------------------------------------------------------------------------------
# positive / negative: masks bind to the questions' references by order


@pytest.mark.parametrize(
    ("questions", "reason"),
    [
        (
            ["Is <region2> a bottle?", "Is <region1> a person?", "Is <region3> a table?"],
            "region_order",
        ),
        (
            ["Is <region1> a bottle?", "Is <region3> a table?", "Is <region3> a table?"],
            "region_order",
        ),
        (["Is <region1> a bottle?", "Is <region2> a person?", "Is it a table?"], "region_order"),
        (
            ["Is <region1> a bottle?", "Is <region2> a person?", "Is <region3> or <region1>?"],
            "region_order",
        ),
        (
            ["Is <region1> a bottle?", "Is <region2> a person?", "Is <region4> a cup?"],
            "unknown_region",
        ),
    ],
)
def test_positive_negative_reference_order(records, questions, reason):
    turns = _turns(*[v for q in questions for v in (q, "Yes.")])
    record = records["positive-negative"] | {"conversations": turns}
    assert _reason(record, "positive-negative") == reason


def test_positive_negative_answers_hold_no_references(records):
    turns = copy.deepcopy(records["positive-negative"]["conversations"])
    turns[1]["value"] = "Yes, <region1> is a bottle."
    record = records["positive-negative"] | {"conversations": turns}
    assert _reason(record, "positive-negative") == "bad_tag"


def test_positive_negative_allows_several_references_in_order(records):
    base = records["positive-negative"]
    turns = _turns("Is <region1> on <region2>?", "No.", "Is <region3> a table?", "Yes.")
    assert validate_record(base | {"conversations": turns}, "positive-negative") is None
    # the same references out of order are refused: the loader binds masks by order
    swapped = _turns("Is <region2> on <region1>?", "No.", "Is <region3> a table?", "Yes.")
    assert _reason(base | {"conversations": swapped}, "positive-negative") == "region_order"
