"""Static-cache decoding (eager and torch.compile'd) gives the plain path's tokens, keeps the
prefix cache working, streams and stops like generate, and never recompiles between questions."""

import threading

import pytest
import torch

from osprey.inference import generator
from osprey.inference.facade import Generation, Osprey
from osprey.inference.prompt_format import task_message


@pytest.fixture(scope="module")
def plain(tiny_parts):
    model, tok = tiny_parts
    return Osprey(model, tok, kv_cache_size=0)


@pytest.fixture(scope="module")
def static(tiny_parts):
    model, tok = tiny_parts
    osp = Osprey(model, tok, kv_cache_size=4)
    osp.enable_static_decoding(compile=False)
    return osp


def _chat_script(a: Osprey, b: Osprey, voc, g: Generation) -> list[str]:
    """The same describes and chat turns on both; asserts equal answers, returns them."""
    rgb, masks = voc["rgb"], voc["masks"]
    answers = []
    for m, task in ((masks[:1], "category"), (masks[1:2], "short"), (masks[2:3], "detailed")):
        x = a.describe(rgb, m, task, g, batched=False)
        assert x == b.describe(rgb, m, task, g, batched=False)
        answers += x
    history: list[tuple[str, str]] = []
    for q in ("What is region1 doing next to region2?", "And region2?", "Why?"):
        x, y = a.ask(rgb, masks[:2], q, history, g), b.ask(rgb, masks[:2], q, history, g)
        assert x.raw == y.raw
        history.append((q, x.text))
        answers.append(x.raw)
    return answers


def test_static_decoding_gives_the_plain_paths_tokens(plain, static, voc):
    steps = static.generator.decoder.steps
    answers = _chat_script(static, plain, voc, Generation(max_new_tokens=12))
    assert len(set(answers)) == len(answers)  # distinct prompts really gave distinct answers
    assert static.generator.decoder.steps - steps >= 6 * 10  # the static decoder did the decoding
    # the exported KV of each answer seeds the next turn: follow-ups prefill only their own text
    assert static.generator.prefix.reused_tokens > 5 * 1000


@pytest.mark.parametrize(
    "gen",
    [
        Generation.paper(seed=3, max_new_tokens=10),
        Generation(max_new_tokens=10, do_sample=True, temperature=1.0, top_p=0.9, seed=11),
        Generation(max_new_tokens=10, do_sample=True, temperature=1.5, top_p=1.0, seed=5),
    ],
    ids=["paper", "t1-p0.9", "t1.5-top-k-only"],
)
def test_static_decoding_samples_like_generate(plain, static, voc, gen):
    q = "What is in region1?"
    a = static.ask(voc["rgb"], voc["masks"][:1], q, gen=gen)
    b = plain.ask(voc["rgb"], voc["masks"][:1], q, gen=gen)
    assert a.raw == b.raw and a.new_tokens == b.new_tokens


def test_static_decoding_streams_and_stops(plain, static, voc):
    g = Generation(max_new_tokens=10)
    args = (voc["rgb"], voc["masks"][:1], "What is region1?")
    chunks = list(static.stream(static.ask, *args, gen=g))
    assert chunks[-1] == plain.ask(*args, gen=g).text
    assert len(chunks) > 3 and all(
        chunks[i + 1].startswith(chunks[i]) for i in range(len(chunks) - 2)
    )
    stop = threading.Event()
    stop.set()
    a = static.ask(voc["rgb"], None, "Talk.", gen=Generation(max_new_tokens=50), stop=stop)
    b = plain.ask(voc["rgb"], None, "Talk.", gen=Generation(max_new_tokens=50), stop=stop)
    assert a.new_tokens == b.new_tokens == 1


def test_compiled_step_matches_and_never_recompiles(tiny_parts, plain, voc):
    """The real torch.compile (inductor on this CPU): compiled once at warm-up, then questions of
    different lengths and regions replay the same graph."""
    model, tok = tiny_parts
    osp = Osprey(model, tok)
    osp.enable_static_decoding(compile=True)  # compiles here (warm-up)
    assert osp.generator.decoder.compiled
    with torch._dynamo.config.patch(error_on_recompile=True):
        _chat_script(osp, plain, voc, Generation(max_new_tokens=8))
        answer = osp.generate(voc["rgb"], voc["masks"][3:4], task_message("category"))
    assert (
        answer.text == plain.generate(voc["rgb"], voc["masks"][3:4], task_message("category")).text
    )
    osp.generator.decoder.close()


def test_static_decoding_refuses_quantized_weights():
    pytest.importorskip("bitsandbytes")
    osp = Osprey.tiny(quantize="8bit")
    with pytest.raises(ValueError, match="quantized"):
        osp.enable_static_decoding(compile=False)


def test_auto_batch_rows_follow_free_memory(tiny_parts, monkeypatch):
    model, tok = tiny_parts
    osp = Osprey(model, tok)  # batch_size="auto"
    row = 3_000_000
    monkeypatch.setattr(generator, "free_memory", lambda device: 10 * row)
    assert osp.generator.rows_per_batch(row) == 5  # half of the free memory
    monkeypatch.setattr(generator, "free_memory", lambda device: row)
    assert osp.generator.rows_per_batch(row) == 1  # never zero
    monkeypatch.setattr(generator, "free_memory", lambda device: 10**6 * row)
    assert osp.generator.rows_per_batch(row) == generator.MAX_BATCH_ROWS
    osp.generator.batch_size = 3
    assert osp.generator.rows_per_batch(row) == 3
    assert generator.free_memory(torch.device("cpu")) > 0


@pytest.mark.gpu
def test_cuda_graph_decoding_matches_the_plain_path(voc):
    """On CUDA the compiled step replays as a CUDA graph (mode reduce-overhead): same tokens as
    the plain path on the same device, with streaming and a chat, and no recompilation."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    plain = Osprey.tiny(device="cuda", dtype="fp32")
    plain.generator.prefix.max_entries = 0
    graphed = Osprey.tiny(device="cuda", dtype="fp32")
    graphed.enable_static_decoding(compile=True)
    with torch._dynamo.config.patch(error_on_recompile=True):
        _chat_script(graphed, plain, voc, Generation(max_new_tokens=10))
        chunks = list(graphed.stream(graphed.ask, voc["rgb"], voc["masks"][:1], "Why?"))
    assert chunks[-1] == plain.ask(voc["rgb"], voc["masks"][:1], "Why?").text
    graphed.generator.decoder.close()
