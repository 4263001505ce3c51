"""Load test: many sessions on one app (tiny models, loopback, the app in its own process), with
and without continuous batching, measured side by side in one run.

    python benchmarks/load_test.py [--sessions 1 4 8 16] [--seconds 20]
    python benchmarks/load_test.py --sessions 20 --isolation      # the isolation check only

Streaming scenario (default), for each N: N gradio_client sessions each open their own photo,
make a region and then ask questions back to back for ``--seconds`` (answers streamed through
``/session_ask``; every ``--turns`` questions, default 3, the visitor opens its photo again
and starts a new chat; ``--turns 0``: one chat that grows until its oldest turns are dropped
and every question prefills the whole kept chat again), while one more session clicks
(``/session_click``) every 0.3 s. Sessions are
set up with ``gradio_client``; the measured calls go through Gradio's plain REST API
(``/gradio_api/call/...`` and its event stream, the way ``curl`` uses it) on the same session,
because ``gradio_client`` spends about 90 ms of CPU per streamed answer, and the clients share
this machine's cores with the server. Printed per N
and mode (``batching`` = the app as it starts, ``per request`` = ``--no-batching``): click
latency p50 / p95 (and with no answers running: idle), answers, aggregate tokens/s, time to
the first streamed text p50 / p95, errors. Then the ratios batching / per request.

Isolation scenario: N sessions at once (open, two clicks, two regions, a question, export);
every export must hold exactly its own image size, masks and chat. Exit code 1 on any error or
leak, in both scenarios. Prints numbers; asserts nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from app_process import start_app, stop_app  # noqa: E402

QUESTION = "What is region1 doing, and what is next to it?"


def launch(batching: bool):
    """``python app.py --tiny [--no-batching]`` in its own process (so that the clients here
    share no interpreter lock with the server): (process, url)."""
    return start_app(["--tiny"] + ([] if batching else ["--no-batching"]))


def tiny_tokenizer():
    """The tiny model's tokenizer (the app's, rebuilt here), to count the answers' tokens."""
    from osprey.model.llm import load_tokenizer
    from osprey.model.tiny import tiny_tokenizer_dir

    return load_tokenizer(tiny_tokenizer_dir(), 32000, 32001)


def photos(n: int, folder: Path) -> list[Path]:
    """n different photos: the examples, flipped and rotated."""
    sources = sorted((REPO / "examples").glob("*.jpg"))
    out = []
    for i in range(n):
        rgb = np.asarray(Image.open(sources[i % len(sources)]).convert("RGB"))
        variant = [rgb, rgb[:, ::-1], rgb[::-1], rgb[::-1, ::-1], np.rot90(rgb)][(i // 4) % 5]
        path = folder / f"session{i}.png"
        Image.fromarray(np.ascontiguousarray(variant)).save(path)
        out.append(path)
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


class Rest:
    """One session's calls through Gradio's REST API: POST ``call/NAME`` with the session's hash,
    then read the event stream of that call."""

    def __init__(self, url: str, session_hash: str):
        import httpx

        self.http = httpx.Client(base_url=url + "gradio_api/", timeout=120)
        self.session_hash = session_hash

    def stream(self, api_name: str, *data) -> Iterator[Any]:
        """Each update of the call's output (the last one is the final output)."""
        import json

        job = self.http.post(
            f"call/{api_name}", json={"data": list(data), "session_hash": self.session_hash}
        )
        job.raise_for_status()
        with self.http.stream("GET", f"call/{api_name}/{job.json()['event_id']}") as response:
            event = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event in ("generating", "complete", "error"):
                    payload = json.loads(line[6:])
                    if event == "error":
                        raise RuntimeError(f"{api_name}: {payload}")
                    yield payload[0] if isinstance(payload, list) and payload else payload
                    if event == "complete":
                        return
        raise RuntimeError(f"{api_name}: the event stream ended without a result")

    def upload(self, path: Path) -> dict:
        """Upload a file (Gradio's upload route): the file parameter of a later call."""
        with open(path, "rb") as f:
            response = self.http.post("upload", files={"files": (path.name, f)})
        response.raise_for_status()
        return {"path": response.json()[0], "meta": {"_type": "gradio.FileData"}}

    def call(self, api_name: str, *data) -> Any:
        """The call's final output."""
        return list(self.stream(api_name, *data))[-1]

    def close(self) -> None:
        self.http.close()


# ---------------------------------------------------------------------------------------------
# streaming scenario


class Run:
    """Counters of one (N, mode) run, filled by the client threads."""

    def __init__(self):
        self.clicks: list[float] = []
        self.ttft: list[float] = []
        self.tokens = 0
        self.answers = 0
        self.errors: list[str] = []
        self.lock = threading.Lock()


def asker(url: str, photo: Path, start: threading.Barrier, run: Run, tokenizer) -> None:
    """One visitor: connects and makes a region first, then (once every visitor is ready: the
    window of the measurement opens at the barrier) asks questions back to back until
    ``run.until``; after every ``run.turns`` questions (0: never) it opens its photo again and
    makes its region again, a new chat (inside the window: its time counts)."""
    from gradio_client import Client, handle_file

    try:
        client = Client(url, verbose=False, httpx_kwargs={"timeout": 120})
        client.predict(handle_file(str(photo)), api_name="/session_open")
        client.predict(40, 40, "positive", api_name="/session_click")
        client.predict(api_name="/session_add")
    except Exception as exc:
        run.errors.append(f"setup {type(exc).__name__}: {exc}")
        start.abort()
        return
    start.wait()
    rest = Rest(url, client.session_hash)
    try:
        asked = 0
        while time.perf_counter() < run.until:
            if run.turns and asked and asked % run.turns == 0:
                rest.call("session_open", rest.upload(photo))
                rest.call("session_click", 40, 40, "positive")
                rest.call("session_add")
            asked += 1
            t0, first, answer = time.perf_counter(), None, ""
            for answer in rest.stream("session_ask", QUESTION):
                if first is None and answer:
                    first = time.perf_counter() - t0
            with run.lock:
                run.ttft.append(first if first is not None else time.perf_counter() - t0)
                run.tokens += len(tokenizer(answer, add_special_tokens=False)["input_ids"])
                run.answers += 1
        rest.call("session_close")
    except Exception as exc:  # every failure is counted, none stops the others
        run.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        rest.close()


def clicker(url: str, photo: Path, stop: threading.Event, run: Run) -> None:
    from gradio_client import Client, handle_file

    try:
        client = Client(url, verbose=False, httpx_kwargs={"timeout": 120})
        client.predict(handle_file(str(photo)), api_name="/session_open")
        rest = Rest(url, client.session_hash)
        rng = np.random.default_rng(0)
        while not stop.is_set():
            x, y = (float(v) for v in rng.integers(10, 300, 2))
            t0 = time.perf_counter()
            if rest.call("session_click", x, y, "positive")["points"] < 1:
                raise RuntimeError("a click made no point")
            run.clicks.append(time.perf_counter() - t0)
            stop.wait(0.3)
        rest.close()
    except Exception as exc:
        run.errors.append(f"clicker {type(exc).__name__}: {exc}")


def measure(url: str, tokenizer, n: int, seconds: float, images: list[Path], turns: int = 3) -> Run:
    """N askers and the clicker; the window (``seconds``, the wall time the rates divide by)
    opens when every asker has connected and made its region: gradio_client's connection (it
    reads the app's API description) takes seconds each when many connect at once, which is
    not what is measured here."""
    run, stop = Run(), threading.Event()
    start = threading.Barrier(n + 1)
    run.until, run.turns = float("inf"), turns
    askers = [threading.Thread(target=asker, args=(url, images[i], start, run, tokenizer))
              for i in range(n)]  # fmt: skip
    for t in askers:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a failed set-up: counted
        start.wait()
    click = threading.Thread(target=clicker, args=(url, images[-1], stop, run))
    click.start()
    t0 = time.perf_counter()
    run.until = t0 + seconds
    for t in askers:
        t.join()
    run.wall = time.perf_counter() - t0
    stop.set()
    click.join()
    return run


def idle_clicks(url: str, image: Path, seconds: float = 6.0) -> list[float]:
    run, stop = Run(), threading.Event()
    thread = threading.Thread(target=clicker, args=(url, image, stop, run))
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join()
    return run.clicks


def streaming(sizes: list[int], seconds: float, turns: int) -> int:
    rows, errors = {}, 0
    with tempfile.TemporaryDirectory() as tmp:
        images = photos(max(sizes) + 1, Path(tmp))
        tokenizer = tiny_tokenizer()
        for batching in (True, False):
            proc, url = launch(batching)
            mode = "batching" if batching else "per request"
            try:
                idle = idle_clicks(url, images[-1])
                print(f"{mode}: idle clicks p50 {pct(idle, 50) * 1e3:.0f} ms, "
                      f"p95 {pct(idle, 95) * 1e3:.0f} ms", flush=True)  # fmt: skip
                rows[(mode, 0)] = idle
                for n in sizes:
                    run = measure(url, tokenizer, n, seconds, images, turns)
                    rows[(mode, n)] = run
                    errors += len(run.errors)
                    _print_run(mode, n, run)
            finally:
                stop_app(proc)
    _print_table(rows, sizes)
    return 1 if errors else 0


def _print_run(mode: str, n: int, run: Run) -> None:
    print(f"  {mode}, N={n}: {run.answers} answers, {run.tokens / run.wall:.1f} tokens/s, "
          f"TTFT p50 {pct(run.ttft, 50):.2f} s, clicks p95 {pct(run.clicks, 95) * 1e3:.0f} ms, "
          f"{len(run.errors)} errors {run.errors[:2]}", flush=True)  # fmt: skip


def _print_table(rows: dict, sizes: list[int]) -> None:
    print("\n| N | mode | click p50 / p95 ms | answers | tokens/s | TTFT p50 / p95 s | errors |")
    print("|---|---|---|---|---|---|---|")
    for mode in ("batching", "per request"):
        idle = rows[(mode, 0)]
        print(
            f"| 0 (idle) | {mode} | {pct(idle, 50) * 1e3:.0f} / {pct(idle, 95) * 1e3:.0f} | | | | |"
        )
        for n in sizes:
            r = rows[(mode, n)]
            print(f"| {n} | {mode} | {pct(r.clicks, 50) * 1e3:.0f} / {pct(r.clicks, 95) * 1e3:.0f} | "
                  f"{r.answers} | {r.tokens / r.wall:.1f} | {pct(r.ttft, 50):.2f} / "
                  f"{pct(r.ttft, 95):.2f} | {len(r.errors)} |")  # fmt: skip
    base = rows[("batching", sizes[0])]
    print("\nratios, batching / per request (tokens/s), and against N=" + str(sizes[0]) + ":")
    for n in sizes:
        on, off = rows[("batching", n)], rows[("per request", n)]
        speed_on, speed_off = on.tokens / on.wall, off.tokens / off.wall
        print(f"  N={n}: tokens/s x{speed_on / max(speed_off, 1e-9):.2f} vs per request; "
              f"x{speed_on / max(base.tokens / base.wall, 1e-9):.2f} vs batching N={sizes[0]}; "
              f"click p95 {pct(on.clicks, 95) * 1e3:.0f} ms vs idle "
              f"{pct(rows[('batching', 0)], 95) * 1e3:.0f} ms")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# isolation scenario


def isolated_session(
    url: str, image: Path, seed: int, times: dict, errors: list, leaks: list
) -> None:
    from gradio_client import Client, handle_file

    rng = np.random.default_rng(seed)
    h, w = np.asarray(Image.open(image)).shape[:2]
    try:
        client = Client(url, verbose=False, httpx_kwargs={"timeout": 120})

        def step(name, *args):
            t = time.perf_counter()
            out = client.predict(*args, api_name=f"/{name}")
            times[name].append(time.perf_counter() - t)
            return out

        step("session_open", handle_file(str(image)))
        masks = []
        for _ in range(2):
            info = step(
                "session_click", float(rng.integers(0, w)), float(rng.integers(0, h)), "positive"
            )
            masks.append(info["rle"])
            step("session_add")
        step("session_ask", "How is region1 related to region2?")
        export = step("session_export")
        if export["image"] != {"height": h, "width": w}:
            leaks.append(f"session {seed}: export of a {export['image']} image, its own is {h}x{w}")
        got = [r["segmentation"] for r in export["regions"]]
        if got != masks or len(export["chat"]) != 1:
            leaks.append(
                f"session {seed}: {len(got)} regions / {len(export['chat'])} turns not its own"
            )
    except Exception as exc:
        errors.append(f"session {seed}: {type(exc).__name__}: {exc}")


def isolation(n: int) -> int:
    proc, url = launch(batching=True)
    times: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    leaks: list[str] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            threads = [threading.Thread(target=isolated_session, args=(url, p, i, times, errors, leaks))
                       for i, p in enumerate(photos(n, Path(tmp)))]  # fmt: skip
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
    finally:
        stop_app(proc)
    print(
        f"{n} concurrent sessions in {wall:.1f} s\n| step | calls | p50 s | p95 s |\n|---|---|---|---|"
    )
    for name, ts in times.items():
        print(f"| {name} | {len(ts)} | {statistics.median(ts):.2f} | {pct(ts, 95):.2f} |")
    print(f"errors: {len(errors)}; sessions whose export was not their own: {len(leaks)}")
    for line in errors + leaks:
        print("  " + line)
    return 1 if errors or leaks else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 8, 16])
    ap.add_argument("--seconds", type=float, default=20.0, help="how long each N asks questions")
    ap.add_argument(
        "--turns",
        type=int,
        default=3,
        help="questions per chat before a visitor opens its photo again (0: one chat)",
    )
    ap.add_argument("--isolation", action="store_true", help="the isolation scenario only")
    args = ap.parse_args(argv)
    if args.isolation:
        return isolation(args.sessions[-1])
    return streaming(args.sessions, args.seconds, args.turns)


if __name__ == "__main__":
    raise SystemExit(main())
