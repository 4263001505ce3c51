"""``python -m osprey.label`` (or the ``osprey-label`` console script): see :mod:`osprey.label.cli`."""

import sys

from osprey.core.options import run
from osprey.label.cli import main


def entry_point() -> None:
    """The ``osprey-label`` console script."""
    sys.exit(run(main))


if __name__ == "__main__":
    entry_point()
