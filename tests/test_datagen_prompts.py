"""Prompt building: the context blocks reproduce the original one-shot examples from their inputs,
and each task sends its own system message and example."""

from __future__ import annotations

import pytest

from osprey.datagen import templates
from osprey.datagen.context import (
    ImageText,
    Region,
    chat_messages,
    description_context,
    format_box,
    qa_context,
    region_list_phrase,
)
from osprey.datagen.objectlevel import ObjectSources, object_items
from osprey.datagen.partlevel import part_items
from osprey.datagen.sources import CocoData, ImageEntry, Instance

SQUARE = [[0.0, 0.0, 10.0, 0.0, 10.0, 10.0, 0.0, 10.0]]  # any valid mask; never decoded here


def _instance(ann_id: int, category: str, bbox: list[float], **raw) -> Instance:
    return Instance(ann_id, category, tuple(bbox), SQUARE, bbox[2] * bbox[3], raw=raw)


def _image(*instances: Instance, size: int = 1000) -> ImageEntry:
    return ImageEntry(7, "000000000007.jpg", size, size, tuple(instances))


# ---------------------------------------------------------------------------------------------
# pieces


def test_format_box_normalises_to_three_decimals_and_clamps():
    # COCO (x, y, w, h) on a 500 x 375 image.
    assert format_box([50, 75, 100, 150], 500, 375) == "[0.100,0.200,0.300,0.600]"
    assert format_box([437, 840, 371, 160], 1000, 1000) == "[0.437,0.840,0.808,1.000]"
    assert format_box([-5, 370, 510, 10], 500, 375) == "[0.000,0.987,1.000,1.000]"


def test_region_list_phrase():
    assert region_list_phrase(1) == "<region1>"
    assert region_list_phrase(2) == "<region1> and <region2>"
    assert region_list_phrase(4) == "<region1>, <region2>, <region3> and <region4>"


# ---------------------------------------------------------------------------------------------
# goldens: the original examples, rebuilt from their inputs through the whole item builder


def test_description_context_reproduces_the_original_example():
    chair = _instance(1, "chair", [437, 840, 371, 160])
    man_head = _instance(2, "person", [530, 881, 468, 106])
    chef = _instance(3, "person", [223, 202, 357, 752])
    spoon = _instance(4, "spoon", [68, 423, 21, 12])
    example_lines = templates.DESCRIPTION_ASK_EXAMPLE.splitlines()
    sources = ObjectSources(
        descriptions={"7": example_lines[1]},
        refs={  # first mentioned first: the chef is region 1, as in the example
            3: ["man chef", "man cooking"],
            2: [
                "i think its a table infront of the chair",
                "top of head bottom right corner",
                "part of head seen near chair",
            ],
        },
    )
    data = CocoData([_image(chair, man_head, chef, spoon)], {}, {})
    (item,) = object_items("description", data, sources)
    # The original example writes "<regin1>" in the caption blocks; we write "<region1>".
    expected = templates.DESCRIPTION_ASK_EXAMPLE.replace("<regin", "<region")
    assert item.messages[-1]["content"] == expected
    assert [a["bbox"] for a in item.skeleton["annotation"]] == [
        [223, 202, 357, 752],
        [530, 881, 468, 106],
    ]


def test_qa_context_reproduces_the_original_example():
    woman = _instance(1, "person", [507, 409, 191, 331])
    older = _instance(2, "person", [243, 469, 315, 277])
    banana = _instance(3, "banana", [599, 703, 221, 114])
    description = templates.QA_ASK_EXAMPLE.split('"')[1]
    region_captions = templates.QA_ASK_EXAMPLE.split("listed below:\n\n")[1].split("\n\n")
    sources = ObjectSources(
        descriptions={"7": description},
        refs={1: region_captions[0].splitlines()[1:], 2: region_captions[1].splitlines()[1:]},
    )
    for task in ("conversation", "short-form"):
        (item,) = object_items(task, CocoData([_image(woman, older, banana)], {}, {}), sources)
        assert item.messages[-1]["content"] == templates.QA_ASK_EXAMPLE


def test_part_context_reproduces_the_paper_example():
    attributes = {
        0: "dark_grey", 1: "dark_green", 2: "light_grey", 3: "other(color)", 10: "plain",
        20: "metal", 21: "ceramic", 30: "opaque",
    }  # fmt: skip
    spoon_attrs = [0, 3, 10, 20, 30]  # "other(color)" is dropped
    instances = [
        _instance(1, "spoon", [0, 0, 50, 10], attribute_ids=spoon_attrs),
        _instance(2, "spoon:tip", [0, 0, 5, 5], attribute_ids=spoon_attrs, obj_ann_id=1),
        _instance(3, "spoon:bowl", [0, 0, 5, 5], attribute_ids=[2, 10, 20, 30], obj_ann_id=1),
        _instance(4, "spoon:neck", [0, 0, 5, 5], attribute_ids=spoon_attrs, obj_ann_id=1),
        _instance(5, "spoon:handle", [0, 0, 5, 5], attribute_ids=spoon_attrs, obj_ann_id=1),
        _instance(6, "bowl", [0, 0, 40, 40], attribute_ids=[1, 10, 21, 30]),
        _instance(7, "bowl:inner_body", [0, 0, 9, 9], attribute_ids=[30, 21, 10, 1], obj_ann_id=6),
        _instance(8, "bowl:rim", [0, 0, 9, 9], attribute_ids=[1, 10, 21, 30], obj_ann_id=6),
    ]
    data = CocoData([_image(*instances)], {}, attributes)
    (item,) = part_items(data, kinds=("attributes",))
    assert item.key == "7:attributes"
    assert item.messages[-1]["content"] == templates.PART_ASK_EXAMPLE


# ---------------------------------------------------------------------------------------------
# hand-written goldens for inputs the examples do not cover


def test_description_context_with_captions_and_uncaptioned_regions():
    text = ImageText(
        description=None,
        captions=("Two people at a table.", "A bottle on a tray."),
        objects=(("person", "[0.100,0.200,0.300,0.600]"), ("bottle", "[0.500,0.500,0.600,0.900]")),
        regions=(Region("bottle", "[0.500,0.500,0.600,0.900]"),),
    )
    assert description_context(text) == (
        "Several descriptions of this image:\n"
        "Two people at a table.\n"
        "A bottle on a tray.\n"
        "person: [0.100,0.200,0.300,0.600]\n"
        "bottle: [0.500,0.500,0.600,0.900]\n"
        "Specially, there are 1 special regions: <region1>.\n"
        "For <region1>(bottle: [0.500,0.500,0.600,0.900]):"
    )


def test_qa_context_with_captions_and_without_any_image_text():
    region = Region("dining table", "[0.000,0.500,1.000,1.000]", ("the table",))
    with_captions = ImageText(None, ("Lunch in a cafeteria.",), (), (region,))
    assert qa_context(with_captions) == (
        "Several descriptions of the whole image:\n"
        "Lunch in a cafeteria.\n\n"
        "Description of each region is listed below:\n\n"
        "<region1> (dining table: [0.000,0.500,1.000,1.000]):\n"
        "the table\n\n"
    )
    bare = ImageText(None, (), (), (region,))
    assert qa_context(bare) == qa_context(with_captions).split("\n\n", 1)[1]


@pytest.mark.parametrize(
    ("task", "system", "ask", "res"),
    [
        ("description", "DESCRIPTION_SYSTEM", "DESCRIPTION_ASK_EXAMPLE", "DESCRIPTION_RES_EXAMPLE"),
        ("conversation", "CONVERSATION_SYSTEM", "QA_ASK_EXAMPLE", "CONVERSATION_RES_EXAMPLE"),
        ("short-form", "SHORT_FORM_SYSTEM", "QA_ASK_EXAMPLE", "SHORT_FORM_RES_EXAMPLE"),
        ("part-level", "PART_SYSTEM", "PART_ASK_EXAMPLE", "PART_RES_EXAMPLE"),
    ],
)
def test_each_task_sends_its_system_message_and_one_shot_example(task, system, ask, res):
    messages = chat_messages(task, "CONTEXT")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert [m["content"] for m in messages] == [
        getattr(templates, system),
        getattr(templates, ask),
        getattr(templates, res),
        "CONTEXT",
    ]


def test_verbatim_prompt_text_keeps_the_originals_quirks():
    # Facts of the original files: the missing space after "0 to 1.", trailing spaces before
    # newlines, and the "<regin1>" typo in the description example.
    assert "ranging from 0 to 1.These values" in templates.DESCRIPTION_SYSTEM
    assert "bottom right y. \nDesign" in templates.CONVERSATION_SYSTEM
    assert "answered confidently. \nDo not ask" in templates.SHORT_FORM_SYSTEM
    assert "For <regin1>(person: [0.223,0.202,0.580,0.954]):" in templates.DESCRIPTION_ASK_EXAMPLE
    assert len(templates.POSNEG_QUESTIONS) == 9
