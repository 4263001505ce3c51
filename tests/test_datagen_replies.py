"""Reply parsing on recorded replies: the method's own example answers, the variations chat models
produce, and malformed replies rejected with a reason."""

from __future__ import annotations

import pytest

from osprey.datagen import templates
from osprey.datagen.records import RecordError
from osprey.datagen.replies import parse_description, parse_qa


def _reason(fn, text, n):
    with pytest.raises(RecordError) as info:
        fn(text, n)
    return info.value.reason


# ---------------------------------------------------------------------------------------------
# the one-shot answers of the method parse into what the loader expects


def test_conversation_example_parses_into_alternating_turns():
    turns = parse_qa(templates.CONVERSATION_RES_EXAMPLE, 2)
    assert [t["from"] for t in turns] == ["human", "gpt"] * 5
    assert turns[0]["value"] == "Can you describe the woman in <region1> and what she is doing?"
    assert turns[9]["value"].startswith("The market has a bustling and lively atmosphere.")
    assert turns[9]["value"].endswith("vibrant ambience of the market scene.")


def test_short_form_and_part_examples_parse():
    short = parse_qa(templates.SHORT_FORM_RES_EXAMPLE, 2)
    assert [t["value"] for t in short[1::2]] == ["Watch.", "Navy blue.", "Barrette.", "Away."]
    part = parse_qa(templates.PART_RES_EXAMPLE, 8)
    assert len(part) == 16
    assert part[6:8] == [
        {"from": "human", "value": "What's the category of <region4>?"},
        {"from": "gpt", "value": "Bowl of a spoon."},
    ]


def test_description_example_parses_one_entry_per_region():
    entries = parse_description(templates.DESCRIPTION_RES_EXAMPLE, 2)
    assert len(entries) == 2
    assert entries[0].startswith("<region1>: A man wearing a white apron")
    assert entries[1].startswith("<region2>: The top of a person's head")


def test_examples_refer_to_regions_the_image_must_have():
    assert _reason(parse_qa, templates.CONVERSATION_RES_EXAMPLE, 1) == "unknown_region"
    assert _reason(parse_description, templates.DESCRIPTION_RES_EXAMPLE, 1) == "unknown_region"


# ---------------------------------------------------------------------------------------------
# tolerated variations


def test_markdown_markers_preamble_and_paragraphs():
    reply = (
        "Sure! Here is a conversation about the regions.\n\n"
        "**Question 1:** What is the person in <region1> holding?\n"
        "**Answer 1:** A plastic water bottle.\n\n"
        "Question: Why is <region2> crowded?\n\n"
        "Answer: It is lunchtime in the cafeteria.\n\n"
        "Several trays are still full of food.\n"
    )
    turns = parse_qa(reply, 2)
    assert turns == [
        {"from": "human", "value": "What is the person in <region1> holding?"},
        {"from": "gpt", "value": "A plastic water bottle."},
        {"from": "human", "value": "Why is <region2> crowded?"},
        {
            "from": "gpt",
            "value": "It is lunchtime in the cafeteria.\n\nSeveral trays are still full of food.",
        },
    ]


def test_description_joins_lines_and_unbrackets_mentions_of_other_regions():
    reply = (
        "Here are the descriptions:\n\n"
        "<region1>: A man in a plaid shirt sits at the table,\n"
        "facing <region2>.\n\n"
        "**<region2>:** A woman with glasses listens to him."
    )
    assert parse_description(reply, 2) == [
        "<region1>: A man in a plaid shirt sits at the table, facing region2.",
        "<region2>: A woman with glasses listens to him.",
    ]


# ---------------------------------------------------------------------------------------------
# rejected replies


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("", "empty_reply"),
        ("   \n\n ", "empty_reply"),
        (None, "empty_reply"),
        ("I'm sorry, I cannot see images.", "unparseable"),
        ("Question 1: Who is in <region1>?\n\nQuestion 2: What is <region1> doing?", "unbalanced"),
        ("Answer 1: A man.\n\nQuestion 1: Who is in <region1>?", "unbalanced"),
        ("Question 1: Who is in <region1>?\n\nAnswer 1: A man.\n\nQuestion 2: And?", "unbalanced"),
        ("Question 1: Who is in <region1>?\n\nAnswer 1:\n\n", "empty_turn"),
        ("Question 1: Who is in <region3>?\n\nAnswer 1: A man.", "unknown_region"),
        ("Question 1: Who is in <region0>?\n\nAnswer 1: A man.", "unknown_region"),
        ("Question 1: Who is in <regin1>?\n\nAnswer 1: A man.", "bad_tag"),
        ("Question 1: Who is in <region>?\n\nAnswer 1: A man.", "bad_tag"),
        ("Question 1: Is x < 5 in <region1>?\n\nAnswer 1: Yes.", "bad_tag"),
    ],
)
def test_malformed_qa_replies_are_rejected_with_a_reason(reply, reason):
    assert _reason(parse_qa, reply, 2) == reason


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("", "empty_reply"),
        ("Region 1: a man.\n\nRegion 2: a woman.", "unparseable"),
        ("<region1>: a man.\n\n<region3>: a woman.", "unknown_region"),
        ("<region1>: a man.\n\n<region1>: a man again.", "duplicate_region"),
        ("<region1>: a man.", "missing_region"),
        ("<region1>: a man next to <region4>.\n\n<region2>: a woman.", "unknown_region"),
        ("<region1>: a man <b>bold</b>.\n\n<region2>: a woman.", "bad_tag"),
        ("<region1>:\n\n<region2>: a woman.", "empty_turn"),
    ],
)
def test_malformed_descriptions_are_rejected_with_a_reason(reply, reason):
    assert _reason(parse_description, reply, 2) == reason
