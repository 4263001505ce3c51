"""``python -m sam_bridge``: see :mod:`sam_bridge.cli`."""

from sam_bridge.cli import main

raise SystemExit(main())
