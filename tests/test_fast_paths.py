"""The fast paths (prefix KV reuse, batched regions) give the same tokens as the plain path under
greedy decoding, and really skip work."""

import pytest

from osprey.inference.facade import Generation, Osprey


@pytest.fixture
def plain(tiny_parts):
    model, tok = tiny_parts
    return Osprey(model, tok, kv_cache_size=0)


@pytest.fixture
def fast(tiny_parts):
    model, tok = tiny_parts
    return Osprey(model, tok, kv_cache_size=4, batch_size=2)


def test_prefix_reuse_gives_the_same_tokens(plain, fast, voc):
    rgb, masks = voc["rgb"], voc["masks"]
    g = Generation(max_new_tokens=12)
    script = [
        ("describe", masks[:1], "category"),
        ("describe", masks[1:2], "short"),
        ("ask", masks[:2], "What is region1 doing?"),
        ("describe", masks[2:3], "category"),
    ]
    history: list[tuple[str, str]] = []
    for kind, m, arg in script:
        if kind == "describe":
            assert fast.describe(rgb, m, arg, g, batched=False) == plain.describe(
                rgb, m, arg, g, batched=False
            )
        else:
            a, b = fast.ask(rgb, m, arg, history, g), plain.ask(rgb, m, arg, history, g)
            assert a.raw == b.raw
            history.append((arg, a.text))
    # a follow-up turn reuses the whole previous exchange
    before = fast.generator.prefix.prefilled_tokens
    a = fast.ask(rgb, masks[:2], "And region2?", history, g)
    b = plain.ask(rgb, masks[:2], "And region2?", history, g)
    assert a.raw == b.raw
    assert fast.generator.prefix.prefilled_tokens - before < 40 < a.prompt_tokens
    assert fast.generator.prefix.reused_tokens > 4 * 1000  # image prefix reused by every question
    assert plain.generator.prefix.reused_tokens == 0


def test_batched_regions_give_the_same_tokens(plain, fast, voc):
    rgb, masks = voc["rgb"], voc["masks"][:5]
    g = Generation(max_new_tokens=10)
    for task in ("category", "short"):
        seq = plain.describe(rgb, masks, task, g, batched=False)
        bat = fast.describe(rgb, masks, task, g)  # batch_size 2: chunks of 2, 2, 1
        assert bat == seq
    assert len(set(seq)) > 1  # the regions really differ


def test_paths_agree_under_seeded_sampling(plain, fast, voc):
    g = Generation(max_new_tokens=8, do_sample=True, temperature=1.0, top_p=0.9, seed=7)
    q = "What is region1?"
    assert (
        fast.ask(voc["rgb"], voc["masks"][:1], q, gen=g).raw
        == plain.ask(voc["rgb"], voc["masks"][:1], q, gen=g).raw
    )
