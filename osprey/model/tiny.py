"""``tiny-random``: a tiny Osprey built in-process, for tests and offline development.

Same structure and geometry as the release (ConvNeXt stages res2..res5 at 512 px, 1024 image
tokens, 112x112 position grid, a LLaMA LLM, a SentencePiece BPE tokenizer with byte fallback and
32000 pieces so that ``<mask>``/``<pos>`` land on 32000/32001), but tiny widths and random weights.
Its answers are meaningless; everything that shows it says so.
"""

from __future__ import annotations

import atexit
import functools
import io
import json
import shutil
import tempfile
from pathlib import Path

import torch

from osprey.core import prompt_strings as P
from osprey.model.config import OspreyConfig, tiny_config

# Text the tiny SentencePiece model learns its pieces from: the prompt strings plus common words,
# so that prompts tokenise into realistic, multi-character pieces.
_CORPUS_EXTRA = (
    "a the of and in on with is are this that what where which who how many there region regions "
    "person man woman child dog cat horse bird car bus bicycle boat chair table sofa bottle cup "
    "plant tree sky grass road building window door water red green blue white black yellow small "
    "large left right top bottom front behind next near holding wearing sitting standing walking "
    "1 2 3 4 5 6 7 8 9 0 . , ; : ? ! ' \" ( ) - yes no"
)
_VOCAB = 32000
_TRAINED_PIECES = 1000
_LLM_INIT_SCALE = 20.0


def _corpus() -> list[str]:
    texts = [P.SYSTEM_OSPREY_V1, P.SYSTEM_VICUNA_V1, P.OVERVIEW, P.BEGIN_COCO, P.BEGIN_REFCOCO]
    texts += [q for _, q in P.TASKS.values()] + list(P.DETAILED_QUESTIONS) + list(P.SHORT_QUESTIONS)
    texts += [P.regions_sentence(n) for n in (1, 2, 3)] + [_CORPUS_EXTRA]
    return [t.replace("\n", " ") for t in texts] * 4


def build_sentencepiece_model() -> bytes:
    """A LLaMA-style SentencePiece model (BPE, byte fallback, <unk>/<s>/</s> = 0/1/2, dummy prefix,
    identity normaliser) padded to 32000 pieces with pieces no text can produce."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()),
        model_writer=buf,
        vocab_size=_TRAINED_PIECES,
        model_type="bpe",
        byte_fallback=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        split_digits=True,
        character_coverage=1.0,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    model = pb.ModelProto()
    model.ParseFromString(buf.getvalue())
    i = 0
    while len(model.pieces) < _VOCAB:
        piece = model.pieces.add()
        piece.piece, piece.score, piece.type = (
            f"\u2042{i}",
            -1e6 - i,
            pb.ModelProto.SentencePiece.UNUSED,
        )
        i += 1
    return model.SerializeToString()


def write_tokenizer_files(path: str | Path) -> Path:
    """The tokenizer files of a released checkpoint, for the tiny tokenizer: tokenizer.model,
    tokenizer_config.json (with ``legacy: false``, as Vicuna's), special_tokens_map.json and
    added_tokens.json (``<mask>``: 32000, ``<pos>``: 32001)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "tokenizer.model").write_bytes(build_sentencepiece_model())
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": None,
        "clean_up_tokenization_spaces": False,
        "legacy": False,
        "model_max_length": 2048,
        "padding_side": "right",
        "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer",
    }
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<unk>"}
    (path / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    (path / "added_tokens.json").write_text(json.dumps({"<mask>": 32000, "<pos>": 32001}))
    return path


@functools.cache
def tiny_tokenizer_dir() -> Path:
    """A per-process directory with the tiny tokenizer's files, built once (training the
    SentencePiece model and converting it for transformers takes seconds; loading takes ms)."""
    from osprey.model.llm import load_tokenizer

    path = Path(tempfile.mkdtemp(prefix="osprey-tiny-tokenizer-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    write_tokenizer_files(path)
    load_tokenizer(path, 32000, 32001).save_pretrained(str(path))  # adds tokenizer.json
    return path


def build_tiny(seed: int = 0, config: OspreyConfig | None = None):
    """(OspreyModel, tokenizer) with random weights from ``seed``; fp32 on the CPU."""
    from osprey.model.checkpoint import build_model
    from osprey.model.llm import load_tokenizer

    config = config or tiny_config()
    tokenizer = load_tokenizer(tiny_tokenizer_dir(), config.mask_token_id, config.pos_token_id)
    model = build_model(config, seed=seed)
    # timm initialises the ConvNeXt layer-scale gammas to 1e-6, which would make every block a
    # no-op; trained towers have gammas of order 0.1-1, so give the tiny tower such values.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.vision.named_parameters():
            if name.endswith(".gamma"):
                param.copy_(torch.rand(param.shape, generator=gen) * 0.5 + 0.1)
        # At transformers' init (std 0.02) a 2-layer random LLM answers the same tokens whatever
        # the image or region; at std 0.4 its answers depend on them, which is what tests that
        # compare inference paths (cached, batched, compiled) need. Its output is restricted to
        # learned pieces (and </s>) so that it reads as (meaningless) words.
        for param in model.llm.parameters():
            if param.dim() == 2:
                param.mul_(_LLM_INIT_SCALE)
        head = model.llm.get_output_embeddings().weight
        head[0] = 0  # <unk>
        head[3:259] = 0  # byte-fallback pieces
        head[_TRAINED_PIECES:] = 0  # padding pieces
    model.mask_extractor.float()
    return model.eval(), tokenizer
