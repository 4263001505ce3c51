"""The prompt format and the token ids the released weights expect (golden tests)."""

import pytest

from osprey.core import constants as C
from osprey.core import prompt_strings as P
from osprey.inference.prompt_format import (
    TEMPLATES,
    ContextLengthError,
    RenderError,
    Turn,
    chat_turns,
    encode,
    postprocess_answer,
    render,
    task_message,
    tokenize_prompt,
)

SYS = (
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the human's questions."
)


def test_golden_task_prompts():
    assert task_message("category") == (
        "<image>\nThis provides an overview of the picture.\n"
        "What is the category of <mask><pos>? Using only one word or phrase."
    )
    assert task_message("short") == (
        "<image>\n\nThis provides an overview of the picture.\n"
        "Please give me a short description of <mask><pos>. Using a short phrase."
    )
    assert task_message("detailed") == (
        "<image>\n\nThis provides an overview of the picture.\nCan you give me a detailed description of <mask><pos>?"
    )
    assert task_message("open-vocab") == (
        "<image>\n.\nThis provides an overview of the picture.\nWhat is in <mask><pos>? Using a short phrase."
    )
    assert task_message("refcocog") == (
        "<image>\n.\nThis provides an overview of the picture.\nPlease give me a short description of <mask><pos>."
    )
    with pytest.raises(ValueError, match="unknown task"):
        task_message("caption")


def test_golden_templates_and_typos():
    assert TEMPLATES["osprey_v1"].system == SYS
    assert TEMPLATES["vicuna_v1"].system == SYS.replace("curious human", "curious user").replace(
        "human's", "user's"
    )
    assert P.regions_sentence(1) == "Ther are 1 part region in the picture: region1<mask><pos>. "
    assert P.regions_sentence(3) == (
        "Ther are 3 part regions in the picture: region1<mask><pos>,region2<mask><pos>,region3<mask><pos>. "
    )
    assert P.vcr_region_list(2) == "region1 <mask><pos>,region2 <mask><pos>"
    assert "you seein the image" in P.BEGIN_PASCAL_PART and P.BEGIN_PASCAL_PART.startswith(
        "<image>\n In"
    )
    assert "basic attibuts" in P.BEGIN_REFCOCO_PLUS
    assert (
        len(P.DETAILED_QUESTIONS) == 30
        and len(P.SHORT_QUESTIONS) == 24
        and len(P.WHY_QUESTIONS) == 39
    )
    assert (
        "category:subcategory. Categories Containing potted plant, aeroplane,"
        in P.BEGIN_PASCAL_PART
    )


def test_render_open_and_closed_turns():
    text, spans = render([Turn("Q1", "A1"), Turn("Q2")], TEMPLATES["osprey_v1"])
    assert text == SYS + " USER: Q1 ASSISTANT: A1</s>USER: Q2 ASSISTANT:"
    assert [text[s:e] for s, e in spans] == [" A1</s>"]
    with pytest.raises(RenderError, match="only the last turn"):
        render([Turn("Q1"), Turn("Q2")], TEMPLATES["osprey_v1"])
    with pytest.raises(RenderError, match="empty answer"):
        render([Turn("Q1", "  ")], TEMPLATES["osprey_v1"])


def test_chat_turns_put_the_prefix_on_the_first_remaining_turn():
    turns = chat_turns([("what is region1?", "a dog")], "and region2?", 2)
    assert turns[0].user == P.BEGIN + P.regions_sentence(2) + "what is region1?"
    assert turns[1] == Turn("and region2?", None)
    assert chat_turns([], "is there a cat?", 0)[0].user == "<image>\nis there a cat?"


def test_token_ids_match_the_original_tokenizer_behaviour(tiny_parts, sp_reference):
    _, tok = tiny_parts
    n = 7
    prompts = [
        render([Turn(task_message(t))], TEMPLATES["osprey_v1"])[0]
        for t in ("category", "short", "detailed")
    ] + [
        render(
            chat_turns([("What is region1?", "A dog.")], "How is region1 related to region2?", 2),
            TEMPLATES["osprey_v1"],
        )[0]
    ]
    for text in prompts:
        ids, _ = tokenize_prompt(tok, text, n)
        head, tail = text.split("<image>")
        # BOS once; each piece encoded on its own; the image placeholder expanded in place.
        expected = sp_reference(head) + [C.IMAGE_TOKEN_INDEX] * n + sp_reference(tail, bos=False)
        assert ids == expected
    # The legacy behaviour that the weights depend on: a fresh word after an added token.
    ids, _ = tokenize_prompt(tok, "x <mask><pos>? y", 0)
    assert ids[ids.index(32001) + 1] == sp_reference("?", bos=False)[0]
    assert tok.convert_ids_to_tokens(ids[ids.index(32001) + 1]).startswith(
        "▁"
    )  # "▁?": a fresh word


def test_mask_and_pos_ids_and_bos(tiny_parts):
    _, tok = tiny_parts
    enc = encode(
        tok,
        [Turn(P.BEGIN + P.regions_sentence(2) + "Compare region1 and region2.")],
        num_image_tokens=4,
    )
    ids = enc.input_ids
    assert ids[0] == 1 and ids.count(1) == 1
    assert ids.count(32000) == ids.count(32001) == 2 == enc.num_regions
    assert all(ids[i + 1] == 32001 for i, t in enumerate(ids) if t == 32000)
    assert ids.count(C.IMAGE_TOKEN_INDEX) == 4 and enc.has_image


def test_labels_supervise_exactly_the_answers(tiny_parts):
    _, tok = tiny_parts
    turns = [Turn(P.BEGIN + "What is <mask><pos>?", "A brown dog."), Turn("Is it big?", "Yes")]
    enc = encode(tok, turns, num_image_tokens=3, template="vicuna_v1")
    runs, cur = [], []
    for t, lab in zip(enc.input_ids, enc.labels):
        if lab != C.IGNORE_INDEX:
            assert lab == t
            cur.append(t)
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    assert [tok.decode(r) for r in runs] == ["A brown dog.</s>", "Yes</s>"]
    # Nothing of the system, the user turns, the image or the region placeholders is supervised.
    assert all(
        lab == C.IGNORE_INDEX
        for t, lab in zip(enc.input_ids, enc.labels)
        if t in (32000, 32001, -200, 1)
    )
    # The labelled run of turn 1 starts right after "ASSISTANT:" and ends with </s>.
    first = enc.labels.index(runs[0][0])
    assert tok.decode(enc.input_ids[first - 12 : first]).endswith("? ASSISTANT:")


def test_labels_equal_the_overlap_rule_on_many_chats(tiny_parts):
    """The one-pass labelling gives what the rule says, token by token: supervised where the
    token's characters overlap an answer span (never BOS, <mask>, <pos>), on chats with regions,
    escaped user text, non-Latin text and empty-looking answers."""
    import random

    from osprey.inference.prompt_format import render

    _, tok = tiny_parts
    rng = random.Random(0)
    words = ["dog", "<mask>", "é", " ", "region1", "狗", "?", "</s>", "a  b", "\n", "x" * 9, "🦅"]
    for case in range(60):
        history = [
            ("".join(rng.choices(words, k=rng.randint(1, 6))),
             "ok " + "".join(rng.choices(words, k=rng.randint(0, 6))))
            for _ in range(rng.randint(0, 4))
        ]  # fmt: skip
        turns = chat_turns(history, "".join(rng.choices(words, k=3)), rng.randint(0, 3))
        template = TEMPLATES["osprey_v1"]
        enc = encode(tok, turns, num_image_tokens=3, template=template)
        _, answers = render(turns, template)
        ids, spans = tokenize_prompt(tok, render(turns, template)[0], 3)
        expected = [
            t if t not in (32000, 32001) and any(s < ae and e > as_ for as_, ae in answers)
            else C.IGNORE_INDEX
            for t, (s, e) in zip(ids, spans)
        ]  # fmt: skip
        expected[0] = C.IGNORE_INDEX
        assert enc.labels == expected, case


def test_answers_that_break_the_format_are_rejected(tiny_parts):
    _, tok = tiny_parts
    with pytest.raises(RenderError, match="label check"):
        encode(tok, [Turn("<image>\nq", "half</s>answer")], num_image_tokens=1)
    with pytest.raises(RenderError, match="followed by <pos>"):
        encode(tok, [Turn("<image>\n<mask> alone")], num_image_tokens=1)
    with pytest.raises(RenderError, match="at most one"):
        encode(tok, [Turn("<image>\n<image>\nq")], num_image_tokens=1)
    with pytest.raises(ContextLengthError, match="tokens but the model's context is 50"):
        encode(tok, [Turn(task_message("category"))], num_image_tokens=64, max_length=50)


def test_postprocess_reference_demo_and_chat():
    assert postprocess_answer(" region1: a dog on grass</s> ") == " a dog on grass"
    assert postprocess_answer("a: b: c") == " b"  # the original keeps split(':')[1]
    assert postprocess_answer("A cat.A cat.A dog", "demo") == "A cat."
    assert postprocess_answer("Sky.Blue.Sky.", "demo") == "Sky.Blue."
    assert postprocess_answer("region2: It is 10:30 now.", "chat") == "It is 10:30 now."
    assert postprocess_answer("A dog. It runs. A dog. It runs.", "chat") == "A dog. It runs."
    assert postprocess_answer("plain answer", "chat") == "plain answer"
