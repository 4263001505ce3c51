"""osprey-open: a clean re-implementation of Osprey (CVPR 2024), pixel understanding with visual
instruction tuning. Importing this package is cheap; heavy modules load on first use."""
