"""Continuous batching (osprey/inference/batching_engine.py): answers of several sessions decoded together give the
plain path's tokens, stream, stop one by one, and wait their turn; virtual ids never meet stale
features."""

import threading

import numpy as np
import pytest
import torch

from osprey.inference.batching_engine import Admission, Busy
from osprey.inference.facade import Osprey
from osprey.inference.generator import Generation
from osprey.inference.prompt_format import Turn, task_message
from osprey.model.tiny import build_tiny

G = Generation(max_new_tokens=12)


@pytest.fixture(scope="module")
def plain(tiny_parts):
    model, tok = tiny_parts
    return Osprey(model, tok, kv_cache_size=0)


@pytest.fixture(scope="module")
def batched():
    model, tok = build_tiny(seed=0)  # its own copy: the engine wraps the LLM's embedding
    osp = Osprey(model, tok)
    osp.generator.enable_batching(max_active=8, kv_budget=64 * 2**20, page_size=64)
    yield osp
    osp.generator.disable_batching()


def _images(voc, n):
    return [np.ascontiguousarray(np.roll(voc["rgb"], 40 * i, axis=1)) for i in range(n)]


def test_concurrent_requests_on_different_images_give_the_plain_tokens(plain, batched, voc):
    images, masks = _images(voc, 3), voc["masks"]
    jobs = [(images[i % 3], masks[i : i + 1 + i % 2], q) for i, q in enumerate(
        ["What is region1?", "Is region1 next to region2?", "Describe the scene.", "Why?"]
    )]  # fmt: skip
    expected = [plain.ask(img, m, q, gen=G).raw for img, m, q in jobs]
    got = [None] * len(jobs)

    def run(i):
        img, m, q = jobs[i]
        got[i] = batched.ask(img, m, q, gen=G).raw

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == expected and len(set(expected)) > 1


def test_describe_all_is_one_group_of_requests(plain, batched, voc):
    masks = voc["masks"][:6]
    assert batched.describe(voc["rgb"], masks, "short", G) == plain.describe(
        voc["rgb"], masks, "short", G, batched=False
    )


def test_streams_and_stops_one_request_only(plain, batched, voc):
    args = (voc["rgb"], voc["masks"][:1], "Describe region1.")
    chunks = list(batched.stream(batched.ask, *args, gen=G))
    assert chunks[-1] == plain.ask(*args, gen=G).text and len(chunks) > 3
    stop = threading.Event()
    stop.set()
    other = []
    thread = threading.Thread(target=lambda: other.append(batched.ask(*args, gen=G)))
    thread.start()
    stopped = batched.ask(voc["rgb"], None, "Talk.", gen=Generation(max_new_tokens=50), stop=stop)
    thread.join()
    assert stopped.new_tokens <= 2 and other[0].raw == plain.ask(*args, gen=G).raw


def test_direct_llm_use_pauses_the_engine(plain, batched, voc):
    """logits() runs the LLM itself (with the virtual embedding in place): same numbers."""
    prompt = "USER: " + task_message("category") + " ASSISTANT:"
    a = batched.logits(voc["rgb"], voc["masks"][:1], prompt)
    b = plain.logits(voc["rgb"], voc["masks"][:1], prompt)
    assert torch.allclose(a, b, atol=1e-5)


def test_a_reused_table_row_gets_new_ids(batched, voc):
    table = batched.generator.engine.table
    feats = batched.images.get(voc["rgb"])[1]
    first = table.lease("img-a", feats.tokens, [])
    first.release()
    for i in range(table._images_count() + 1):  # push "img-a" out of its slot
        table.lease(f"other-{i}", feats.tokens, []).release()
    again = table.lease("img-a", feats.tokens, [])
    assert set(again.image_ids).isdisjoint(first.image_ids)
    again.release()


def test_admission_reports_the_line_and_refuses_beyond_it():
    gate = Admission(max_active=1, max_waiting=1)
    gate.wait()  # takes the only place
    waiting = gate.enter()
    assert next(waiting) == 1  # first in line
    with pytest.raises(Busy, match="busy"):
        next(gate.enter())  # the line is full
    gate.leave()
    assert list(waiting) == []  # admitted
    gate.leave()
    assert gate.active == 0 and gate.waiting == 0


def test_describe_batch_decodes_every_region_of_every_image_together(plain, batched, voc):
    images = _images(voc, 2)
    items = [(images[0], voc["masks"][:2]), (images[1], voc["masks"][2:5])]
    expected = [plain.describe(img, m, "category", G, batched=False) for img, m in items]
    assert batched.describe_batch(items, "category", G) == expected
    assert plain.describe_batch(items, "category", G) == expected  # the per-image path


def test_an_abandoned_answer_is_cancelled_and_frees_its_rows(batched, voc):
    engine = batched.generator.engine
    feats = batched.images.get(voc["rgb"])[1]
    ids = batched._encode([Turn(task_message("detailed"))], 1, 2000)
    masks = torch.from_numpy(voc["masks"][:1])
    engine.admission.wait()
    request = engine.submit("abandoned", feats, masks, ids, 200)
    stream = iter(request)
    next(stream)  # the first tokens arrive, then the reader goes away
    stream.close()
    engine.admission.leave()
    assert request.done and request.id not in engine._requests
    assert ("image", "abandoned") not in engine.table._images._used  # the rows are idle again


def test_a_process_that_never_closes_its_engine_still_exits(tmp_path):
    """transformers runs the engine loop on a non-daemon thread: without osprey's shutdown hook
    a script (or the app after Ctrl-C, or this very test session) would never exit."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "leave.py"
    script.write_text(
        "from osprey.inference.facade import Osprey\n"
        "osp = Osprey.tiny()\n"
        "osp.generator.enable_batching(max_active=2, kv_budget=16 * 2**20, page_size=64)\n"
        "print('engine running', flush=True)\n"
    )
    repo = Path(__file__).resolve().parents[1]
    try:
        done = subprocess.run(
            [sys.executable, str(script)], cwd=repo, capture_output=True, text=True, timeout=120,
            env={**__import__("os").environ, "PYTHONPATH": str(repo)},
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("the process hung at exit on the engine's loop thread")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "engine running" in done.stdout


def test_cache_blocks_fit_the_budget_and_no_more_than_is_useful():
    """The KV cache is sized by the budget (keys, values and the step's mask columns per
    block), never beyond every active answer at the full context: the tiny model with the
    CPU's 4 GiB had 2048 blocks and a 2.2 GB attention mask that took 5 s to fill."""
    from types import SimpleNamespace

    from osprey.inference.batching_engine import PREFILL_CHUNK, cache_blocks

    llama7b = SimpleNamespace(
        hidden_size=4096, num_attention_heads=32, num_key_value_heads=32, num_hidden_layers=32
    )
    per_block = 128 * (2 * 32 * 4096 * 2 + PREFILL_CHUNK * 2)
    assert cache_blocks(llama7b, 2, 2048, 32, 128, 4 * 2**30) == (4 * 2**30 // per_block, 512)
    assert cache_blocks(llama7b, 2, 2048, 32, 128, 60 * 2**30) == (32 * 16, 512)  # all useful
    assert cache_blocks(llama7b, 2, 2048, 32, 128, 2**20) == (16, 512)  # the floor
    tiny = SimpleNamespace(
        hidden_size=64, num_attention_heads=4, num_key_value_heads=4, num_hidden_layers=2
    )
    assert cache_blocks(tiny, 4, 300, 8, 64, 4 * 2**30) == (8 * 5, 300)  # short context


def test_on_a_cpu_the_engine_loop_yields_to_clicks(batched):
    """The engine's loop thread runs nicer than the request threads (Linux), so that a click's
    SAM decode on the same cores is scheduled ahead of a decode step."""
    import os
    from pathlib import Path

    from osprey.inference.batching_engine import ENGINE_NICE

    thread = batched.generator.engine.manager._generation_thread
    stat = Path(f"/proc/self/task/{thread.native_id}/stat")
    if not stat.is_file():
        pytest.skip("no /proc: thread niceness is not visible here")
    nice = int(stat.read_text().rsplit(")", 1)[1].split()[16])
    assert nice == os.getpriority(os.PRIO_PROCESS, 0) + ENGINE_NICE
