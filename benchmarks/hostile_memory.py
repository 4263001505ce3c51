"""Peak memory of the app under the worst single requests of the hostile-input report (issue
"Closed to the server's own files, bounded for every image and mask"), each measured on a fresh
``python app.py --tiny`` in its own process through Gradio's REST API:

3. ``/describe`` with a 13370x13370 PNG mask (a few hundred KB) and a 600x400 photo; once, then
   four at once;
4. an 8000x8000 PNG (a few hundred KB) with the same 8000x8000 mask 50 times,
   ``max_new_tokens`` 2;
5. ``/session_open`` of that 8000x8000 PNG under 10 session ids (what stays held).

For each: the server's resident memory when idle, its peak during the case (``VmHWM``, reset
before the case through ``/proc/PID/clear_refs``) and what it holds after, in MB, and how the
calls ended. Run it on any checkout (it only needs the documented API):

    python benchmarks/hostile_memory.py [--cases 3,4,5]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.app_process import start_app, stop_app
from tests.support.rest import Rest


def _status(pid: int, field: str) -> float:
    """A VmRSS / VmHWM figure of process ``pid``, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS


def _png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG", optimize=True)
    return out.getvalue()


def _files(folder: Path) -> dict[str, Path]:
    photo = np.asarray(Image.open(Path(__file__).resolve().parents[1] / "examples" / "coffee.jpg"))
    big = np.zeros((8000, 8000, 3), np.uint8)
    big[1000:7000, 1000:7000] = (200, 120, 40)
    mask = np.zeros((8000, 8000), np.uint8)
    mask[2000:6000, 2000:6000] = 255
    huge_mask = np.zeros((13370, 13370), np.uint8)
    huge_mask[:100, :100] = 255
    files = {"photo": photo, "big": big, "big_mask": mask, "huge_mask": huge_mask}
    paths = {}
    for name, array in files.items():
        paths[name] = folder / f"{name}.png"
        paths[name].write_bytes(_png(array))
    return paths


def _outcome(result) -> str:
    kind, payload = result
    if kind == "complete":
        return "answered"
    message = payload[1] if kind == "http" else payload
    return f"refused: {str(message)[:90]}"


def _case_3(url: str, files: dict[str, Path]) -> list[str]:
    def one() -> str:
        rest = Rest(url, timeout=600)
        image, mask = rest.upload(files["photo"]), rest.upload(files["huge_mask"])
        return _outcome(rest.call("describe", image, [mask], "category", "", 2))

    outcomes = [one()]
    threads, results = [], []
    for _ in range(4):
        threads.append(threading.Thread(target=lambda: results.append(one())))
        threads[-1].start()
    for t in threads:
        t.join()
    return outcomes + results


def _case_4(url: str, files: dict[str, Path]) -> list[str]:
    rest = Rest(url, timeout=900)
    image, mask = rest.upload(files["big"]), rest.upload(files["big_mask"])
    return [_outcome(rest.call("describe", image, [mask] * 50, "category", "", 2))]


def _case_5(url: str, files: dict[str, Path]) -> list[str]:
    outcomes = []
    for _ in range(10):
        rest = Rest(url, timeout=600)
        outcomes.append(_outcome(rest.call("session_open", rest.upload(files["big"]))))
    return outcomes


CASES = {"3": _case_3, "4": _case_4, "5": _case_5}


def _warm_up(url: str, files: dict[str, Path]) -> None:
    """What any first visitor does (a photo, a click, a category), so that "idle" is a server
    that has served, not one that has yet to import and allocate what serving needs."""
    rest = Rest(url, timeout=600)
    image = rest.upload(files["photo"])
    _, (mask, _) = rest.call("segment", image, "[[300, 200]]", "[1]", "")
    rest.call("describe", rest.upload(files["photo"]), [mask], "category", "", 2)
    time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default="3,4,5")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        files = _files(Path(tmp))
        sizes = ", ".join(f"{k} {v.stat().st_size // 1024} KB" for k, v in files.items())
        print(f"files: {sizes}")
        print(
            "case | idle MB | peak MB (over idle) | held after MB (over idle) | seconds | outcomes"
        )
        for case in args.cases.split(","):
            proc, url = start_app(["--tiny"])
            try:
                _warm_up(url, files)
                idle = _status(proc.pid, "VmRSS")
                _reset_peak(proc.pid)
                start = time.perf_counter()
                outcomes = CASES[case](url, files)
                seconds = time.perf_counter() - start
                peak, held = _status(proc.pid, "VmHWM"), _status(proc.pid, "VmRSS")
            finally:
                stop_app(proc)
            counts: dict[str, int] = {}
            for o in outcomes:
                counts[o] = counts.get(o, 0) + 1
            summary = "; ".join(f"{n} x {o}" for o, n in counts.items())
            print(f"{case} | {idle:.0f} | {peak:.0f} (+{peak - idle:.0f}) | {held:.0f} "
                  f"(+{held - idle:.0f}) | {seconds:.1f} | {summary}")  # fmt: skip
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
