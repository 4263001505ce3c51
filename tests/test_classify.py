"""Top-k categories over a vocabulary (osprey/inference/topk_scoring.py): the trie, what is scored, equality
with one full forward pass per name, probabilities, the sum (not mean) choice, agreement with
greedy decoding, and the sharing that makes it cheap (counted, not timed)."""

import numpy as np
import pytest
import torch

from osprey.core.constants import IGNORE_INDEX
from osprey.inference import prompt_format as conv
from osprey.inference import shared_prefix_batch as sp
from osprey.inference import topk_scoring as cl
from osprey.inference.facade import Generation, Osprey
from osprey.inference.vocabularies import builtin, from_names

# names that share leading tokens, differ in length, and nest ("table" / "dining table")
NAMES = ["dog", "dogs", "hot dog", "traffic light", "traffic sign", "table", "dining table",
         "person", "bat (animal)", "a", "aerosol can", "monitor (computer equipment)"]  # fmt: skip


@pytest.fixture(scope="module")
def osp(tiny_parts):
    model, tokenizer = tiny_parts
    return Osprey(model, tokenizer, name="tiny-random")


@pytest.fixture(scope="module")
def image(osp, voc):
    return osp.set_image(voc["rgb"])


def _reference(osp, image, masks, names):
    """(Q, V) summed log-probabilities, one full forward pass per (region, name)."""
    _, feats = osp.images.get(image)
    regions = [torch.from_numpy(m) for m in masks] if masks is not None else [None]
    rows = [cl.reference_scores(osp.model, osp._encoded, feats, m, names) for m in regions]
    return torch.stack(rows).double()


def _scores(osp, image, masks, names):
    handle, feats = osp.images.get(image)
    regions = torch.from_numpy(np.stack(masks)) if masks is not None else torch.zeros(0, 1, 1)
    return osp.classifier.scores(handle.key, feats, regions.bool(), from_names(names)).double()


# ---------------------------------------------------------------------------------------------
# the trie and what is scored


def test_trie_shares_leading_tokens_and_orders_parents_first():
    trie, paths = cl.TokenTrie.build([[5, 6, 2], [5, 7, 2], [5, 6, 8, 2], [9, 2]])
    assert len(trie) == 9  # 12 tokens, of which 5 (twice) and 6 are shared
    assert trie.tokens[paths[0]].tolist() == [5, 6, 2] and paths[0][:2] == paths[2][:2]
    assert paths[0][0] == paths[1][0] and paths[0][1] != paths[1][1]
    assert trie.depth[paths[2]].tolist() == [1, 2, 3, 4]
    assert all(trie.parents[n] < n for n in range(len(trie)))
    # inner nodes (fed to the model) are exactly the nodes with children: never a final </s>
    assert sorted(trie.inner.tolist()) == sorted({int(p) for p in trie.parents if p >= 0})
    assert not set(trie.inner.tolist()) & {p[-1] for p in paths}


def test_ancestor_index_lists_the_context_then_self_and_ancestors():
    trie, paths = cl.TokenTrie.build([[5, 6, 7, 2], [5, 8, 2]])
    index = cl.ancestor_index(trie, context=3)(0, len(trie.inner)).tolist()
    slot = {int(n): 3 + k for k, n in enumerate(trie.inner)}
    node_7 = paths[0][2]
    row = index[trie.inner.tolist().index(node_7)]
    assert row[:3] == [0, 1, 2]
    assert row[3:] == [slot[paths[0][2]], slot[paths[0][1]], slot[paths[0][0]]]
    row_5 = index[trie.inner.tolist().index(paths[0][0])]
    assert row_5 == [0, 1, 2, slot[paths[0][0]], -1, -1]


def test_each_name_scores_exactly_its_supervised_answer_tokens(osp):
    message = cl.category_message(False)
    cands = osp.classifier.candidates(message, NAMES)
    assert cands.context[-1] == osp._encoded([conv.Turn(message, "dog")]).input_ids[-3]
    for name, nodes in zip(NAMES, cands.scored):
        enc = osp._encoded([conv.Turn(message, name)])
        answer = [lab for lab in enc.labels if lab != IGNORE_INDEX]
        assert cands.trie.tokens[nodes].tolist() == answer
        assert answer[-1] == osp.tokenizer.eos_token_id  # the end of the answer counts
        assert enc.input_ids[: len(cands.context)] == cands.context
    # "dog" -> the separator+name piece and </s>; the prompt's tokens are never scored
    assert osp.tokenizer.convert_ids_to_tokens(cands.trie.tokens[cands.scored[0]].tolist()) == [
        "\u2581dog", "</s>",
    ]  # fmt: skip


def test_the_region_prompt_is_the_category_task_and_the_whole_image_the_image_message():
    assert cl.category_message(False) == conv.task_message("category")
    whole = cl.category_message(True)
    assert whole == conv.image_message(cl.IMAGE_QUESTION)
    assert "<mask>" not in whole and whole.startswith("<image>\n")
    assert cl.IMAGE_QUESTION == "What is the category of the image? Using only one word or phrase."


# ---------------------------------------------------------------------------------------------
# equal to the definition


@pytest.fixture(scope="module")
def three_regions(osp, image, voc):
    """Three VOC regions and their reference scores for NAMES."""
    masks = list(voc["masks"][[0, 5, 18]].astype(bool))
    return masks, _reference(osp, image, masks, NAMES)


@pytest.mark.parametrize("batch_size", [1, "auto"])
def test_scores_equal_one_full_forward_pass_per_name(
    osp, image, three_regions, batch_size, monkeypatch
):
    monkeypatch.setattr(osp.generator, "batch_size", batch_size)
    masks, want = three_regions
    got = _scores(osp, image, masks, NAMES)
    torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-5)
    assert osp.classifier.last_batch_rows == (1 if batch_size == 1 else 3)
    # the ranking is the reference's ranking
    assert (got.argsort(-1, descending=True) == want.argsort(-1, descending=True)).all()


def test_whole_image_scores_equal_the_definition(osp, image):
    got = _scores(osp, image, None, NAMES)
    want = _reference(osp, image, None, NAMES)
    assert got.shape == (1, len(NAMES))
    torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-5)


def test_a_sample_of_lvis_scores_equal_the_definition(osp, image, voc):
    names = builtin("lvis").names[::40]  # 31 names, the trie built from all of them
    mask = voc["masks"][3].astype(bool)
    torch.testing.assert_close(
        _scores(osp, image, [mask], names),
        _reference(osp, image, [mask], names),
        atol=2e-4,
        rtol=1e-5,
    )


def test_probabilities_are_the_softmax_of_summed_log_probabilities(osp, image, voc):
    """The chosen length treatment: the sum (the log-probability of the whole answer), not the
    mean; p(a) / p(b) = exp(sum_a - sum_b) exactly, which the mean would not give."""
    mask = voc["masks"][7].astype(bool)
    probs = osp.class_probabilities(image, [mask], NAMES)[0]
    assert probs.shape == (len(NAMES),) and probs.sum() == pytest.approx(1.0, abs=1e-9)
    message = cl.category_message(False)
    _, feats = osp.images.get(image)
    per_token = []
    for name in ["dog", "dining table"]:  # one and four answer tokens plus </s>
        enc = osp._encoded([conv.Turn(message, name)])
        ids = torch.tensor([enc.input_ids])
        with torch.inference_mode():
            logits = osp.model(ids, features=[feats], masks=[torch.from_numpy(mask)[None]]).logits
        logp = logits[0].float().log_softmax(-1)
        per_token.append([float(logp[i - 1, t]) for i, t in enumerate(enc.labels) if t != -100])
    a, b = NAMES.index("dog"), NAMES.index("dining table")
    total = [sum(x) for x in per_token]
    mean = [sum(x) / len(x) for x in per_token]
    assert np.log(probs[a] / probs[b]) == pytest.approx(total[0] - total[1], abs=1e-3)
    assert abs((mean[0] - mean[1]) - (total[0] - total[1])) > 0.1  # the two choices differ here


def test_a_class_with_synonyms_gets_the_sum_of_their_probabilities():
    scores = torch.tensor([[0.0, np.log(2.0), np.log(3.0), np.log(4.0)]])
    probs = cl.class_probabilities(scores, [0, 1, 1, 2])
    np.testing.assert_allclose(probs, [[0.1, 0.5, 0.4]])


# ---------------------------------------------------------------------------------------------
# the facade


def test_classify_returns_top_k_per_region_sorted(osp, image, voc):
    masks = list(voc["masks"][:4].astype(bool))
    out = osp.classify(image, masks, "coco", top_k=5)
    assert len(out) == 4
    for top in out:
        assert len(top) == 5 and all(n in builtin("coco").names for n, _ in top)
        probs = [p for _, p in top]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-9
    full = osp.class_probabilities(image, masks, "coco")
    assert full.shape == (4, 80)
    np.testing.assert_allclose(full.sum(1), 1.0, atol=1e-9)
    assert out[2][0][1] == pytest.approx(full[2].max())
    assert len(osp.classify(image, masks[:1], "dog, cat", top_k=10)[0]) == 2  # k > classes
    whole = osp.classify(image, None, ["dog", "cat", "sofa"], top_k=2)
    assert len(whole) == 1 and len(whole[0]) == 2
    assert osp.classify(image, [], ["dog", "cat"], top_k=1)[0][0][0] == whole[0][0][0]


def test_bad_input_is_a_clear_error(osp, image, voc):
    from osprey.inference.preprocess import RegionError
    from osprey.inference.vocabularies import VocabularyError

    mask = voc["masks"][0].astype(bool)
    with pytest.raises(VocabularyError, match="unknown vocabulary"):
        osp.classify(image, [mask], "lvsi")
    with pytest.raises(RegionError, match="empty"):
        osp.classify(image, [np.zeros_like(mask)], "coco")
    with pytest.raises(VocabularyError, match="may not contain"):
        osp.classify(image, [mask], ["dog", "cat</s>"])


# ---------------------------------------------------------------------------------------------
# greedy decoding


@pytest.fixture(scope="module")
def ending_osprey():
    """The tiny model with a stronger </s> row, so that most greedy answers end within a few
    tokens (the plain tiny model's answers run on: a candidate must end with </s>)."""
    from osprey.model.tiny import build_tiny

    model, tokenizer = build_tiny(seed=0)
    with torch.no_grad():
        model.llm.get_output_embeddings().weight[2] *= 2.5
    return Osprey(model, tokenizer)


def test_top1_and_greedy_decoding(ending_osprey, voc):
    """Top-1 equals the greedy answer exactly when the greedy answer is also the most likely
    whole answer of the vocabulary. Greedy decoding maximises each token, not the answer: on the
    tiny model 17 of the 19 greedy answers end within 16 tokens, 2 of them tokenise back to the
    tokens generated (a random model emits non-canonical tokenisations, e.g. '▁Us','c' for what
    the tokenizer writes '▁','U','sc'), and of those 1 is top-1; the other's 11 tokens have
    per-step probabilities of 0.04-0.94 (answer log-probability -17.3) and lose to a 6-token
    answer whose second token was not the argmax (-7.9)."""
    osp = ending_osprey
    image = osp.set_image(voc["rgb"])
    masks = list(voc["masks"].astype(bool))
    handle, feats = osp.images.get(image)
    message = conv.task_message("category")
    ids = osp._encoded([conv.Turn(message)]).input_ids
    regions = torch.from_numpy(np.stack(masks))
    greedy = osp.generator.generate_rows(handle.key, feats, regions, ids, Generation(16))
    ended, answers = 0, {}
    for i, new in enumerate(greedy):
        text = osp.tokenizer.decode(new, skip_special_tokens=True).strip()
        enc = osp._encoded([conv.Turn(message, text)])
        ended += new[-1] == osp.tokenizer.eos_token_id
        # a candidate: the answer ended, and its text tokenises back to the same answer tokens
        if new[-1] == osp.tokenizer.eos_token_id and [t for t in enc.labels if t != -100] == new:
            answers[i] = text
    assert (ended, len(answers)) == (17, 2)
    vocabulary = sorted(set(answers.values()) | {"person", "chair", "bottle", "dining table"})
    top = osp.classify(image, [masks[i] for i in answers], vocabulary, top_k=1)
    agree = 0
    for (i, text), ranked in zip(answers.items(), top):
        ref = cl.reference_scores(osp.model, osp._encoded, feats, regions[i], vocabulary)
        best = vocabulary[int(ref.argmax())]
        assert ranked[0][0] == best  # the top-1 is the most likely whole answer
        agree += ranked[0][0] == text
    assert agree == 1


# ---------------------------------------------------------------------------------------------
# sharing (counted: the speed itself is benchmarks/classify_bench.py's business)


def test_lvis_costs_one_pass_per_trie_step_not_one_per_name(osp, image, voc, monkeypatch):
    calls = []
    inner = sp.shared_prefix_attention

    def spy(module, query, *args, **kwargs):
        if module.layer_idx == 0:
            calls.append(query.shape)
        return inner(module, query, *args, **kwargs)

    monkeypatch.setattr(sp, "shared_prefix_attention", spy)
    monkeypatch.setattr(osp.generator, "batch_size", 8)
    masks = list(voc["masks"][:2].astype(bool))
    osp.classify(image, masks, "coco")  # the image prefix is now in the prefix cache
    calls.clear()
    before = osp.generator.prefix.prefilled_tokens
    osp.classify(image, masks, "lvis", top_k=3)
    cands = osp.classifier.candidates(cl.category_message(False), builtin("lvis").candidates)
    trie = cands.trie
    steps = -(-len(trie.inner) // cl.NODES_PER_STEP)
    assert len(calls) == 1 + steps  # the regions' questions, then the trie: not 1,203 passes
    assert all(q[0] == 2 for q in calls)  # both regions in every pass, over one prefix copy
    assert sum(q[2] for q in calls) == len(cands.context) - cands.context.index(32000) + len(
        trie.inner
    )
    # each trie node is one position: far fewer than the names' tokens, and the image prefix
    # (1000+ tokens) came from the cache
    assert len(trie.inner) < 0.6 * cands.num_tokens
    assert osp.generator.prefix.prefilled_tokens - before == 2 * sum(q[2] for q in calls)


@pytest.mark.parametrize("kv_heads", [4, 2])  # plain multi-head and grouped-query attention
def test_gathered_keys_equal_the_same_keys_masked(kv_heads):
    """shared_prefix_attention's ``key_index`` (tree attention) gives what a boolean mask over
    the same suffix keys gives."""
    from torch import nn

    torch.manual_seed(0)
    b, h, t, s, d, p = 2, 4, 3, 7, 8, 5
    query = torch.randn(b, h, t, d)
    key, value = torch.randn(b, kv_heads, s, d), torch.randn(b, kv_heads, s, d)
    prefix = sp.SharedPrefix([torch.randn(1, kv_heads, p, d)], [torch.randn(1, kv_heads, p, d)])
    module = nn.Module()
    module.layer_idx = 0
    index = torch.tensor([[0, 1, 4, -1], [0, 1, 5, 4], [6, 2, -1, -1]])
    mask = torch.zeros(b, 1, t, s, dtype=torch.bool)
    for i, row in enumerate(index.tolist()):
        mask[:, :, i, [k for k in row if k >= 0]] = True
    want, _ = sp.shared_prefix_attention(module, query, key, value, mask, shared_prefix=prefix)
    got, _ = sp.shared_prefix_attention(
        module, query, key, value, None, shared_prefix=prefix, key_index=index
    )
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
