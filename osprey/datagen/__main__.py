"""``python -m osprey.datagen``: see :mod:`osprey.datagen.cli`."""

from osprey.datagen.cli import main
from osprey.options import run

raise SystemExit(run(main))
