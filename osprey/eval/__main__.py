"""``python -m osprey.eval --help`` lists the benchmarks."""

import sys

from osprey.options import run

from .cli import main

if __name__ == "__main__":
    sys.exit(run(main))
