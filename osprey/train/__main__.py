"""``python -m osprey.train --config CONFIG [--key=value ...]`` (also under torchrun / accelerate)."""

import sys

from osprey.train.train import main

sys.exit(main())
