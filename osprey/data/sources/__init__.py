"""One loader per published training source; see ``osprey.data.registry`` for their type names."""
