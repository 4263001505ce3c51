"""``python -m osprey.datagen``: see :mod:`osprey.datagen.cli`."""

from osprey.core.options import run
from osprey.datagen.cli import main

raise SystemExit(run(main))
