"""``python -m osprey.label``: see :mod:`osprey.label.cli`."""

from osprey.label.cli import main
from osprey.options import run

raise SystemExit(run(main))
