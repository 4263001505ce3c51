"""A long mixed load on ``python app.py --tiny`` in its own process: does anything fail, grow or
slow down over half an hour?

Through Gradio's REST API (raw calls, as curl sends them) and a few real Chromium tabs, at the
same time: visitors clicking; visitors asking streamed questions (a new chat every 3); top-5 of
a vocabulary; "segment everything" + describe all; uploads from 10 KB to near the upload limit
and 12 MP photos; several clients sending one photo at the same moment; clients that go away in
the middle of an answer; one client flooding the queue; the hostile inputs of SECURITY.md mixed
in; browser tabs that open a photo, click and close. It prints the outcomes by kind (the goal:
nothing but the expected refusals), the app's memory after the warm-up and at the end (goal:
within 5 %), click and first-text p95 in the first and last five minutes (goal: alike), and the
uploads still on disk once the janitor has had its grace (goal: none).

    python benchmarks/soak.py [--minutes 30] [--warmup 5] [--tabs 2]
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.app_process import start_app, stop_app  # noqa: E402
from tests.support.rest import Rest  # noqa: E402

EXPECTED = (  # the app's refusals that a hostile or hurried client is meant to get
    "You already have", "must be a file uploaded", "not uploaded to this server", "takes ",
    "must be JSON", "is nested too deeply", "must be a whole number", "must be a number",
    "must be a finite number", "must be text", "cannot be used", "is outside", "needs x0 < x1",
    "not inside", "At most 64 clicks", "far above the limit", "above the limit", "Unknown task",
    "A mask cannot be used", "Type a question", "call /session_open first", "no region",
    "SAM found no region", "Add a region first",
)  # fmt: skip


class Record:
    """What every worker saw, with the time it happened (seconds since the start)."""

    def __init__(self):
        self.start = time.monotonic()
        self.lock = threading.Lock()
        self.outcomes: Counter = Counter()
        self.unexpected: list[str] = []
        self.clicks: list[tuple[float, float]] = []
        self.first_text: list[tuple[float, float]] = []
        self.uploads: list[str] = []
        self.rss: list[tuple[float, float]] = []

    def now(self) -> float:
        return time.monotonic() - self.start

    def outcome(self, what: str, result) -> None:
        kind, payload = result
        if kind == "complete":
            key = f"{what}: answered"
        else:
            text = str(payload[1] if kind == "http" else payload)
            expected = next((e for e in EXPECTED if e in text), None)
            key = f"{what}: refused ({expected})" if expected else f"{what}: UNEXPECTED"
            if expected is None:
                with self.lock:
                    self.unexpected.append(f"{what}: {kind} {text[:160]}")
        with self.lock:
            self.outcomes[key] += 1


# ---------------------------------------------------------------------------------------------
# material


def _encode(array: np.ndarray, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format=fmt, **kw)
    return out.getvalue()


def photos() -> list[bytes]:
    """The example photos, a 12 MP photo, and uploads from 10 KB to about 20 MB."""
    rng = np.random.default_rng(0)
    examples = [p.read_bytes() for p in sorted((REPO / "examples").glob("*.jpg"))]
    base = np.asarray(Image.open(REPO / "examples" / "coffee.jpg").convert("RGB"))
    big = np.asarray(Image.fromarray(base).resize((4032, 3024)))
    small = _encode(np.asarray(Image.fromarray(base).resize((160, 120))), "JPEG", quality=70)
    noise = _encode(rng.integers(0, 255, (2600, 2600, 3), np.uint8), "PNG")  # ~20 MB
    return [*examples, _encode(big, "JPEG", quality=92), small, noise]


# ---------------------------------------------------------------------------------------------
# visitors


_ADDRESSES = iter(range(1, 1 << 24))
_ADDRESS_LOCK = threading.Lock()


def visitor() -> str:
    """A new visitor's address (the app runs with --trust-proxy: as behind a Space's proxy,
    each visitor is counted apart)."""
    with _ADDRESS_LOCK:
        n = next(_ADDRESSES)
    return f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}"


def clicker(url: str, stop: threading.Event, rec: Record, material: list[bytes]) -> None:
    rest = Rest(url, timeout=300, address=visitor())
    while not stop.is_set():
        opened = rest.call("session_open", _up(rest, rec, random.choice(material[:4])))
        rec.outcome("open", opened)
        if opened[0] != "complete":
            continue
        height, width = opened[1]["height"], opened[1]["width"]
        for _ in range(20):
            if stop.is_set():
                return
            t = time.perf_counter()
            got = rest.call("session_click", random.randrange(width), random.randrange(height),
                            "positive")  # fmt: skip
            if got[0] == "complete":
                with rec.lock:
                    rec.clicks.append((rec.now(), time.perf_counter() - t))
            rec.outcome("click", got)
            if got[1] and got[0] == "complete" and got[1].get("points", 0) >= 60:
                break
            stop.wait(0.4)


def asker(url: str, stop: threading.Event, rec: Record, material: list[bytes]) -> None:
    rest = Rest(url, timeout=300, address=visitor())
    while not stop.is_set():
        rec.outcome("open", rest.call("session_open", _up(rest, rec, random.choice(material[:4]))))
        rest.call("session_click", 300, 200, "positive")
        rec.outcome("add", rest.call("session_add"))
        for question in ("What is region1?", "Describe region1.", "What is around it?"):
            if stop.is_set():
                return
            t = time.perf_counter()
            first = None
            result = ("none", None)
            for kind, payload in rest.stream("session_ask", question):
                if first is None and kind == "generating":
                    first = time.perf_counter() - t
                result = (kind, payload)
            if first is not None:
                with rec.lock:
                    rec.first_text.append((rec.now(), first))
            rec.outcome("ask", result)


def one_shot(url: str, stop: threading.Event, rec: Record, material: list[bytes]) -> None:
    """Top-5, segment everything + describe all, describe, uploads of every size."""
    rest = Rest(url, timeout=600, address=visitor())
    i = 0
    while not stop.is_set():
        photo = material[i % len(material)]
        image = _up(rest, rec, photo)
        task = i % 4
        if task == 0:
            got = rest.call("segment", image, "[[100, 100]]", "[1]", "")
            rec.outcome("segment", got)
            if got[0] == "complete":
                rec.outcome("top-5", rest.call("classify", _up(rest, rec, photo), [got[1][0]],
                                                "coco", 5))  # fmt: skip
        elif task == 1:
            rec.outcome("everything", rest.call("describe_all", image, 4, 0.0, 0.0, "coco"))
        elif task == 2:
            rec.outcome("describe", rest.call("describe", image, [], "", "What is this?", 8))
        else:
            rec.outcome("open", rest.call("session_open", image))
        i += 1
        stop.wait(1.0)


def same_photo(url: str, stop: threading.Event, rec: Record, material: list[bytes]) -> None:
    """Four clients send one photo at the same moment, every few seconds."""
    while not stop.is_set():
        barrier = threading.Barrier(4)

        def one(barrier=barrier):
            rest = Rest(url, timeout=300, address=visitor())
            image = _up(rest, rec, material[1])
            barrier.wait(30)
            rec.outcome("same photo", rest.call("segment", image, "[[200, 150]]", "[1]", ""))

        threads = [threading.Thread(target=one) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        stop.wait(5)


def vanisher(url: str, stop: threading.Event, rec: Record, material: list[bytes]) -> None:
    """Asks, then goes away after the first words, its session left open (to expire)."""
    while not stop.is_set():
        rest = Rest(url, timeout=300, address=visitor())
        rest.call("session_open", _up(rest, rec, material[2]))
        for kind, _ in rest.stream("session_ask", "Describe the picture in detail."):
            if kind == "generating":
                break
        rest.close()
        rec.outcome("vanished mid-answer", ("complete", None))
        stop.wait(3)


def flooder(url: str, stop: threading.Event, rec: Record, material: list[bytes]) -> None:
    """One gradio_client client, ten questions at once, every minute (raw REST calls that share
    a session cannot stream at once: Gradio's own limit, so the flooder is a real client)."""
    from gradio_client import Client, handle_file

    photo = Path(tempfile.mkdtemp()) / "flood.jpg"
    photo.write_bytes(material[3])
    address = visitor()
    while not stop.is_set():
        try:
            client = Client(url, verbose=False, headers={"X-Forwarded-For": address})
            client.predict(handle_file(str(photo)), api_name="/session_open")
        except Exception as exc:  # counted, the flood goes on
            rec.outcome("flood open", ("error", f"{type(exc).__name__}: {exc}"))
            stop.wait(60)
            continue
        jobs = [client.submit("Describe it in detail.", api_name="/session_ask") for _ in range(10)]
        for job in jobs:
            try:
                job.result(timeout=300)
                rec.outcome("flood", ("complete", None))
            except Exception as exc:  # 429s are the expected refusal
                text = str(exc)
                rec.outcome("flood", ("http", (429, "You already have")) if "429" in text
                            else ("error", text))  # fmt: skip
        client.predict(api_name="/session_close")
        stop.wait(60)


def hostile(url: str, stop: threading.Event, rec: Record, material: list[bytes]) -> None:
    """The hostile inputs of SECURITY.md, in turn."""
    rest = Rest(url, timeout=120, address=visitor())
    cases = [
        ("session_open", ["/etc/passwd"]), ("segment", [{"path": "/etc/hostname"}, "", "", "[1,2,3,4]"]),
        ("segment", ["IMG", "[" * 3000 + "]" * 3000, "", ""]), ("describe", ["IMG", [], "category", "", "5"]),
        ("segment", ["IMG", "", "", "[480, 390, 120, 40]"]), ("session_click", ["abc", 1, "positive"]),
        ("classify", ["IMG", [], "coco", 2.9]), ("session_open", []), ("describe", ["IMG", [], "poem", "", 0]),
        ("segment", ["BOMB", "[[1, 1]]", "[1]", ""]),
    ]  # fmt: skip
    out = io.BytesIO()
    Image.new("1", (20000, 20000)).save(out, format="PNG")  # 400 MP in a few KB
    bomb = out.getvalue()
    i = 0
    while not stop.is_set():
        name, args = cases[i % len(cases)]
        data = [_up(rest, rec, material[0]) if a == "IMG" else a for a in args]
        data = [_up(rest, rec, bomb) if a == "BOMB" else a for a in data]
        rec.outcome(f"hostile {name}", rest.call(name, *data))
        i += 1
        stop.wait(2)


def tabs(url: str, stop: threading.Event, rec: Record, material: list[bytes], count: int) -> None:
    """Real Chromium tabs: open the page, open a photo, click the image, close the tab."""
    from playwright.sync_api import sync_playwright

    from tests.support.browser import ARGS, CHROMIUM

    photo = Path(tempfile.mkdtemp()) / "tab.jpg"
    photo.write_bytes(material[0])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        while not stop.is_set():
            pages = []
            try:
                for _ in range(count):
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    page.set_default_timeout(120_000)
                    page.goto(url)
                    page.locator("input[type=file]").first.set_input_files(str(photo))
                    pages.append(page)
                for page in pages:
                    page.wait_for_function(
                        "() => document.querySelector('#canvas img, #canvas canvas')"
                    )
                    box = page.locator("#canvas").bounding_box()
                    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                rec.outcome("tab", ("complete", None))
            except Exception as exc:  # a tab that could not do its walk
                rec.outcome("tab", ("error", f"{type(exc).__name__}: {exc}"))
            for page in pages:
                page.close()
            stop.wait(10)
        browser.close()


def _up(rest: Rest, rec: Record, data: bytes) -> dict:
    image = rest.upload("photo.png", data)
    with rec.lock:
        rec.uploads.append(image["path"])
    return image


# ---------------------------------------------------------------------------------------------
# the run


def _rss(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _p95(values: list[float]) -> float:
    return float(np.percentile(values, 95)) if values else float("nan")


def report(rec: Record, minutes: float, warmup: float, left: list[str]) -> None:
    print("outcomes:")
    for key, n in sorted(rec.outcomes.items()):
        print(f"  {n:6d}  {key}")
    print(f"unexpected: {len(rec.unexpected)}")
    for line in rec.unexpected[:20]:
        print(f"  {line}")
    warm = [m for t, m in rec.rss if t >= warmup * 60]
    if warm:
        print(f"RSS after warm-up {warm[0]:.0f} MB, at the end {warm[-1]:.0f} MB "
              f"({100 * (warm[-1] - warm[0]) / warm[0]:+.1f} %), max {max(warm):.0f} MB")  # fmt: skip
    first, last = (0, 300), (minutes * 60 - 300, minutes * 60)
    for name, values in (("click", rec.clicks), ("first text", rec.first_text)):
        a = [v for t, v in values if first[0] <= t < first[1]]
        b = [v for t, v in values if last[0] <= t <= last[1]]
        print(f"{name} p95: first 5 min {1000 * _p95(a):.0f} ms (n={len(a)}), "
              f"last 5 min {1000 * _p95(b):.0f} ms (n={len(b)})")  # fmt: skip
    print(f"uploads: {len(set(rec.uploads))} sent, {len(left)} still on disk after the grace")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--warmup", type=float, default=5.0, help="minutes before memory is judged")
    p.add_argument("--tabs", type=int, default=2, help="Chromium tabs at once (0: none)")
    args = p.parse_args(argv)
    material = photos()
    temp = Path(tempfile.mkdtemp(prefix="osprey-soak-"))
    proc, url = start_app(["--tiny", "--trust-proxy"], env={"GRADIO_TEMP_DIR": str(temp)})
    rec, stop = Record(), threading.Event()
    workers = [clicker, clicker, asker, asker, asker, one_shot, same_photo, vanisher, flooder,
               hostile]  # fmt: skip
    threads = [threading.Thread(target=w, args=(url, stop, rec, material), daemon=True)
               for w in workers]  # fmt: skip
    if args.tabs:
        threads.append(threading.Thread(target=tabs, args=(url, stop, rec, material, args.tabs),
                                        daemon=True))  # fmt: skip
    for t in threads:
        t.start()
    try:
        while rec.now() < args.minutes * 60:
            rec.rss.append((rec.now(), _rss(proc.pid)))
            time.sleep(10)
        stop.set()
        for t in threads:
            t.join(300)
        time.sleep(45)  # the janitor's grace and sweep
        left = [u for u in set(rec.uploads) if Path(u).exists()]
        rec.rss.append((rec.now(), _rss(proc.pid)))
    finally:
        stop_app(proc)
    report(rec, args.minutes, args.warmup, left)
    return 0


if __name__ == "__main__":
    sys.exit(main())
