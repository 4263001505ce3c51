"""The LLM judge: prompt text, reading scores from replies, resuming, summarising."""

import pytest

from osprey.core.openai_client import ChatReply
from osprey.eval.common import PredictionStore
from osprey.eval.judge import (
    RULES,
    SYSTEM,
    JudgeItem,
    JudgeSettings,
    clean_answer,
    parse_scores,
    review_content,
    run_judge,
    summarize,
)

# Replies as judges write them (the last two of the well-formed ones are SmolLM2-135M's).
WELL_FORMED = [
    ("8 9\nAssistant 1 gave a precise answer ...", (8.0, 9.0), "reference"),
    ("7,6\n\nBoth assistants ...", (7.0, 6.0), "reference"),
    ("8.5 7\nThe first ...", (8.5, 7.0), "reference"),
    ("2.5 - 1.7\nThe answer is: 2.5", (2.5, 1.7), "first-line"),
]
EXTRA_TEXT = [
    ("**Scores:** 7/10 and 9/10\n\nExplanation ...", (7.0, 9.0), "first-line"),
    ("8, 9\nexplanation", (8.0, 9.0), "first-line"),  # the reference split gives 3 parts here
    ("Assistant 1: 8\nAssistant 2: 6\nBoth answers ...", (8.0, 6.0), "labelled"),
    (
        "Here is my evaluation.\nAssistant 1 receives a score of 7 and Assistant 2 receives 9.",
        (7.0, 9.0),
        "labelled",
    ),
    ("\n\n  6 8\nreasons", (6.0, 8.0), "first-line"),  # leading blank lines
]
MALFORMED = [
    ("", "empty reply"),
    ("I cannot rate these answers without seeing the image.", "no score pair"),
    ("Scores: 7 8 9\n...", "no score pair"),
    ("12 15\nout of scale", "outside 0..10"),
    ("Assistant 1 was better.", "no score pair"),
]


@pytest.mark.parametrize(("reply", "scores", "method"), WELL_FORMED + EXTRA_TEXT)
def test_scores_are_read(reply, scores, method):
    parsed = parse_scores(reply)
    assert parsed.scores == scores and parsed.method == method and parsed.error is None


@pytest.mark.parametrize(("reply", "reason"), MALFORMED)
def test_unreadable_replies_are_reported_not_zeroed(reply, reason):
    parsed = parse_scores(reply)
    assert parsed.scores is None and parsed.method == "failed" and reason in parsed.error


def test_review_content_is_the_reference_layout():
    text = review_content("CTX", "Q?", "REF", "ANS", RULES["description"])
    assert text.startswith("[Context]\\CTX\n\n[Question]\nQ?\n\n[Assistant 1]\nREF\n\n")
    assert (
        "[End of Assistant 1]\n\n[Assistant 2]\nANS\n\n[End of Assistant 2]\n\n[System]\n" in text
    )
    assert text.endswith("does not affect your judgment.\n\n")
    assert "several region description are given" in RULES["description"]
    assert "Please rate the spatial correspondence, helpfulness" in RULES["refer_desc"]
    assert RULES["refer_desc"] == RULES["refer_reason"]
    assert (
        SYSTEM == "You are a helpful and precise assistant for checking the quality of the answer."
    )


def test_clean_answer_per_benchmark():
    assert clean_answer("region1: a man </s>", "description") == " a man"
    assert clean_answer("A cat [0.1, 0.2, 0.3, 0.4] sits.", "refer_desc") == "A cat sits."
    assert clean_answer("a: b", "refer_reason") == "a: b"


class FakeJudge:
    def __init__(self, replies):
        self.replies = list(replies)
        self.requests = []

    def chat(self, messages, *, temperature, max_tokens, seed=None):
        self.requests.append({"messages": messages, "seed": seed})
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return ChatReply(reply, 10, 5)


def _items(n):
    return [
        JudgeItem(f"description:{i}", i, "description", "ctx", f"q{i}", "ref") for i in range(n)
    ]


def test_run_judge_resumes_retries_and_keeps_failures_out(tmp_path):
    items = _items(3)
    answers = {it.id: {"answer": f"answer number {it.question_id}"} for it in items}
    judge = FakeJudge(["8 6\n", "no scores here", "7 7\n", ConnectionError("down")])
    settings = JudgeSettings(seed=5, attempts=2, concurrency=1)
    with (
        PredictionStore(tmp_path / "r.jsonl") as store,
        pytest.raises(RuntimeError, match="1 judge"),
    ):
        run_judge(lambda: judge, items, answers, store, settings)
    with PredictionStore(tmp_path / "r.jsonl") as store:
        assert set(store.records) == {"description:0", "description:1"}
        second = store.records["description:1"]
        assert second["scores"] == [7.0, 7.0] and second["attempts"] == 2
        assert [r["seed"] for r in judge.requests[1:3]] == [5, 6]  # re-asked with the next seed
        assert judge.requests[0]["messages"][1]["content"].count("answer number 0") == 1
        again = FakeJudge(["9 3\n"])
        assert run_judge(lambda: again, items, answers, store, settings) == 1
        assert len(again.requests) == 1  # only the failed one is asked again
        rows = [store.records[it.id] for it in items]
    out = summarize(rows)
    assert out["score"] == pytest.approx(100 * ((6 + 7 + 3) / 3) / ((8 + 7 + 9) / 3))
    assert out["score judged"] == 3 and out["score unreadable"] == 0


def test_summarize_excludes_unreadable_and_counts_them():
    rows = [
        {"category": "refer_desc", "scores": [8, 4]},
        {"category": "refer_desc", "scores": None},
        {"category": "refer_reason", "scores": [5, 5]},
    ]
    out = summarize(rows)
    assert out["refer_desc"] == pytest.approx(50.0) and out["refer_desc unreadable"] == 1
    assert out["refer_reason"] == pytest.approx(100.0)
    assert out["all"] == pytest.approx(100 * (9 / 2) / (13 / 2))
    assert out["all judged"] == 3
