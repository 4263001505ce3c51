"""What defines a model: the boxes of the paper's figure, one file each (vision tower, projector,
mask extractor, LLM, and the Osprey model that composes them), its config (``config.py``, which
travels with the weights), the checkpoint format and key map (``checkpoint.py``) and the tiny
random builders (``tiny.py``). May import ``osprey.core`` only."""
