"""``python -m osprey.eval --help`` lists the benchmarks."""

import sys

from osprey.core.options import run

from .cli import main


def entry_point() -> None:
    """The ``osprey-eval`` console script."""
    sys.exit(run(main))


if __name__ == "__main__":
    entry_point()
