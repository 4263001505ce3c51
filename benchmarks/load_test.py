"""Load test: N concurrent gradio_client sessions against the app with tiny models, on loopback.

    python benchmarks/load_test.py [--sessions 20] [--concurrency 2]

Each session opens its own image (a different photo or a flipped copy), clicks twice, adds both
masks as regions, asks a question and exports. Prints per-step latencies (p50 / p95) and errors,
and checks that every session's export holds exactly its own image size and its own masks
(no session ever sees another's state). Exit code 1 on any error or leak.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def launch(concurrency: int) -> str:
    import app

    service = app.build_service(app.parse_args(["--tiny"]))
    demo = app.build_demo(service)
    demo.queue(default_concurrency_limit=concurrency, max_size=256)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return f"http://127.0.0.1:{port}/"


def images(n: int, folder: Path) -> list[Path]:
    photos = sorted((REPO / "examples").glob("*.jpg"))
    out = []
    for i in range(n):
        rgb = np.asarray(Image.open(photos[i % len(photos)]).convert("RGB"))
        variant = [rgb, rgb[:, ::-1], rgb[::-1], rgb[::-1, ::-1], np.rot90(rgb)][
            (i // len(photos)) % 5
        ]
        path = folder / f"session{i}.png"
        Image.fromarray(np.ascontiguousarray(variant)).save(path)
        out.append(path)
    return out


def session(url: str, image: Path, seed: int, times: dict, errors: list, leaks: list) -> None:
    from gradio_client import Client, handle_file

    rng = np.random.default_rng(seed)
    h, w = np.asarray(Image.open(image)).shape[:2]
    try:
        client = Client(url, verbose=False)

        def step(name, *args):
            t = time.perf_counter()
            out = client.predict(*args, api_name=f"/{name}")
            times[name].append(time.perf_counter() - t)
            return out

        step("session_open", handle_file(str(image)))
        masks = []
        for _ in range(2):
            x, y = float(rng.integers(0, w)), float(rng.integers(0, h))
            info = step("session_click", x, y, "positive")
            masks.append(info["rle"])
            step("session_add")
        step("session_ask", "How is region1 related to region2?")
        export = step("session_export")
        if export["image"] != {"height": h, "width": w}:
            leaks.append(
                f"session {seed}: export is of a {export['image']} image, its own is {h}x{w}"
            )
        got = [r["segmentation"] for r in export["regions"]]
        if got != masks or len(export["chat"]) != 1:
            leaks.append(
                f"session {seed}: export holds {len(got)} regions / {len(export['chat'])} chat turns not its own"
            )
    except Exception as exc:  # every failure is reported, none stops the others
        errors.append(f"session {seed}: {type(exc).__name__}: {exc}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=2, help="the app's --concurrency")
    ap.add_argument(
        "--url", default=None, help="test a running app instead of launching one (--tiny)"
    )
    args = ap.parse_args(argv)
    url = args.url or launch(args.concurrency)
    times: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    leaks: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = images(args.sessions, Path(tmp))
        threads = [
            threading.Thread(target=session, args=(url, p, i, times, errors, leaks))
            for i, p in enumerate(paths)
        ]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    print(
        f"{args.sessions} concurrent sessions against {url} in {wall:.1f} s (app concurrency {args.concurrency})"
    )
    print("| step | calls | p50 s | p95 s |\n|---|---|---|---|")
    for name, ts in times.items():
        print(
            f"| {name} | {len(ts)} | {statistics.median(ts):.2f} | {float(np.percentile(ts, 95)):.2f} |"
        )
    print(f"errors: {len(errors)}; sessions whose export was not their own: {len(leaks)}")
    for line in errors + leaks:
        print("  " + line)
    return 1 if errors or leaks else 0


if __name__ == "__main__":
    raise SystemExit(main())
