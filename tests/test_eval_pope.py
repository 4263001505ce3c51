"""POPE answer parsing and metrics, hand-computed."""

import pytest

from osprey.eval.pope import confusion_metrics, parse_answer, score


@pytest.mark.parametrize(
    ("answer", "parsed"),
    [
        ("Yes, there is a dog in the image.", "yes"),
        ("No, there is no dog in the image.", "no"),
        ("No", "no"),  # lower-cased first: "no"
        ("There is not a dog.", "no"),
        ("Yes. There is no cat, but there is a dog.", "yes"),  # only the first sentence counts
        ("Nope", "yes"),  # whole words only, as the reference
        ("no, not really", "no"),  # the comma is dropped before splitting
        ("I see a dog\nno", "yes"),  # split on single spaces: 'dog\nno' is one word
    ],
)
def test_parse_answer_like_the_reference(answer, parsed):
    assert parse_answer(answer) == parsed


def test_metrics_hand_computed():
    preds = ["yes", "yes", "no", "no", "yes"]
    labels = ["yes", "no", "no", "yes", "yes"]
    # TP 2, FP 1, TN 1, FN 1
    out = confusion_metrics(preds, labels)
    assert out["Acc"] == pytest.approx(60.0)
    assert out["Prec"] == pytest.approx(100 * 2 / 3)
    assert out["Rec"] == pytest.approx(100 * 2 / 3)
    assert out["F1"] == pytest.approx(100 * 2 / 3)
    assert out["Yes%"] == pytest.approx(60.0)


def test_no_yes_answers_give_zero_precision_not_an_error():
    out = confusion_metrics(["no", "no"], ["yes", "no"])
    assert out["Prec"] == 0.0 and out["Rec"] == 0.0 and out["F1"] == 0.0 and out["Acc"] == 50.0


def test_score_splits():
    recs = [
        {"split": "random", "answer": "Yes.", "label": "yes"},
        {"split": "random", "answer": "No.", "label": "yes"},
        {"split": "adversarial", "answer": "No, not here.", "label": "no"},
    ]
    out = score(recs)
    assert out["random/Acc"] == 50.0 and out["random/questions"] == 2
    assert out["adversarial/Acc"] == 100.0 and "popular/Acc" not in out
