"""What departed visitors leave behind: the server's memory and its file cache, before and after
N visitors each open a 12-megapixel photo, click once and leave.

    python benchmarks/session_memory.py [--sessions 200] [--via browser|api] [--cache-ttl 60]

Starts ``python app.py --tiny`` as its own process (its own Gradio cache folder, a short cache
TTL), then drives it: ``browser`` opens real Chromium tabs (upload, one click, close the tab),
``api`` uses gradio_client sessions (``/session_open``, ``/session_click``, ``/session_close``).
Prints the app's resident memory (VmRSS) and the cache folder's size at the start, after the
first few visitors (the caches warm), right after the last one left, and after one cache TTL.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]  # fmt: skip


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def folder_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def phone_photo(folder: Path, index: int) -> Path:
    """A 4032x3024 JPEG (a real photo scaled up, shifted per visitor so every image is new)."""
    base = Image.open(REPO / "examples" / "coffee.jpg").convert("RGB").resize((4032, 3024))
    rgb = np.roll(np.asarray(base), index * 7, axis=1)
    path = folder / f"visitor{index}.jpg"
    Image.fromarray(rgb).save(path, quality=90)
    return path


def launch(cache_dir: Path, cache_ttl: int) -> tuple[subprocess.Popen, str]:
    from app_process import start_app

    args = ["--tiny", "--cache-ttl", str(cache_ttl)]
    return start_app(args, {"GRADIO_TEMP_DIR": str(cache_dir)})


def visit_browser(browser, url: str, photo: Path) -> None:
    sys.path.insert(0, str(REPO))
    from tests.support.browser import click, idle, upload  # the canvas page's test contract

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(120_000)
    page.goto(url)
    upload(page, photo)
    idle(page)  # then the upload's own event finishes
    click(page, 0.5, 0.5)
    page.wait_for_function("() => document.querySelectorAll('#canvas .osc-thumb').length === 3")
    page.close()


def visit_api(url: str, photo: Path) -> None:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    client.predict(handle_file(str(photo)), api_name="/session_open")
    client.predict(2016, 1512, "positive", api_name="/session_click")
    client.predict(api_name="/session_close")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--via", choices=["browser", "api"], default="browser")
    ap.add_argument("--cache-ttl", type=int, default=60, help="the app's --cache-ttl")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="osprey-session-memory-"))
    cache = work / "gradio-cache"
    cache.mkdir()
    photos = [phone_photo(work, i) for i in range(min(args.sessions, 20))]
    proc, url = launch(cache, args.cache_ttl)
    rows = [("app started", rss_mib(proc.pid), folder_mib(cache))]
    t0 = time.perf_counter()
    try:
        if args.via == "browser":
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                chromium = p.chromium.launch(
                    executable_path=shutil.which("chromium"), headless=True, args=CHROMIUM_ARGS
                )
                for i in range(args.sessions):
                    visit_browser(chromium, url, photos[i % len(photos)])
                    if i == 9:
                        rows.append(
                            ("after 10 visitors left", rss_mib(proc.pid), folder_mib(cache))
                        )
                chromium.close()
        else:
            for i in range(args.sessions):
                visit_api(url, photos[i % len(photos)])
                if i == 9:
                    rows.append(("after 10 visitors left", rss_mib(proc.pid), folder_mib(cache)))
        wall = time.perf_counter() - t0
        time.sleep(3)  # the server notices the last tab closing
        rows.append((f"after {args.sessions} visitors left", rss_mib(proc.pid), folder_mib(cache)))
        time.sleep(args.cache_ttl * 1.5)
        rows.append((f"{args.cache_ttl * 1.5:.0f} s later (cache TTL {args.cache_ttl} s)",
                     rss_mib(proc.pid), folder_mib(cache)))  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.sessions} visitors via {args.via}, 4032x3024 JPEG each, one click, then gone "
          f"({wall:.0f} s, {wall / args.sessions:.2f} s per visitor)")  # fmt: skip
    print("| moment | app RSS MiB | Gradio cache MiB |\n|---|---|---|")
    for name, rss, disk in rows:
        print(f"| {name} | {rss:.0f} | {disk:.1f} |")
    warm = rows[1]
    kept = (rows[-2][1] - warm[1]) / max(1, args.sessions - 10)
    print(f"memory kept per departed visitor after the warm-up: {kept:.2f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
