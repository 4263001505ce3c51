"""The inference API on the tiny model: caching, determinism, chat, streaming, bad input."""

import itertools
import threading

import numpy as np
import pytest
import torch

from osprey.core.devices import resolve_device, resolve_dtype
from osprey.core.images import ImageError
from osprey.inference.facade import Generation, Osprey
from osprey.inference.preprocess import RegionError
from osprey.inference.prompt_format import ContextLengthError, RenderError, task_message


@pytest.fixture
def osp(tiny_parts):
    model, tok = tiny_parts
    return Osprey(model, tok, name="tiny-random", cache_size=2)


def test_one_vision_pass_per_image(osp, voc):
    rgb, masks = voc["rgb"], voc["masks"]
    osp.describe(rgb, masks[:3], "category", Generation(max_new_tokens=2))
    osp.ask(rgb, masks[:2], "What is region1 doing?", gen=Generation(max_new_tokens=2))
    osp.ask(rgb.copy(), masks[:1], "And region1?", gen=Generation(max_new_tokens=2))  # same content
    assert osp.images.calls == 1 and osp.images.cache.hits >= 2
    other = np.ascontiguousarray(rgb[:, ::-1])
    osp.ask(other, None, "Is there a dog?", gen=Generation(max_new_tokens=2))
    osp.ask(rgb, None, "Is there a dog?", gen=Generation(max_new_tokens=2))
    assert osp.images.calls == 2  # both images fit the cache (size 2)
    third = np.ascontiguousarray(rgb[::-1])
    osp.ask(third, None, "q", gen=Generation(max_new_tokens=1))
    osp.ask(other, None, "q", gen=Generation(max_new_tokens=1))  # evicted by LRU: encoded again
    assert osp.images.calls == 4


def test_greedy_is_deterministic_and_sampling_is_seeded(osp, voc):
    g = Generation(max_new_tokens=6)
    a = osp.generate(voc["rgb"], voc["masks"][:1], task_message("short"), g)
    b = osp.generate(voc["rgb"], voc["masks"][:1], task_message("short"), g)
    assert a.raw == b.raw and a.new_tokens == 6
    s1 = osp.generate(
        voc["rgb"], voc["masks"][:1], task_message("short"), Generation(6, True, 1.5, 1.0, seed=3)
    )
    s2 = osp.generate(
        voc["rgb"], voc["masks"][:1], task_message("short"), Generation(6, True, 1.5, 1.0, seed=3)
    )
    assert s1.raw == s2.raw


def test_regions_change_the_answer_distribution(osp, voc):
    """The mask really reaches the LLM: different regions give different next-token logits."""
    from osprey.inference.prompt_format import TEMPLATES, Turn, render

    prompt = render([Turn(task_message("category"))], TEMPLATES["osprey_v1"])[0]
    l0 = osp.logits(voc["rgb"], voc["masks"][:1], prompt)
    l1 = osp.logits(voc["rgb"], voc["masks"][1:2], prompt)
    assert l0.shape[0] == l1.shape[0] and not torch.allclose(l0[-1], l1[-1])
    assert torch.equal(l0[:1000], l1[:1000])  # system + image positions come before the region


def test_bad_inputs_raise_clear_errors(osp, voc):
    rgb, masks = voc["rgb"], voc["masks"]
    g = Generation(max_new_tokens=1)
    with pytest.raises(RegionError, match="refers to 1 region"):
        osp.generate(rgb, None, task_message("category"), g)  # <mask> in the prompt, no region
    with pytest.raises(RegionError, match="refers to 1 region\\(s\\) but 2"):
        osp.generate(rgb, masks[:2], task_message("category"), g)
    with pytest.raises(RegionError, match="mask is 10x10 but the image is 500x375"):
        osp.describe(rgb, [np.ones((10, 10), bool)], "category", g)
    with pytest.raises(RegionError, match="empty"):
        osp.describe(rgb, [np.zeros((375, 500), bool)], "category", g)
    many = [masks[i % 19] for i in range(300)]  # 300 regions need more than 2048 tokens
    with pytest.raises(ContextLengthError, match="context is"):
        osp.ask(rgb, many, "Describe all regions.", gen=g)
    with pytest.raises(ImageError):
        osp.ask(b"garbage", None, "q", gen=g)
    with pytest.raises(RenderError, match="at most one"):
        osp.generate(rgb, None, "<image>\n<image>\nq", g)


def test_chat_drops_oldest_turns_to_fit(osp, voc):
    long_answer = "word " * 300
    history = [(f"question {i}?", long_answer) for i in range(6)]
    ans = osp.ask(voc["rgb"], voc["masks"][:2], "What now?", history, Generation(max_new_tokens=2))
    assert 1 <= ans.dropped_turns < 6 and ans.prompt_tokens <= osp.max_length - 128
    # the fewest turns are dropped: one more turn than was kept does not fit
    kept = history[ans.dropped_turns - 1 :]
    more = osp.ask(voc["rgb"], voc["masks"][:2], "What now?", kept, Generation(max_new_tokens=2))
    assert more.dropped_turns == 1 and more.prompt_tokens == ans.prompt_tokens
    short = osp.ask(
        voc["rgb"], voc["masks"][:2], "What now?", history[:1], Generation(max_new_tokens=2)
    )
    assert short.dropped_turns == 0


def test_streaming_yields_growing_text_and_matches(osp, voc):
    g = Generation(max_new_tokens=8)
    chunks = list(osp.stream(osp.ask, voc["rgb"], voc["masks"][:1], "What is region1?", gen=g))
    final = osp.ask(voc["rgb"], voc["masks"][:1], "What is region1?", gen=g)
    assert chunks[-1] == final.text and len(chunks) >= 2
    with pytest.raises(RegionError):
        list(osp.stream(osp.generate, voc["rgb"], None, task_message("category"), g))


def test_a_throttled_stream_joins_words_and_holds_none_back(osp):
    """With an interval, words that arrive together go out as one update (the first at once),
    the text is the same, and a word is not held back waiting for the next one: here the
    answer pauses until the consumer has seen its second word, which would never happen if
    the stream waited for more."""
    from osprey.inference.generator import Answer, stream

    seen_b = threading.Event()

    def answer(*, streamer) -> Answer:
        streamer.on_finalized_text("a ")
        for _ in range(200):
            streamer.on_finalized_text("x")
        streamer.on_finalized_text(" b")
        got = seen_b.wait(timeout=10)
        streamer.on_finalized_text(" c" if got else " held")
        streamer.end()
        return Answer("a " + "x" * 200 + " b c", "", 0, 0)

    updates = []
    for text in stream(osp.tokenizer, answer, interval=0.2):
        updates.append(text)
        if text.endswith(" b"):
            seen_b.set()
    assert updates[0] == "a " and updates[-1] == "a " + "x" * 200 + " b c"
    assert len(updates) < 20 and updates[-2].endswith(" c")  # joined, and nothing was held
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(updates))


def test_stop_event_ends_generation(osp, voc):
    stop = threading.Event()
    stop.set()
    ans = osp.ask(voc["rgb"], None, "Talk.", gen=Generation(max_new_tokens=50), stop=stop)
    assert ans.new_tokens <= 1


def test_device_and_dtype_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_dtype(torch.device("cpu")) == torch.float32
    assert resolve_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype(torch.device("cpu"), "int3")


def test_bf16_cpu_path_keeps_extractor_and_rotary_fp32(voc):
    osp = Osprey.tiny(dtype="bf16")
    assert osp.model.dtype == torch.bfloat16
    assert osp.model.mask_extractor.feat_linear.weight.dtype == torch.float32
    assert osp.model.llm.model.rotary_emb.inv_freq.dtype == torch.float32
    assert osp.describe(voc["rgb"], voc["masks"][:1], "category", Generation(max_new_tokens=2))


@pytest.mark.gpu
def test_cuda_matches_cpu(tiny_parts, voc):
    """fp32 on both devices, TF32 off: the logits agree to a small fraction of their scale (the
    tiny model's large weights make its logits large) and the greedy choices agree."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        cpu = Osprey.tiny()
        gpu = Osprey.tiny(device="cuda", dtype="fp32")
        prompt = "<image>\nregion1<mask><pos> what?"
        a = cpu.logits(voc["rgb"], voc["masks"][:1], prompt)
        b = gpu.logits(voc["rgb"], voc["masks"][:1], prompt).cpu()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    scale = a.abs().max()
    assert (a - b).abs().max() <= 1e-3 * scale, float((a - b).abs().max() / scale)
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() >= 0.99
