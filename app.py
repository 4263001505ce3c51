"""osprey-open: point-and-describe demo. ``python app.py --help`` for the options.

The Space's entry file (``app_file: app.py``): the demo itself lives in ``osprey/app/`` (README,
"Architecture"). ZeroGPU needs ``spaces`` imported before torch, so it is imported first.
"""

import contextlib
import sys
from pathlib import Path

with contextlib.suppress(ImportError):  # spaces is in requirements.txt
    import spaces  # noqa: F401  (before torch: ZeroGPU patches CUDA at import)

EXAMPLES = Path(__file__).resolve().parent / "examples"


def main(argv: list[str] | None = None) -> int:
    """Start the demo with this checkout's example photos."""
    from osprey.app.main import main as start

    return start(argv, examples_dir=EXAMPLES)


if __name__ == "__main__":
    from osprey.core.options import run

    sys.exit(run(main))
