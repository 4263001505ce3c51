"""``python -m osprey.datagen``: see :mod:`osprey.datagen.cli`."""

from osprey.datagen.cli import main

raise SystemExit(main())
