"""Shared-prefix (cascade) attention: the regions of a describe batch attend to one copy of the
prompt prefix; results equal attention over the concatenated sequence."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from osprey.inference import shared_prefix_batch as sp
from osprey.inference.facade import Generation, Osprey


def _reference(query, prefix_k, prefix_v, key, value, mask):
    """SDPA over [prefix; suffix], the prefix visible to every query; GQA heads repeated."""
    b, h = query.shape[:2]
    g = h // key.shape[1]
    k = torch.cat([prefix_k.expand(b, -1, -1, -1), key], dim=2).repeat_interleave(g, dim=1)
    v = torch.cat([prefix_v.expand(b, -1, -1, -1), value], dim=2).repeat_interleave(g, dim=1)
    visible = torch.ones(*mask.shape[:-1], prefix_k.shape[2], dtype=bool, device=mask.device)
    full = torch.cat([visible, mask], -1)
    return F.scaled_dot_product_attention(query, k, v, attn_mask=full).transpose(1, 2)


@pytest.mark.parametrize("kv_heads", [4, 2])  # plain multi-head and grouped-query attention
@pytest.mark.parametrize("t,s", [(5, 5), (1, 9), (3, 7)])  # prefill, decode, chunk after a past
def test_attention_equals_sdpa_over_the_concatenation(kv_heads, t, s):
    torch.manual_seed(0)
    b, h, d, p = 3, 4, 16, 11
    query = torch.randn(b, h, t, d)
    key, value = torch.randn(b, kv_heads, s, d), torch.randn(b, kv_heads, s, d)
    prefix = sp.SharedPrefix([torch.randn(1, kv_heads, p, d)], [torch.randn(1, kv_heads, p, d)])
    module = nn.Module()
    module.layer_idx = 0
    causal = torch.arange(s)[None, :] <= torch.arange(t)[:, None] + (s - t)
    want = _reference(
        query, prefix.keys[0], prefix.values[0], key, value, causal.expand(b, 1, t, s)
    )
    got, _ = sp.shared_prefix_attention(module, query, key, value, None, shared_prefix=prefix)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # an explicit mask (row 1 cannot see its first suffix key) is honoured, bool or additive
    mask = causal.expand(b, 1, t, s).clone()
    mask[1, :, :, 0] = False
    want = _reference(query, prefix.keys[0], prefix.values[0], key, value, mask)
    got, _ = sp.shared_prefix_attention(module, query, key, value, mask, shared_prefix=prefix)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    additive = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
    got, _ = sp.shared_prefix_attention(module, query, key, value, additive, shared_prefix=prefix)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def _plain_greedy(llm, prefix_embeds, row_embeds, budget, eos):
    """One row the ordinary way: the whole sequence through the model's own attention."""
    from transformers import DynamicCache

    cache = DynamicCache(config=llm.config)
    logits = llm(
        inputs_embeds=torch.cat([prefix_embeds, row_embeds], 1), cache=cache, use_cache=True
    ).logits[:, -1]
    out: list[int] = []
    while True:
        out.append(int(logits.argmax(-1)))
        if out[-1] == eos or len(out) == budget:
            return out
        ids = torch.tensor([[out[-1]]])
        logits = llm(input_ids=ids, cache=cache, use_cache=True).logits[:, -1]


def test_decode_rows_equals_each_row_alone_and_rows_leave_at_eos(tiny_parts):
    from transformers import DynamicCache

    llm = tiny_parts[0].llm
    torch.manual_seed(1)
    width = llm.config.hidden_size
    prefix_embeds, rows = torch.randn(1, 40, width), torch.randn(4, 6, width)
    with torch.inference_mode():
        base = DynamicCache(config=llm.config)
        llm(inputs_embeds=prefix_embeds, cache=base, use_cache=True)
        prefix = sp.SharedPrefix.from_cache(base)
        free = sp.decode_rows(llm, prefix, rows, 8, lambda lg: lg.argmax(-1), eos=None)
        alone = [_plain_greedy(llm, prefix_embeds, r[None], 8, None) for r in rows]
        assert free == alone and len({tuple(x) for x in free}) > 1
        # make row 0's third token the end of sequence: rows stop at their first eos, the
        # others go on exactly as before although the batch shrinks under them
        eos = free[0][2]
        ended = sp.decode_rows(llm, prefix, rows, 8, lambda lg: lg.argmax(-1), eos=eos)
        cut = [x[: x.index(eos) + 1] if eos in x else x for x in free]
        assert ended == cut and len(ended[0]) == 3 and any(len(x) == 8 for x in ended)
    assert llm.config._attn_implementation == "sdpa"  # switched back
    assert prefix.length == 40 and base.get_seq_length() == 40  # the shared prefix is untouched


def test_describe_batches_through_shared_prefix_attention(tiny_parts, voc, monkeypatch):
    """describe() on several regions goes through the shared-prefix attention (no per-row copy
    of the prefix), and seeded sampling there is reproducible."""
    model, tok = tiny_parts
    calls: list[tuple[int, int]] = []
    inner = sp.shared_prefix_attention

    def spy(module, query, key, value, *args, **kw):
        calls.append((query.shape[0], key.shape[2]))
        return inner(module, query, key, value, *args, **kw)

    monkeypatch.setattr(sp, "shared_prefix_attention", spy)
    osp = Osprey(model, tok, batch_size=3)
    rgb, masks = voc["rgb"], voc["masks"][:4]
    osp.describe(rgb, masks, "category", Generation(max_new_tokens=4))
    assert calls and max(rows for rows, _ in calls) == 3  # chunks of 3 and 1
    assert max(keys for _, keys in calls) < 100  # row caches hold the suffix only, not ~1.1k
    g = Generation(max_new_tokens=6, do_sample=True, temperature=1.0, top_p=0.9, seed=3)
    assert osp.describe(rgb, masks, "short", g) == osp.describe(rgb, masks, "short", g)


def test_row_bytes_counts_the_suffix_not_the_prefix():
    from dataclasses import asdict

    from transformers import LlamaConfig

    from osprey.model.config import LLMConfig

    cfg = LlamaConfig(**asdict(LLMConfig()))  # the 7B's shapes
    row = sp.row_bytes(cfg, 2, prefix=1100, suffix=30, new=64)
    assert sp.row_bytes(cfg, 2, prefix=1100, suffix=30, new=128) > row
    prefix_copy = 2 * 32 * 4096 * 2 * 1100  # what copying the prefix KV into a row took (bf16)
    assert 45 * 2**20 < row < prefix_copy / 5  # the suffix's KV ~47 MiB, plus transients


@pytest.mark.gpu
def test_cuda_shared_prefix_attention_matches_sdpa_in_bf16():
    """On the GPU in bf16 (how the 7B runs): the merged partial softmaxes stay as close to SDPA
    over the concatenation as bf16 rounding allows."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    torch.manual_seed(0)
    b, h, d, p, s = 8, 32, 128, 1100, 40
    dev, bf16 = "cuda", torch.bfloat16
    query = torch.randn(b, h, s, d, device=dev, dtype=bf16)
    key, value = (torch.randn(b, h, s, d, device=dev, dtype=bf16) for _ in range(2))
    prefix = sp.SharedPrefix(
        [torch.randn(1, h, p, d, device=dev, dtype=bf16)],
        [torch.randn(1, h, p, d, device=dev, dtype=bf16)],
    )
    module = nn.Module()
    module.layer_idx = 0
    causal = torch.ones(s, s, dtype=bool, device=dev).tril().expand(b, 1, s, s)
    got, _ = sp.shared_prefix_attention(module, query, key, value, None, shared_prefix=prefix)
    want = _reference(
        query.float(), prefix.keys[0].float(), prefix.values[0].float(), key.float(),
        value.float(), causal,
    )  # fmt: skip
    assert (got.float() - want).abs().max() < 1e-2  # 4e-3 on the CPU; no prefix: 3.8
