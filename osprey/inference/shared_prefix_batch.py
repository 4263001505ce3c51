"""Many regions of one image decoded together over one shared prompt prefix.

Describing N regions runs N prompts that agree up to the first region: the system sentence, the
1024 image tokens and the overview sentence, about 1.1k tokens. Copying that prefix's keys and
values into every row costs N x 0.55 GiB for the 7B model in bf16, and every decode step reads
all N copies again. Here the prefix KV is kept once (batch 1), each row's own cache holds only its
suffix (the region's tokens and its answer), and attention is computed in two parts merged
exactly through their log-sum-exp ("cascade" attention):

* every query of every row against the one shared prefix: a single matmul over one copy, with no
  mask (each suffix token sees the whole prefix);
* each row's queries against that row's suffix, causally.

``softmax([s_prefix; s_suffix]) @ [V_prefix; V_suffix]`` equals the two exponentiated parts
summed with a common maximum and divided by their summed normalisers, so the result is the plain
path's attention up to rounding (the greedy tokens are tested equal).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

ATTENTION_NAME = "osprey_shared_prefix"


@dataclass
class SharedPrefix:
    """Per-layer keys and values (1, H_kv, P, D) of the prompt prefix all rows share."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @classmethod
    def from_cache(cls, cache) -> SharedPrefix:
        """View (no copy) of a batch-1 transformers ``DynamicCache``."""
        layers = cache.layers
        if not layers or layers[0].keys is None or layers[0].keys.shape[0] != 1:
            raise ValueError("the shared prefix must be a non-empty batch-1 cache")
        return cls([la.keys for la in layers], [la.values for la in layers])

    @property
    def length(self) -> int:
        return int(self.keys[0].shape[-2])


def shared_prefix_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    *,
    shared_prefix: SharedPrefix,
    key_index: torch.Tensor | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Attention over ``shared_prefix`` followed by each row's own keys (transformers'
    attention-function signature).

    query (B, H, T, D); key/value (B, H_kv, S, D): the rows' suffix so far, whose last T positions
    are the queries'. ``attention_mask``: None (causal within the suffix) or a 4-D (B, 1, T, S)
    boolean / additive mask over the suffix. ``key_index`` (T, A) long, instead of a mask: query t
    sees exactly the suffix keys ``key_index[t]`` (-1: none), gathered rather than masked, so a
    query costs A keys whatever S is (tree attention over a token trie: a node's ancestors).
    Returns ((B, T, H, D), None).
    """
    b, h, t, d = query.shape
    h_kv = key.shape[1]
    g = h // h_kv
    scale = scaling if scaling is not None else d**-0.5
    pk, pv = shared_prefix.keys[module.layer_idx][0], shared_prefix.values[module.layer_idx][0]

    q = query.reshape(b, h_kv, g * t, d)  # (B, H_kv, g*T, D): a KV head's query heads together
    # prefix part: all rows' queries of one KV head against the single copy of its keys
    q_flat = q.permute(1, 0, 2, 3).reshape(h_kv, b * g * t, d)
    s_pre = torch.matmul(q_flat, pk.transpose(1, 2)).float() * scale  # (H_kv, B*g*T, P)
    # suffix part: each row against its own keys (or, with key_index, its gathered keys)
    if key_index is not None:
        key, value = key[:, :, key_index.clamp(min=0)], value[:, :, key_index.clamp(min=0)]
        s_suf = torch.einsum("bkgtd,bktad->bkgta", q.view(b, h_kv, g, t, d), key).float() * scale
        s_suf = s_suf.masked_fill(key_index < 0, float("-inf")).view(b, h_kv, g * t, -1)
    else:
        s_suf = _suffix_scores(q, key, attention_mask, scale, t)

    def to_rows(x: torch.Tensor) -> torch.Tensor:  # (H_kv, B*g*T, n) -> (B, H_kv, g*T, n)
        return x.view(h_kv, b, g * t, -1).permute(1, 0, 2, 3)

    def to_flat(x: torch.Tensor) -> torch.Tensor:  # the inverse
        return x.permute(1, 0, 2, 3).reshape(h_kv, b * g * t, -1)

    top = torch.maximum(to_rows(s_pre.amax(-1, keepdim=True)), s_suf.amax(-1, keepdim=True))
    e_pre = torch.exp(s_pre - to_flat(top))
    e_suf = torch.exp(s_suf - top)
    norm = to_rows(e_pre.sum(-1, keepdim=True)) + e_suf.sum(-1, keepdim=True)
    out = to_rows(torch.matmul(e_pre.to(pv.dtype), pv).float())
    if key_index is not None:  # (B, H_kv, g, T, A) weights over (B, H_kv, T, A, D) values
        e = e_suf.view(b, h_kv, g, t, -1).to(value.dtype)
        out = out + torch.einsum("bkgta,bktad->bkgtd", e, value).reshape(b, h_kv, g * t, d).float()
    else:
        out = out + torch.matmul(e_suf.to(value.dtype), value).float()
    out = (out / norm).to(query.dtype)  # (B, H_kv, g*T, D)
    return out.reshape(b, h, t, d).transpose(1, 2).contiguous(), None


def _suffix_scores(
    q: torch.Tensor, key: torch.Tensor, attention_mask: torch.Tensor | None, scale: float, t: int
) -> torch.Tensor:
    """(B, H_kv, g*T, S) float32 scores of the queries ``q`` (B, H_kv, g*T, D) against the row's
    own keys (B, H_kv, S, D), masked (None: causal within the suffix)."""
    b, h_kv, s = key.shape[0], key.shape[1], key.shape[2]
    g = q.shape[2] // t
    s_suf = torch.matmul(q, key.transpose(2, 3)).float() * scale  # (B, H_kv, g*T, S)
    s_suf = s_suf.view(b, h_kv, g, t, s)
    if attention_mask is not None and attention_mask.dtype == torch.bool:
        s_suf = s_suf.masked_fill(~attention_mask[:, :, None], float("-inf"))
    elif attention_mask is not None:
        s_suf = s_suf + attention_mask[:, :, None].float()
    elif t > 1:  # causal within the suffix (a single query, decoding, sees every key)
        i = torch.arange(t, device=q.device)[:, None]
        j = torch.arange(s, device=q.device)[None, :]
        s_suf = s_suf.masked_fill(j > i + (s - t), float("-inf"))  # query i sits at s - t + i
    return s_suf.view(b, h_kv, g * t, s)


@contextlib.contextmanager
def shared_prefix_attention_on(llm: nn.Module) -> Iterator[None]:
    """Route ``llm``'s attention through :func:`shared_prefix_attention` for the duration (the
    caller holds the model's lock: the switch is visible to every user of the model)."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, shared_prefix_attention)
    config = llm.config
    previous = config._attn_implementation
    config._attn_implementation = ATTENTION_NAME
    try:
        yield
    finally:
        config._attn_implementation = previous


def decode_rows(
    llm: nn.Module,
    prefix: SharedPrefix,
    embeds: torch.Tensor,
    budget: int,
    choose: Callable[[torch.Tensor], torch.Tensor],
    eos: int | None,
) -> list[list[int]]:
    """Prefill ``embeds`` (B, T, D), each row's tokens after ``prefix``, then decode all rows
    together; a row leaves the batch when it emits ``eos``. ``choose`` maps (b, vocab) float32
    logits to (b,) token ids. Returns each row's new tokens (at most ``budget``, ending with
    ``eos`` where reached)."""
    from transformers import DynamicCache

    rows, t = embeds.shape[:2]
    device = embeds.device
    start = prefix.length
    cache = DynamicCache(config=llm.config)
    active = torch.arange(rows, device=device)
    out: list[list[int]] = [[] for _ in range(rows)]
    with shared_prefix_attention_on(llm):
        positions = torch.arange(start, start + t, device=device).expand(rows, t)
        logits = llm(
            inputs_embeds=embeds, position_ids=positions, cache=cache, use_cache=True,
            logits_to_keep=1, shared_prefix=prefix,
        ).logits[:, -1]  # fmt: skip
        for step in range(budget):
            tokens = choose(logits.float())
            for row, token in zip(active.tolist(), tokens.tolist(), strict=True):
                out[row].append(token)
            if step == budget - 1:
                break
            going = tokens != eos if eos is not None else torch.ones_like(tokens, dtype=torch.bool)
            if not bool(going.all()):
                if not bool(going.any()):
                    break
                keep = going.nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                active, tokens = active[keep], tokens[keep]
            position = torch.full((active.numel(), 1), start + t + step, device=device)
            logits = llm(
                input_ids=tokens[:, None], position_ids=position, cache=cache, use_cache=True,
                logits_to_keep=1, shared_prefix=prefix,
            ).logits[:, -1]  # fmt: skip
    return out


def row_bytes(config, elem: int, prefix: int, suffix: int, new: int) -> int:
    """Memory one row of :func:`decode_rows` needs at its peak, in bytes: the KV of its
    ``suffix + new`` tokens, its spliced input embeddings (``prefix + suffix`` positions, built
    whole by the splice) and one layer's float32 scores against the shared prefix while the suffix
    is prefilled. ``elem``: bytes per KV element."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = config.num_key_value_heads or config.num_attention_heads
    kv = 2 * config.num_hidden_layers * kv_heads * head_dim * elem * (suffix + new)
    embeds = 2 * config.hidden_size * elem * (prefix + suffix)
    scores = 3 * 4 * config.num_attention_heads * suffix * prefix
    return kv + embeds + scores
