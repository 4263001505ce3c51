"""Top-k categories with probabilities: every name of a vocabulary scored as the answer to the
category question the released weights were trained with, in one pass over a token trie.

**The score.** A name's score is the log-probability of its whole answer, the tokens the weights
are trained to produce after ``ASSISTANT:`` (the separator space, the name and ``</s>``), taken
from :func:`osprey.inference.prompt_format.encode`'s labels so that the tokenizer's quirks stay exact. The
log-probabilities are *summed*, not averaged: the sum is the log of the probability that the model
answers exactly this name and stops, so the softmax of the sums over a vocabulary is that
probability conditioned on the answer being one of the names (a class with several synonyms gets
the sum of their probabilities). A mean would compare names of different lengths on a per-token
scale that no decoding produces, and would let a long name whose later tokens are forced (near
probability 1) outrank the name the model actually answers. ``</s>`` counts: a name must end where
the weights would end it ("dog" is not credited for the model's "dog leash").

**The cost.** For a region, every candidate's prompt is the same up to its answer, and names share
leading tokens ("traffic light", "traffic sign"). The image prefix (system sentence, image tokens,
overview) comes from the generator's prefix cache, once per image; the region's own question is
computed once per region; then the vocabulary's token trie is fed once, each trie node one
position whose attention is restricted to the region's prompt and the node's ancestors (a tree
attention mask over :mod:`osprey.inference.shared_prefix_batch`'s cascade attention). Leaves (the ``</s>`` of each
name) are never fed: their probability is read from their parent's logits. Regions are rows of one
batch sharing the one copy of the image prefix.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from osprey.core import constants as C
from osprey.core import prompt_strings as P
from osprey.core.errors import OspreyError
from osprey.core.lru import LRUCache
from osprey.inference import prompt_format as conv
from osprey.inference.generator import Generator, cached_prefix
from osprey.inference.shared_prefix_batch import SharedPrefix, shared_prefix_attention_on
from osprey.inference.vocabularies import Vocabulary
from osprey.model.osprey import ImageFeatures

# The question about the whole image: the category question with the image in place of a region
# (the weights saw no category question without a region; this one follows the image-only chat
# format used elsewhere, conversation.image_message).
IMAGE_QUESTION = P.QUESTION_CATEGORY.replace(P.REGION, "the image")
NODES_PER_STEP = 256  # trie positions fed per forward pass (bounds the attention scores)
Encoder = Callable[[Sequence[conv.Turn]], conv.Encoded]


class ClassifyError(OspreyError, ValueError):
    """A vocabulary cannot be scored under the prompt (a name changes the prompt's tokens)."""


def category_message(whole_image: bool) -> str:
    """The first user message: the category task for a region, :data:`IMAGE_QUESTION` without."""
    return conv.image_message(IMAGE_QUESTION) if whole_image else conv.task_message("category")


def answer_turn(message: str, name: str) -> conv.Turn:
    """``message`` answered with ``name``: user text, so it never forms a control token."""
    return conv.Turn(message, conv.user_text(name))


# ---------------------------------------------------------------------------------------------
# the vocabulary as a token trie


@dataclass(frozen=True)
class TokenTrie:
    """Candidate answers as a trie. Node ``i`` holds token ``tokens[i]`` at ``depth[i]`` (1 for the
    first answer token) under ``parents[i]`` (-1: the prompt). Nodes are numbered so that a parent
    precedes its children; ``inner`` lists the nodes with children (the ones fed to the model)."""

    tokens: np.ndarray  # (N,) int64
    parents: np.ndarray  # (N,) int64
    depth: np.ndarray  # (N,) int64
    inner: np.ndarray  # (M,) int64, increasing

    @classmethod
    def build(cls, sequences: Sequence[Sequence[int]]) -> tuple[TokenTrie, list[list[int]]]:
        """The trie of ``sequences`` and, for each, the node of each of its tokens."""
        children: dict[tuple[int, int], int] = {}
        tokens, parents, depth, paths = [], [], [], []
        for seq in sequences:
            node, path = -1, []
            for tok in seq:
                nxt = children.get((node, tok))
                if nxt is None:
                    nxt = children[(node, tok)] = len(tokens)
                    tokens.append(tok)
                    parents.append(node)
                    depth.append(len(path) + 1)
                node = nxt
                path.append(node)
            paths.append(path)
        parents_arr = np.asarray(parents, dtype=np.int64)
        inner = np.unique(parents_arr[parents_arr >= 0])
        arrays = (np.asarray(tokens, np.int64), parents_arr, np.asarray(depth, np.int64), inner)
        return cls(*arrays), paths

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class Candidates:
    """A vocabulary tokenised as answers to one prompt: the prompt ``context`` (ids up to the
    first answer token, the same for every name), the trie of what follows, and per name the trie
    nodes whose log-probabilities make its score (its supervised tokens)."""

    context: list[int]
    trie: TokenTrie
    scored: list[list[int]]

    @property
    def num_tokens(self) -> int:
        """Answer tokens over all names: the positions one pass per name would score."""
        return sum(len(s) for s in self.scored)


def tokenize_candidates(encode: Encoder, message: str, names: Sequence[str]) -> Candidates:
    """Tokenise every name as the answer to ``message`` with ``encode`` (``conversation.encode``
    bound to the model's tokenizer and template): its ids, and its labels for what is scored."""
    encoded = [encode([answer_turn(message, name)]) for name in names]
    if not encoded:
        raise ClassifyError("the vocabulary is empty")
    firsts = [next(i for i, lab in enumerate(e.labels) if lab != C.IGNORE_INDEX) for e in encoded]
    split = min(_common_length([e.input_ids for e in encoded]), *firsts)
    context = encoded[0].input_ids[:split]
    if C.IMAGE_TOKEN_INDEX not in context or split < 2:
        raise ClassifyError("the answers change the prompt's tokens; cannot score them")
    trie, paths = TokenTrie.build([e.input_ids[split:] for e in encoded])
    scored = [
        [node for node, lab in zip(path, e.labels[split:]) if lab != C.IGNORE_INDEX]
        for path, e in zip(paths, encoded)
    ]
    return Candidates(context, trie, scored)


def _common_length(seqs: Sequence[Sequence[int]]) -> int:
    first = seqs[0]
    n = len(first)
    for s in seqs[1:]:
        n = min(n, len(s))
        n = next((i for i in range(n) if s[i] != first[i]), n)
    return n


# ---------------------------------------------------------------------------------------------
# scoring


def ancestor_index(trie: TokenTrie, context: int) -> Callable[[int, int], torch.Tensor]:
    """``rows(a, b)``: the suffix keys (T, A) long that the inner nodes ``inner[a:b]`` attend to,
    -1 padded: the ``context`` prompt positions, then the fed positions of the node's ancestors
    and itself (fed position ``context + k`` holds inner node ``inner[k]``)."""
    slot = np.full(len(trie), -1, dtype=np.int64)
    slot[trie.inner] = context + np.arange(len(trie.inner))

    def rows(a: int, b: int) -> torch.Tensor:
        nodes = trie.inner[a:b]
        out = np.full((len(nodes), context + int(trie.depth[nodes].max())), -1, dtype=np.int64)
        out[:, :context] = np.arange(context)
        col, node = context, nodes.copy()
        while (node >= 0).any():  # walk up one level per step: self, parent, grandparent, ...
            out[:, col] = np.where(node >= 0, slot[np.maximum(node, 0)], -1)
            node = np.where(node >= 0, trie.parents[np.maximum(node, 0)], -1)
            col += 1
        return torch.from_numpy(out)

    return rows


def trie_log_probs(
    llm, prefix: SharedPrefix, context: torch.Tensor, trie: TokenTrie,
    nodes_per_step: int = NODES_PER_STEP,
) -> torch.Tensor:  # fmt: skip
    """log p(node's token | prompt, its ancestors) for every trie node: (B, N) float32.

    ``context`` (B, R, D): each row's prompt embeddings after ``prefix`` (its region's question
    up to ``ASSISTANT:``). The context is prefilled once per row, then the inner nodes are fed in
    steps of ``nodes_per_step`` at their depth's position, each attending to the context and its
    ancestors only (gathered: a node costs its depth, not the trie's size)."""
    from transformers import DynamicCache

    rows, r = context.shape[:2]
    device, start = context.device, prefix.length
    tokens = torch.from_numpy(trie.tokens).to(device)
    parents = torch.from_numpy(trie.parents).to(device)
    out = torch.zeros(rows, len(trie), device=device)
    cache = DynamicCache(config=llm.config)
    key_rows = ancestor_index(trie, r)
    kwargs = {"cache": cache, "use_cache": True, "shared_prefix": prefix}
    with shared_prefix_attention_on(llm):
        position = torch.arange(start, start + r, device=device).expand(rows, r)
        hidden = llm.model(inputs_embeds=context, position_ids=position, **kwargs)
        roots = (parents < 0).nonzero().squeeze(1)
        logits = llm.get_output_embeddings()(hidden.last_hidden_state[:, -1]).float()  # (B, V)
        out[:, roots] = logits[:, tokens[roots]] - logits.logsumexp(-1, keepdim=True)
        inner = torch.from_numpy(trie.inner).to(device)
        for a in range(0, len(inner), nodes_per_step):
            nodes = inner[a : a + nodes_per_step]
            depth = torch.from_numpy(trie.depth).to(device)[nodes]
            position = (start + r - 1 + depth).expand(rows, -1)
            index = key_rows(a, a + len(nodes)).to(device)
            ids = tokens[nodes].expand(rows, -1)
            hidden = llm.model(input_ids=ids, position_ids=position, key_index=index, **kwargs)
            _children_log_probs(llm, hidden.last_hidden_state, nodes, parents, tokens, out)
    return out


def _children_log_probs(llm, hidden, nodes, parents, tokens, out) -> None:
    """Write into ``out`` (B, N) the log-probabilities of the children of ``nodes`` (T,) from
    the hidden states at those nodes (B, T, D)."""
    children = torch.isin(parents, nodes).nonzero().squeeze(1)  # every child of these nodes
    local = torch.searchsorted(nodes, parents[children])  # row of its parent in ``hidden``
    for a in range(0, len(nodes), 64):  # bounded (B, 64, V) logits
        sel = (local >= a) & (local < a + 64)
        if not bool(sel.any()):
            continue
        h = hidden[:, a : a + 64]
        logits = llm.get_output_embeddings()(h).float()  # (B, t, V)
        norm = logits.logsumexp(-1)  # (B, t)
        rows_local, toks = local[sel] - a, tokens[children[sel]]
        out[:, children[sel]] = logits[:, rows_local, toks] - norm[:, rows_local]


def reference_scores(
    model, encode: Encoder, feats: ImageFeatures, mask: torch.Tensor | None, names: Sequence[str]
) -> torch.Tensor:
    """The definition, computed the slow way (the tests' oracle, the benchmark's baseline): one
    full forward pass per name over its whole prompt, summing log p(token) over the tokens its
    labels supervise. ``mask`` (H, W) bool, or None for the whole image. Returns (V,) float32."""
    message = category_message(mask is None)
    regions = [mask[None]] if mask is not None else [torch.zeros(0, 1, 1, dtype=torch.bool)]
    out = []
    for name in names:
        with torch.inference_mode():
            out.append(
                _reference_score(model, encode([answer_turn(message, name)]), feats, regions)
            )
    return torch.stack(out).cpu()


def _reference_score(model, enc: conv.Encoded, feats: ImageFeatures, regions) -> torch.Tensor:
    """One name's summed answer log-probability from a full forward pass of its prompt."""
    labels = torch.tensor(enc.labels)
    where = (labels != C.IGNORE_INDEX).nonzero().squeeze(1)  # answer positions
    keep = len(enc.labels) - int(where[0]) + 1  # logits from the position before the answer on
    ids = torch.tensor([enc.input_ids], device=model.device)
    logits = model(ids, features=[feats], masks=regions, logits_to_keep=keep).logits[0]
    logp = logits.float().log_softmax(-1)  # row j predicts position len - keep + 1 + j
    rows = where - (len(enc.labels) - keep + 1)
    return logp[rows, labels[where].to(logp.device)].sum()


def candidate_scores(node_log_probs: torch.Tensor, scored: Sequence[Sequence[int]]) -> torch.Tensor:
    """Sum, per candidate, of its scored nodes' log-probabilities: (B, N) -> (B, V)."""
    owner = torch.tensor([c for c, nodes in enumerate(scored) for _ in nodes])
    nodes = torch.tensor([n for ns in scored for n in ns])
    out = torch.zeros(node_log_probs.shape[0], len(scored), device=node_log_probs.device)
    return out.index_add_(1, owner.to(out.device), node_log_probs[:, nodes.to(out.device)])


def class_probabilities(scores: torch.Tensor | np.ndarray, owners: Sequence[int]) -> np.ndarray:
    """Softmax of the candidates' summed log-probabilities over the vocabulary, each class the sum
    of its names' probabilities: (Q, V) -> (Q, K) float64, rows summing to 1."""
    s = torch.as_tensor(scores, dtype=torch.float64)
    p = torch.softmax(s, dim=-1)
    own = torch.as_tensor(list(owners))
    k = int(own.max()) + 1 if len(own) else 0
    return torch.zeros(s.shape[0], k, dtype=torch.float64).index_add_(1, own, p).numpy()


def top_names(names: Sequence[str], probs: np.ndarray, k: int) -> list[tuple[str, float]]:
    """The ``k`` most probable (name, probability) pairs, most probable first (ties: list order)."""
    order = np.argsort(-probs, kind="stable")[: max(0, k)]
    return [(names[i], float(probs[i])) for i in order]


# ---------------------------------------------------------------------------------------------
# the classifier


class Classifier:
    """Scores vocabularies for one model, through its :class:`Generator` (lock, prefix cache and
    batch sizing); ``encode`` is ``conversation.encode`` bound to the model's tokenizer and
    template. Tokenised vocabularies are kept (LRU) so a repeated vocabulary costs nothing."""

    def __init__(self, generator: Generator, encode: Encoder, cache_size: int = 8):
        self.generator = generator
        self.encode = encode
        self._tokenized: LRUCache[Candidates] = LRUCache(cache_size)
        self._lock = threading.Lock()  # the tokenised-vocabulary cache only (not the device)
        self.last_batch_rows = 0

    def candidates(self, message: str, names: Sequence[str]) -> Candidates:
        key = repr((message, tuple(names)))
        with self._lock:
            return self._tokenized.get_or_compute(
                key, lambda: tokenize_candidates(self.encode, message, names)
            )

    def scores(
        self, key: str, feats: ImageFeatures, masks: torch.Tensor, vocabulary: Vocabulary
    ) -> torch.Tensor:
        """Summed answer log-probabilities (Q, V) of every candidate name of ``vocabulary`` for
        each region of ``masks`` (Q, H, W) on image ``key``; with no region, (1, V) for the whole
        image."""
        whole = masks.shape[0] == 0
        cands = self.candidates(category_message(whole), vocabulary.candidates)
        ctx = cands.context
        first = len(ctx) - 1 if whole else ctx.index(self.generator.model.config.mask_token_id)
        regions = [masks[:0]] if whole else [masks[i : i + 1] for i in range(len(masks))]
        g, model = self.generator, self.generator.model
        out = []
        with g.context(), cached_prefix(g, key, feats, ctx[:first]) as shared:
            step = g.rows_per_batch(self.row_bytes(first, len(ctx) - first, cands.trie))
            self.last_batch_rows = min(step, len(regions))
            for a in range(0, len(regions), step):
                chunk = regions[a : a + step]
                ids = torch.tensor([ctx] * len(chunk), device=model.device)
                embeds = model.prepare_inputs(ids, [feats] * len(chunk), chunk)[:, first:]
                nodes = trie_log_probs(model.llm, shared, embeds, cands.trie)
                out.append(candidate_scores(nodes, cands.scored).cpu())
                g.prefix.prefilled_tokens += len(chunk) * (len(ctx) - first + len(cands.trie.inner))
        return torch.cat(out)

    def row_bytes(self, prefix: int, context: int, trie: TokenTrie) -> int:
        """Peak memory of one row: its KV (context + inner nodes), its spliced embeddings, one
        step's attention scores (three float32 copies over the prefix, the context and the
        deepest node's ancestors) and a slice of LM-head logits."""
        cfg = self.generator.model.llm.config
        elem = self.generator.model.llm.get_input_embeddings().weight.element_size()
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        kv_heads = cfg.num_key_value_heads or cfg.num_attention_heads
        kv = 2 * cfg.num_hidden_layers * kv_heads * head_dim * elem * (context + len(trie.inner))
        step = min(NODES_PER_STEP, max(1, len(trie.inner)))
        keys = prefix + context + int(trie.depth.max(initial=0))
        scores = 3 * 4 * cfg.num_attention_heads * step * keys
        embeds = 2 * cfg.hidden_size * elem * (prefix + context)
        return kv + scores + embeds + 4 * 64 * cfg.vocab_size
