"""How long the command lines take to start: ``--help`` of every CLI (argparse only: no torch,
no model), and building the app's page over the tiny models.

    python benchmarks/startup_bench.py [--repeat 3]

Prints the median wall time of each; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    "python app.py --help": ["app.py", "--help"],
    "python -m osprey --help": ["-m", "osprey", "--help"],
    "python -m osprey describe --help": ["-m", "osprey", "describe", "--help"],
    "python -m osprey.eval --help": ["-m", "osprey.eval", "--help"],
    "python -m sam_bridge segment --help": ["-m", "sam_bridge", "segment", "--help"],
    "python -m osprey.datagen --help": ["-m", "osprey.datagen", "--help"],
    "python -m osprey.train --help": ["-m", "osprey.train", "--help"],
}
BUILD_TINY_APP = (
    "from osprey.app.demo import build_demo; from osprey.app.main import parse_args; "
    "from osprey.app.startup import build_service; build_demo(build_service(parse_args(['--tiny'])))"
)


def timed(argv: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    print("| command | median s |\n|---|---|")
    for name, cmd in COMMANDS.items():
        print(f"| `{name}` | {timed(cmd, args.repeat):.2f} |", flush=True)
    build = timed(["-c", BUILD_TINY_APP], args.repeat)
    print(f"| build the app over the tiny models (process start to page built) | {build:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
